# mlops-operator: every target installs what it needs; the work lives in the Python package, not here.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: help venv lock deps cluster-up cluster-down cluster-status crds run demo test unit integration bench verify kind-up kind-e2e clean

help:
	@echo "make run            local cluster (or \$$KUBECONFIG) + CRDs + quickstart, operator in the foreground"
	@echo "make demo           the closed loop on the local cluster: drift, retrain, canary, promote or roll back"
	@echo "make test           unit and integration tests against a real control plane"
	@echo "make cluster-up     start the local control plane and simulated GPU nodes (.cluster/kubeconfig)"
	@echo "make cluster-down   stop it; make cluster-status: show it"
	@echo "make crds           regenerate crds/ and the chart's crds/ from the models"
	@echo "make bench          benchmarks under bench/, numbers into docs/benchmarks.md"
	@echo "make verify         ruff, mypy, import contracts and crds/ in sync with the models (no cluster)"
	@echo "make kind-up        (machines with Docker) a kind cluster, the image built and loaded, the chart installed"
	@echo "make kind-e2e       (machines with Docker) kind-up, then every example applied and checked"

# uv installs the pinned environment in seconds (pip took minutes); it is itself pinned and cached outside the repo.
UV_VERSION := 0.13.9
CACHE_DIR := $(or $(MLOPS_CACHE_DIR),$(HOME)/.cache/mlops-operator)
UV_HOME := $(CACHE_DIR)/uv-$(UV_VERSION)
UV := $(UV_HOME)/bin/uv
CONSTRAINTS := requirements/constraints.txt

$(UV):
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { apt-get update -q && apt-get install -y -q python3-venv python3-pip; }
	rm -rf $(UV_HOME) && $(PYTHON) -m venv $(UV_HOME)
	$(UV_HOME)/bin/pip install -q --disable-pip-version-check uv==$(UV_VERSION)

# Every version from the constraints file, so make, CI and the image run what the tests ran.
$(STAMP): pyproject.toml localcluster/pyproject.toml $(CONSTRAINTS) | $(UV)
	[ -x $(PY) ] || $(UV) venv -q --python $(PYTHON) $(VENV)
	$(UV) pip install -q --python $(PY) -c $(CONSTRAINTS) -e '.[test]' -e ./localcluster
	@touch $(STAMP)

venv: $(STAMP)

# Debian packages, the Kubernetes build and helm (for the chart tests), cached under ~/.cache/mlops-operator
# (a no-op once done).
deps: venv
	$(PY) -m mlops_localcluster ensure

cluster-up: deps
	$(PY) -m mlops_localcluster up

cluster-down: venv
	$(PY) -m mlops_localcluster down

cluster-status: venv
	$(PY) -m mlops_localcluster status

# One source of truth, the models: the same files into crds/ and the chart's crds/ (a unit test compares them).
crds: venv
	$(VENV)/bin/mlops-operator crds --out crds
	$(VENV)/bin/mlops-operator crds --out charts/mlops-operator/crds

run: deps
	$(PY) -m mlops_localcluster.devrun

# The closed loop on the local cluster: drift -> retrain -> canary -> analysis -> promote or roll back (docs/loop.md).
demo: deps
	$(PY) -m mlops_localcluster.demo

unit: venv
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

# Two workers, each with a local cluster of its own (CONTRIBUTING.md); TEST_WORKERS=0 runs in this process.
TEST_WORKERS ?= auto
XDIST = -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

integration: deps
	$(PY) -m pytest tests/integration $(XDIST) $(PYTEST_ARGS)

test: deps
	$(PY) -m pytest tests $(XDIST) --durations=30 $(PYTEST_ARGS)

BENCH_ARGS ?=
bench: deps
	$(PY) -m bench $(BENCH_ARGS)

# What CI checks before the tests, in seconds and without a cluster. Not `ruff format`: the tree is not formatted.
GENERATED := crds charts/mlops-operator/crds
verify: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-logo
	@# kopf's internals change without notice: only its public API.
	@if git grep -nE '^\s*(from|import) kopf\._' -- operator localcluster; \
		then echo "kopf's private modules imported (above)"; exit 1; fi
	@$(MAKE) --no-print-directory crds
	@git diff --exit-code --stat -- $(GENERATED) && [ -z "$$(git status --porcelain -- $(GENERATED))" ] \
		|| { git status --short -- $(GENERATED); echo "crds/ differs from the models: run make crds and commit"; exit 1; }

# Re-pins every dependency (of the operator, its storage backends and the test tools) into the constraints file.
lock: $(UV)
	$(UV) pip compile -q pyproject.toml --extra test --extra storage --python-version 3.11 \
		--python-platform x86_64-unknown-linux-gnu -o $(CONSTRAINTS)

kind-up:
	hack/kind-up.sh

kind-e2e:
	hack/kind-e2e.sh

clean: cluster-down
	for dir in .cluster-gw*; do [ ! -d "$$dir" ] || $(PY) -m mlops_localcluster --dir "$$dir" down; done
	rm -rf $(VENV) .cluster .cluster-gw* .pytest_cache
