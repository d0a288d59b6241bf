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
# The examples' templates get the same static checks as template.yaml.
EXAMPLE_TEMPLATES := $(wildcard examples/*/template.yaml)

.PHONY: help venv build test lint lint-rust lint-template fmt demo bench clean

help: ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed ## Create the Python venv with the emulators (moto).

$(LINT_VENV)/.installed: requirements-lint.txt
	$(PYTHON) -m venv $(LINT_VENV)
	$(LINT_VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-lint.txt
	touch $@

$(CHECKOV_VENV)/.installed: requirements-checkov.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
	touch $@

$(LINT_VENV)/.build-tools: requirements-build.txt $(LINT_VENV)/.installed
	$(LINT_VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-build.txt
	touch $@

build: $(LINT_VENV)/.build-tools ## sam build: the three arm64 bootstrap artifacts (cargo-lambda + zig, no Docker).
	rustup target add aarch64-unknown-linux-gnu
	@# Timed for BENCHMARKS.md: "cold" when cargo had no arm64 release build yet.
	cold=$$([ -d "$(CARGO_TARGET_DIR)/aarch64-unknown-linux-gnu/release" ] && echo false || echo true); \
	start=$$(date +%s); \
	PATH="$(CURDIR)/$(LINT_VENV)/bin:$$PATH" $(LINT_VENV)/bin/sam build --template-file template.yaml; \
	echo "{\"seconds\": $$(( $$(date +%s) - start )), \"cold\": $$cold}" > .aws-sam/build-time.json; \
	if [ "$$cold" = true ]; then cp .aws-sam/build-time.json .aws-sam/build-time-cold.json; fi

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
	$(CHECKOV_VENV)/bin/checkov --file template.yaml --quiet --compact --skip-download
	for t in $(EXAMPLE_TEMPLATES); do $(CHECKOV_VENV)/bin/checkov --file $$t --quiet --compact --skip-download; done
	$(LINT_VENV)/bin/python -m pytest --quiet -p no:cacheprovider tests/template

fmt: ## Format the code.
	cargo fmt --all

test: venv lint ## Lint, then every unit, property and integration test.
	cargo build --workspace --bins
	cargo test --workspace $(CARGO_TEST_FLAGS)

demo: venv ## Run the local demo: moto, a DNS server, target-sync over rotating ALB addresses.
	cargo build --workspace --bins
	TETHER_BIN_DIR="$(CARGO_TARGET_DIR)/debug" "$(CARGO_TARGET_DIR)/debug/tether-demo"

bench: venv ## Measure cold start, warm time, memory and size into BENCHMARKS.md.
	cargo build --release --workspace --bins
	TETHER_BIN_DIR="$(CARGO_TARGET_DIR)/release" "$(CARGO_TARGET_DIR)/release/tether-bench" BENCHMARKS.md

clean: ## Remove the venvs and build output.
	rm -rf $(VENV) $(LINT_VENV) $(CHECKOV_VENV) .aws-sam
	cargo clean
