# Every target sets up what it needs: a fresh machine runs `make demo` or
# `make test` and nothing else.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEMO   ?= examples/serial-pipeline.yaml

.PHONY: demo test unit integration e2e lint crds bench tools clean

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

## test: lint, type-check and run every test (e2e tests skip without Docker and kind)
test: $(VENV)/.dev-installed tools lint
	$(BIN)/pytest

unit: $(VENV)/.dev-installed
	$(BIN)/pytest tests/unit

integration: $(VENV)/.dev-installed tools
	$(BIN)/pytest tests/integration

## e2e: the same scenarios on a kind cluster (needs Docker and kind)
e2e: $(VENV)/.dev-installed
	TROUPE_E2E=1 $(BIN)/pytest tests/e2e -m e2e

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy operator/troupe_operator agent_image/troupe_agent

## crds: regenerate crds/ from the API models
crds: $(VENV)/.agent-installed
	$(BIN)/python -m troupe_operator.crdgen crds

## bench: the benchmarks in bench/ (figures go to docs/performance.md)
bench: $(VENV)/.dev-installed
	$(BIN)/python bench/agent_cold_start.py
	$(BIN)/python bench/controller.py

# Debian's prometheus package brings promtool, which checks our metrics output
# for real; without root or apt the tests that need it skip and say so.
tools:
	@command -v promtool >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing promtool (Debian package prometheus)"; \
	    apt-get update -qq >/dev/null && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; \
	  else echo "promtool not installed and cannot install it here: its checks will skip"; fi; }

clean:
	rm -rf $(VENV) troupe-output .pytest_cache .mypy_cache .ruff_cache
