# The two commands of the README: `make demo` and `make test`. Both create .venv on first use.
# `make test-quick` leaves out the tests marked slow (real training, sweeps, Ray, Slurm, PostgreSQL, a browser,
# the docs' examples; tests/conftest.py).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

$(BIN)/scaletune: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[all]'
	touch $@

.PHONY: demo test test-quick format
demo: $(BIN)/scaletune
	$(BIN)/scaletune demo

test: $(BIN)/scaletune
	$(BIN)/pytest

test-quick: $(BIN)/scaletune
	$(BIN)/pytest -m "not slow"

# Format and lint fixes (tests/test_static.py checks both).
format: $(BIN)/scaletune
	$(BIN)/ruff format src tests benchmarks examples
	$(BIN)/ruff check --fix src tests benchmarks examples
