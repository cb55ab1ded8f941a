# `make run` and `make test` do all set-up on a fresh machine: .venv, the project and its extras,
# the offline ImageNet weights. Stamp files make a second call skip the installs; editing
# pyproject.toml makes the next call reinstall.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export MPLBACKEND := Agg

.PHONY: run test docs weights system-packages chromium sync-check nbtest pytest readme clean help
.DEFAULT_GOAL := help

help:
	@echo "make run    train, evaluate and export on the bundled sample (sets everything up first)"
	@echo "make test   Debian packages, sync check, notebook tests and pytest (sets everything up first)"
	@echo "make docs   the documentation site in _docs/, the notebooks executed (sets everything up first)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.train.stamp: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[train]'
	touch $@

$(VENV)/.dev.stamp: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[train,aws,serve-http,demo,dev,docs]'
	touch $@ $(VENV)/.train.stamp

weights: $(VENV)/.train.stamp
	$(BIN)/dogbreeds weights

run: $(VENV)/.train.stamp weights
	$(BIN)/dogbreeds train --data sample

# The generated library must be what the notebooks export: a clean checkout stays clean.
sync-check: $(VENV)/.dev.stamp
	$(BIN)/nbdev-export
	@if [ -n "$$(git status --porcelain -- dogbreeds)" ]; then \
	  git status --short -- dogbreeds; git --no-pager diff --stat -- dogbreeds; \
	  echo "dogbreeds/ differs from what the notebooks export: run nbdev-export and commit both"; exit 1; fi
	$(BIN)/python scripts/readme.py --check

# Debian packages the tests drive for real: chromium (the demo's browser test, through Playwright; Playwright's own
# browser download is not used), prometheus (promtool and a scraping server), postgresql and redis-server (the geo
# feature store and its cache; nbs/19_testing.ipynb starts both in its tests). One apt-get for all, before any test:
# every target that runs tests depends on this one. A server the tests need goes here.
SYSTEM_PACKAGES := chromium prometheus postgresql redis-server
system-packages:
	@missing=$$(for p in $(SYSTEM_PACKAGES); do [ "$$(dpkg-query -W -f='$${db:Status-Status}' $$p 2>/dev/null)" = installed ] || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" -ne 0 ]; then echo "missing Debian packages: $$missing (run make system-packages as root)"; exit 1; fi; \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; fi

chromium: system-packages

nbtest: system-packages $(VENV)/.dev.stamp weights
	$(BIN)/nbdev-test --n-workers 2

pytest: system-packages $(VENV)/.dev.stamp weights
	$(BIN)/python -m pytest

test: system-packages sync-check nbtest pytest

# The documentation site, without Quarto: the notebooks executed as nbdev-test runs them (slow cells left out, the
# executions cached in _proc/cache), processed by nbdev, rendered by Sphinx + myst-nb into _docs/ (nbdev's doc_path).
# The notebooks run as in nbtest, with its servers.
docs: system-packages $(VENV)/.dev.stamp weights
	$(BIN)/python scripts/docsite.py

readme:
	$(BIN)/python scripts/readme.py

clean:
	rm -rf $(VENV) exported_models/*/ .pytest_cache _docs _proc
