# tether: `make demo` and `make test` work on a fresh machine with only
# cargo and python3; everything else is installed here, into .venv.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
# One target dir shared by every checkout on this machine: a fresh clone
# (as in CI) reuses what an earlier build compiled.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/tether-target
export TETHER_MOTO_SERVER := $(CURDIR)/$(VENV)/bin/moto_server
CARGO_TEST_FLAGS ?=

.PHONY: help venv build test lint fmt demo bench clean

help: ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed ## Create the Python venv with the emulators (moto).

build: ## Build every function binary (debug).
	cargo build --workspace --bins

lint: ## rustfmt and clippy, warnings are errors.
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt: ## Format the code.
	cargo fmt --all

test: venv lint build ## Lint, then every unit, property and integration test.
	cargo test --workspace $(CARGO_TEST_FLAGS)

demo: venv ## Run the local demo: moto, a DNS server, target-sync over rotating ALB addresses.
	cargo build --workspace --bins
	TETHER_BIN_DIR="$(CARGO_TARGET_DIR)/debug" "$(CARGO_TARGET_DIR)/debug/tether-demo"

bench: venv ## Measure cold start, warm time, memory and size into BENCHMARKS.md.
	cargo build --release --workspace --bins
	TETHER_BIN_DIR="$(CARGO_TARGET_DIR)/release" "$(CARGO_TARGET_DIR)/release/tether-bench" BENCHMARKS.md

clean: ## Remove the venv and build output.
	rm -rf $(VENV)
	cargo clean
