# The one command surface for people, the README and CI.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test lint bench format clean

$(STAMP): pyproject.toml
	@$(PY) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "agentchord needs Python 3.11+; set PY=python3.11")'
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/agentchord demo --latency-ms 200

test: install
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check proj agents coordinator tests bench
	$(BIN)/ruff format --check proj agents coordinator tests bench
	$(BIN)/mypy

format: install
	$(BIN)/ruff check --fix proj agents coordinator tests bench
	$(BIN)/ruff format proj agents coordinator tests bench

bench: install
	$(BIN)/python bench/overhead.py

clean:
	rm -rf $(VENV) .agentchord .pytest_cache .mypy_cache .ruff_cache
