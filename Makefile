# The two commands: `make demo` and `make test`. Each bootstraps .venv on a fresh machine
# with nothing but Python 3.11.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
# One stamp per set of extras: `test` (tests, lint, benchmarks) and `demo` (the embedded
# PostgreSQL). A production install (`pip install mcsync`) needs neither.
STAMP      := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.installed-demo

.PHONY: demo test lint typecheck bench emulator schema-sql clean

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) on PATH (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

$(DEMO_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[demo]'
	touch $(DEMO_STAMP)

demo: $(DEMO_STAMP)
	$(BIN)/mcsync demo $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/unit/test_import_contracts.py

bench: $(STAMP)
	$(BIN)/python -m benchmarks $(if $(QUICK),--quick,)

# sql/schema.sql, regenerated from the migrations (after adding one; see tests/README.md).
schema-sql: $(STAMP)
	$(BIN)/python -m tests.support.schema_sql

emulator: $(DEMO_STAMP)
	$(BIN)/mcsync emulator

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
