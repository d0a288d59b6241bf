# tether: `make demo` and `make test` work on a fresh machine with only
# cargo and python3; everything else is installed here, into .venv.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
LINT_VENV := .venv-lint
CHECKOV_VENV := .venv-checkov
# The AWS tools run offline: no telemetry, no update checks, a region for SAM.
export SAM_CLI_TELEMETRY := 0
export AWS_REGION ?= us-east-1
# One target dir shared by every checkout on this machine: a fresh clone
# (as in CI) reuses what an earlier build compiled.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/tether-target
export TETHER_MOTO_SERVER := $(CURDIR)/$(VENV)/bin/moto_server
CARGO_TEST_FLAGS ?=
# The one version, from [workspace.package] in Cargo.toml.
VERSION := $(shell sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)
DIST := dist/tether-$(VERSION)
FUNCTIONS := target-sync health-canary custom-resources
# The arm64 binaries (sam build, make release) hold no path of this machine:
# panic locations name files as /tether/..., /cargo/registry/... and
# /target/..., wherever the checkout, cargo's home and the target dir are, so
# that another machine builds the same bytes. Set for the arm64 target only:
# the host's debug builds and their caches are left as they are.
CARGO_HOME ?= $(HOME)/.cargo
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS := --remap-path-prefix=$(CURDIR)=/tether --remap-path-prefix=$(CARGO_HOME)=/cargo --remap-path-prefix=$(CARGO_TARGET_DIR)=/target
# make publish: a bucket in AWS_REGION that the Serverless Application
# Repository may read (see docs/install.md).
SAR_BUCKET ?=
# The examples' templates get the same static checks as template.yaml.
EXAMPLE_TEMPLATES := $(wildcard examples/*/template.yaml)

.PHONY: help venv build release publish test lint lint-rust lint-template fmt demo bench clean clean-cache announce-test announce-demo announce-bench

help: ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'
	@echo
	@echo "The demo shows the three functions against a local AWS emulator (moto) and DNS server:"
	@echo "  target-sync (NLB target groups kept equal to DNS names and ALB nodes), health-canary"
	@echo "  (probes, per-minute metrics) and custom-resources (CloudFormation custom resources)."
	@echo "Deploy to AWS: sam build && sam deploy --guided (see the README's Deploy section)."

$(VENV)/.installed: requirements-dev.txt
	@echo "==> Installing the AWS emulator ($$(grep -v '^#' requirements-dev.txt | tr '\n' ' ')) into $(VENV) (about a minute)"
	@$(PYTHON) -m venv $(VENV)
	@$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed ## Create the Python venv with the emulators (moto).

$(LINT_VENV)/.installed: requirements-lint.txt
	@echo "==> Installing the template tools ($$(grep -v '^#' requirements-lint.txt | tr '\n' ' ')) into $(LINT_VENV) (one to two minutes)"
	@$(PYTHON) -m venv $(LINT_VENV)
	@$(LINT_VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-lint.txt
	touch $@

$(CHECKOV_VENV)/.installed: requirements-checkov.txt
	@echo "==> Installing $$(grep -v '^#' requirements-checkov.txt | tr '\n' ' ')into $(CHECKOV_VENV) (about a minute)"
	@$(PYTHON) -m venv $(CHECKOV_VENV)
	@$(CHECKOV_VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
	touch $@

$(LINT_VENV)/.build-tools: requirements-build.txt $(LINT_VENV)/.installed
	@echo "==> Installing the arm64 cross-build tools ($$(grep -v '^#' requirements-build.txt | tr '\n' ' ')) into $(LINT_VENV)"
	@$(LINT_VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-build.txt
	touch $@

build: $(LINT_VENV)/.build-tools ## sam build: the three arm64 bootstrap artifacts (cargo-lambda + zig, no Docker).
	rustup target add aarch64-unknown-linux-gnu
	@# Timed for BENCHMARKS.md: "cold" when cargo had no arm64 release build
	@# yet; wall seconds, and the CPU seconds (user + sys) of sam and every
	@# compiler it waited for (bash's `times`), which other builds on the
	@# machine distort far less than the wall time; and the commit built.
	cold=$$([ -d "$(CARGO_TARGET_DIR)/aarch64-unknown-linux-gnu/release" ] && echo false || echo true); \
	start=$$(date +%s); \
	PATH="$(CURDIR)/$(LINT_VENV)/bin:$$PATH" $(LINT_VENV)/bin/sam build --template-file template.yaml; \
	seconds=$$(( $$(date +%s) - start )); \
	times > .aws-sam/build-times.txt; \
	cpu=$$(tail -n 1 .aws-sam/build-times.txt | awk '{ n = 0; for (i = 1; i <= 2; i++) { split($$i, t, /[ms]/); n += t[1] * 60 + t[2] } printf "%.0f", n }'); \
	commit=$$(git rev-parse --short HEAD 2>/dev/null || echo unknown); \
	dirty=$$(git diff --quiet HEAD 2>/dev/null && echo false || echo true); \
	echo "{\"seconds\": $$seconds, \"cpu_seconds\": $$cpu, \"cold\": $$cold, \"commit\": \"$$commit\", \"dirty\": $$dirty}" > .aws-sam/build-time.json; \
	if [ "$$cold" = true ]; then cp .aws-sam/build-time.json .aws-sam/build-time-cold.json; fi

release: $(LINT_VENV)/.build-tools ## dist/tether-<version>/: the three arm64 zips (built once), template.json without transforms, SHA256SUMS, INSTALL.md.
	rustup target add aarch64-unknown-linux-gnu
	PATH="$(CURDIR)/$(LINT_VENV)/bin:$$PATH" $(LINT_VENV)/bin/cargo-lambda lambda build --release --arm64 --locked $(addprefix --bin ,$(FUNCTIONS))
	rm -rf $(DIST)
	$(LINT_VENV)/bin/python scripts/release.py package --binaries "$(CARGO_TARGET_DIR)/lambda" --arch aarch64 --out $(DIST)

publish: $(LINT_VENV)/.build-tools ## Publish dist/tether-<version> to the Serverless Application Repository (needs an account and SAR_BUCKET; not run by any test).
	@test -f $(DIST)/SHA256SUMS || { echo "No $(DIST): run make release first." >&2; exit 1; }
	@test -n "$(SAR_BUCKET)" || { echo "Set SAR_BUCKET to a bucket in $(AWS_REGION) that serverlessrepo.amazonaws.com may read (docs/install.md)." >&2; exit 1; }
	mkdir -p .aws-sam/publish
	$(LINT_VENV)/bin/python scripts/release.py sar-template --release $(DIST) --out .aws-sam/publish/template.json
	$(LINT_VENV)/bin/sam package --template-file .aws-sam/publish/template.json --s3-bucket $(SAR_BUCKET) --s3-prefix tether/$(VERSION) --output-template-file .aws-sam/publish/packaged.yaml --region $(AWS_REGION)
	$(LINT_VENV)/bin/sam publish --template .aws-sam/publish/packaged.yaml --semantic-version $(VERSION) --region $(AWS_REGION)

lint: lint-rust lint-template ## Every static check: Rust and the template.

lint-rust: ## rustfmt and clippy, warnings are errors.
	@# A fresh toolchain may lack the components; a no-op when they are there.
	if command -v rustup >/dev/null; then rustup component add rustfmt clippy 2>/dev/null || true; fi
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

lint-template: $(LINT_VENV)/.installed $(CHECKOV_VENV)/.installed ## cfn-lint, sam validate --lint, checkov, and the policy and quota tests of the rendered templates (template.yaml, examples/*/template.yaml).
	$(LINT_VENV)/bin/cfn-lint template.yaml $(EXAMPLE_TEMPLATES)
	$(LINT_VENV)/bin/sam validate --lint --template-file template.yaml
	for t in $(EXAMPLE_TEMPLATES); do $(LINT_VENV)/bin/sam validate --lint --template-file $$t; done
	@# LOG_LEVEL=ERROR: checkov's own [WARNI] lines (enrichment it cannot do
	@# offline) are noise; failed checks are still printed.
	@echo "checkov: each skipped check has its reason in the resource's Metadata.checkov.skip; to list them: $(LINT_VENV)/bin/python tests/template/checkov_skips.py"
	LOG_LEVEL=ERROR $(CHECKOV_VENV)/bin/checkov --file template.yaml --quiet --compact --skip-download
	for t in $(EXAMPLE_TEMPLATES); do LOG_LEVEL=ERROR $(CHECKOV_VENV)/bin/checkov --file $$t --quiet --compact --skip-download; done
	$(LINT_VENV)/bin/python -m pytest --quiet -p no:cacheprovider tests/template

fmt: ## Format the code.
	cargo fmt --all

test: announce-test venv lint ## Lint, then every unit, property and integration test.
	@echo "==> Building the functions and the tests (debug)"
	@# One build of the binaries and the tests together: the tests' dev
	@# dependencies (tokio's test-util) unify into the binaries' too, so
	@# `cargo test` below compiles nothing again (the AWS SDK crates once).
	cargo build --workspace --bins --tests
	@echo "==> Running every unit, property and integration test"
	cargo test --workspace $(CARGO_TEST_FLAGS)

demo: announce-demo venv ## Run the local demo: the three functions against moto and a DNS server on loopback.
	@echo "==> Building the functions and the demo (debug)"
	cargo build --workspace --bins
	@echo "==> Running the demo"
	TETHER_BIN_DIR="$(CARGO_TARGET_DIR)/debug" "$(CARGO_TARGET_DIR)/debug/tether-demo"

bench: announce-bench venv ## Measure cold start, warm time, memory and size into BENCHMARKS.md.
	@echo "==> Building the release binaries"
	@# --timings: when this build compiles aws-sdk-ec2, its report gives the
	@# crate's compile time to BENCHMARKS.md.
	cargo build --release --workspace --bins --timings
	@echo "==> Measuring"
	TETHER_BIN_DIR="$(CARGO_TARGET_DIR)/release" "$(CARGO_TARGET_DIR)/release/tether-bench" BENCHMARKS.md

clean: ## Remove this checkout's venvs and build output (the shared cargo cache keeps the dependencies).
	rm -rf $(VENV) $(LINT_VENV) $(CHECKOV_VENV) .aws-sam dist
	cargo clean --package tether-shared --package target-sync --package health-canary --package custom-resources --package tether-tests

clean-cache: ## Also wipe the cargo target dir (CARGO_TARGET_DIR, default ~/.cache/tether-target), shared by EVERY checkout on this machine (the next build recompiles the AWS SDK).
	cargo clean

# What a long target is about to do, and roughly how long it takes on a
# 2-core machine (first time: the AWS SDK compiles; later runs reuse it).
announce-test:
	@echo "make test: installs the Python tools into .venv*, lints (rustfmt, clippy, cfn-lint, sam validate, checkov, pytest),"
	@echo "builds and runs every Rust test. First run on 2 cores: about 20 minutes (the AWS SDK compiles); later: about 5-10."
announce-demo:
	@echo "make demo: installs moto into .venv, builds the functions (debug) and runs target-sync, health-canary and"
	@echo "custom-resources against moto and a DNS server on loopback. First run on 2 cores: about 15-20 minutes; later: about 1."
announce-bench:
	@echo "make bench: builds the release binaries and measures cold starts, warm invocations, memory, fleets of"
	@echo "target groups under ELB throttling and the artifacts, into BENCHMARKS.md. On 2 cores: about 30 minutes or more."
