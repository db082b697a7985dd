# mlops-operator: every target installs what it needs; the work lives in the Python package, not here.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: help venv deps cluster-up cluster-down cluster-status crds run test unit integration bench kind-up kind-e2e clean

help:
	@echo "make run            local cluster (or \$$KUBECONFIG) + CRDs + quickstart, operator in the foreground"
	@echo "make test           unit and integration tests against a real control plane"
	@echo "make cluster-up     start the local control plane and simulated GPU nodes (.cluster/kubeconfig)"
	@echo "make cluster-down   stop it; make cluster-status: show it"
	@echo "make crds           regenerate crds/ and the chart's crds/ from the models"
	@echo "make bench          benchmarks under bench/, numbers into docs/benchmarks.md"
	@echo "make kind-up        (machines with Docker) a kind cluster, the image built and loaded, the chart installed"
	@echo "make kind-e2e       (machines with Docker) kind-up, then every example applied and checked"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { apt-get update -q && apt-get install -y -q python3-venv python3-pip; }
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

venv: $(STAMP)

# Debian packages, the Kubernetes build and helm (for the chart tests), cached under ~/.cache/mlops-operator
# (a no-op once done).
deps: venv
	$(PY) -m mlops_operator.localcluster ensure

cluster-up: deps
	$(PY) -m mlops_operator.localcluster up

cluster-down: venv
	$(PY) -m mlops_operator.localcluster down

cluster-status: venv
	$(PY) -m mlops_operator.localcluster status

# One source of truth, the models: the same files into crds/ and the chart's crds/ (a unit test compares them).
crds: venv
	$(VENV)/bin/mlops-operator crds --out crds
	$(VENV)/bin/mlops-operator crds --out charts/mlops-operator/crds

run: deps
	$(PY) -m mlops_operator.devrun

unit: venv
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

integration: deps
	$(PY) -m pytest tests/integration $(PYTEST_ARGS)

test: deps
	$(PY) -m pytest tests $(PYTEST_ARGS)

BENCH_ARGS ?=
bench: deps
	$(PY) -m bench $(BENCH_ARGS)

kind-up:
	hack/kind-up.sh

kind-e2e:
	hack/kind-e2e.sh

clean: cluster-down
	rm -rf $(VENV) .cluster .pytest_cache
