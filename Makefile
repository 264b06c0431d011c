# Two commands do everything on a fresh machine:
#   make demo   runs the quick study (real CIFAR-10) and writes its report
#   make test   runs the test suite
# Both create .venv and install cnnbench with its dev extras when needed.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# The shared data folder of this team's machines; elsewhere set CNNBENCH_DATA yourself
# (or pass --data-dir / --download to the commands).
ifneq ($(wildcard ../shared/data/cifar10.npz),)
export CNNBENCH_DATA ?= $(abspath ../shared/data)
endif

.PHONY: install install-dev test demo lint format clean-venv

# `make demo` needs only cnnbench and its run-time dependencies; `make test` adds the dev
# extras (pytest, hypothesis, ruff, optuna, ray, playwright: ~1 minute more to install).
install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

# --no-cache-dir: torch 2.14 is a CUDA build (~5.5 GB in the venv); a second copy in pip's
# cache filled a CI machine's disk once (Errno 28 during install).
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --no-cache-dir --upgrade pip
	$(PY) -m pip install --quiet --no-cache-dir -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PY) -m pip install --quiet --no-cache-dir -e '.[dev]'
	touch $@

test: install-dev
	$(VENV)/bin/ruff check src tests benchmarks
	$(PY) -m pytest

# One run at a time on every core: each candidate gets the same minutes of the whole machine.
demo: install
	$(VENV)/bin/cnnbench study studies/quick.yaml --workers 1

lint: install-dev
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

format: install-dev
	$(VENV)/bin/ruff format src tests benchmarks
	$(VENV)/bin/ruff check --fix src tests benchmarks

clean-venv:
	rm -rf $(VENV)
