# lconv workbook — `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PROFILE ?= quick
DEVICE ?= auto
PYTEST_ARGS ?=
STAMP := $(VENV)/.lconv-installed
# SYSTEM_PYTHON=1: use $(PYTHON) as it is (a GPU machine with torch and triton but no internet), no venv, no setup
ifdef SYSTEM_PYTHON
PY := $(PYTHON)
SETUP :=
else
PY := $(BIN)/python
SETUP := setup
endif

.DEFAULT_GOAL := help
.PHONY: help setup data browser lint test reproduce book lab bench device-check compile-check clean clean-venv

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo "  variables: PROFILE=smoke|quick|full (default quick)  DEVICE=auto|cpu|cuda  PYTEST_ARGS=..."
	@echo "             SYSTEM_PYTHON=1 (no venv: run with $(PYTHON) and its packages, e.g. on an offline GPU machine)"
	@echo "             DEVICE_CHECK_ARGS=... (e.g. --budget-s 300, --smoke for the CPU plumbing check)"

# The venv is (re)built whenever the pinned requirements or the package metadata change.
$(STAMP): env/requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -qq --disable-pip-version-check -r env/requirements.txt
	$(BIN)/python -m pip install -qq --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name lconv --display-name "Python (lconv)" >/dev/null
	@touch $@

setup: $(STAMP) data browser ## create or refresh .venv from env/, register the Jupyter kernel, install the offline data

data: ## install the offline datasets (Fashion-MNIST, KJV text) from Debian packages when possible
	@bash env/install-data.sh

browser: ## install chromium and MathJax from Debian when missing (the HTML book and its browser test)
	@bash env/install-browser.sh

lint: $(SETUP) ## ruff over lconv/, kernels/, tests/ and the notebooks (the rules are in pyproject.toml)
	$(PY) -m ruff check lconv kernels tests notebooks

test: $(SETUP) ## run the test suite (includes every notebook in the smoke profile)
	$(PY) -m pytest $(PYTEST_ARGS)

reproduce: $(SETUP) ## execute every notebook into build/ (PROFILE=quick|full|smoke) and print the summary
	$(PY) -m lconv.workbook run --profile $(PROFILE) --device $(DEVICE)

book: $(SETUP) browser ## HTML book of the last `make reproduce` (build/book/index.html), checked in headless Chromium
	$(PY) -m lconv.book
	$(PY) -m lconv.browser build/book --screenshot build/book-first-page.png

lab: setup ## open JupyterLab on notebooks/ with the lconv kernel (adds --allow-root when run as root, and says so)
	$(BIN)/python -m lconv.lab

bench: $(SETUP) ## GPU benchmarks of the Triton kernels (says so and exits 0 without a GPU)
	$(PY) -m lconv.kernels.bench

device-check: $(SETUP) ## on a GPU, <= 9 min: compiled kernel tests + benchmark grid + every target MET/NOT MET/NOT MEASURED -> results/
	$(PY) -m lconv.kernels.device_check $(DEVICE_CHECK_ARGS)

compile-check: $(SETUP) ## no GPU needed, ~10 min on 2 cores: compile for sm_90 every kernel specialisation device-check's tests launch
	$(PY) -m lconv.kernels.compile_check $(COMPILE_CHECK_ARGS)

clean: ## remove build outputs (executed notebooks, figures, results, caches)
	rm -rf build .pytest_cache
	find . -name __pycache__ -prune -exec rm -rf {} +

clean-venv: clean ## also remove the virtual environment
	rm -rf $(VENV)
