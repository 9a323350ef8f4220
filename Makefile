# Two commands matter: `make demo` and `make test`. Everything else is a helper.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SCALE ?= xs
RUNS ?= 1
export FS_HOME ?= $(CURDIR)/.fs_platform

.PHONY: install demo test ui serve bench lint services-stop clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	cd dbt_project && ../$(BIN)/dbt parse --profiles-dir . --quiet
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/fs-platform demo

test: $(STAMP)
	$(BIN)/pytest -q

ui: $(STAMP)
	$(BIN)/fs-platform ui

serve: $(STAMP)
	$(BIN)/fs-platform serve

bench: $(STAMP)
	$(BIN)/python -m bench.run --scale $(SCALE) --runs $(RUNS)

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

services-stop: $(STAMP)
	$(BIN)/fs-platform services stop

clean:
	-$(BIN)/fs-platform services stop
	rm -rf $(VENV) .fs_platform dbt_project/target dbt_project/logs
