# kredis: the two commands a fresh machine needs are `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv redis-server e2e-tools k8s-bins lint typecheck unit property integration \
	test e2e bench run clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Debian's redis-server package; installed only when the binary is missing.
redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
	  echo "installing redis-server with apt-get"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq redis-server; }

# What the e2e harness needs beside Python: openssl for its certificates and
# iproute2 for the pods' network namespaces (Debian packages).
e2e-tools:
	@command -v openssl >/dev/null 2>&1 && command -v ip >/dev/null 2>&1 || { \
	  echo "installing openssl and iproute2 with apt-get"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq openssl iproute2; }

# kube-apiserver, kube-controller-manager, kube-scheduler and etcd built from
# the Go module proxy into ~/.cache/kredis/k8s (needs Go; seconds when cached).
k8s-bins:
	tools/k8s/build.sh

lint: venv
	$(BIN)/ruff check kredis tests bench
	$(BIN)/ruff format --check kredis tests bench

typecheck: venv
	$(BIN)/mypy

unit: venv
	$(BIN)/pytest tests/unit -q

property: venv
	$(BIN)/pytest tests/property -q -p no:cacheprovider

integration: venv redis-server
	$(BIN)/pytest tests/integration -q

# Every test tier that needs no Kubernetes.
test: venv redis-server lint typecheck
	HYPOTHESIS_PROFILE=ci $(BIN)/pytest tests/unit tests/property tests/integration -q

# The tests against a real Kubernetes control plane (needs Go for k8s-bins).
e2e: venv redis-server e2e-tools k8s-bins
	$(BIN)/pytest tests/e2e -q

bench: venv redis-server
	$(BIN)/python bench/plan_scale.py
	$(BIN)/python bench/reshard_vs_redis_cli.py

# The main job: a local Redis Cluster of examples/kredis.yaml (3 masters, 1
# replica each) as redis-server processes managed by kredis.
run: venv redis-server
	$(BIN)/kredis local up -f examples/kredis.yaml
	@echo "status: $(BIN)/kredis local status    stop: $(BIN)/kredis local down"

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
