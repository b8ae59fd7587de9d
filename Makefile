# The two commands of the README: `make demo` and `make test`. Both create .venv on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

$(BIN)/scaletune: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[all]'
	touch $@

.PHONY: demo test
demo: $(BIN)/scaletune
	$(BIN)/scaletune demo

test: $(BIN)/scaletune
	$(BIN)/pytest
