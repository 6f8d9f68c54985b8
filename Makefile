# Reelforge: `make demo` sets everything up and runs the main job; `make test` runs the suite.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt 2>/dev/null | sha1sum | cut -c1-12)
INFRA := $(BIN)/python -m deploy.localinfra

.PHONY: help setup infra-install infra-up infra-down infra-status topics emulator demo up down \
        test test-unit lint typecheck bench fault-matrix schemas clean

help:
	@echo "make demo     set up everything and run the main job end to end"
	@echo "make test     run the whole test suite on real servers (starts and stops them)"
	@echo "other: setup infra-up infra-down infra-status topics emulator up down lint typecheck bench fault-matrix schemas"

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PY) >/dev/null || { echo "error: $(PY) not found (Python 3.11 is required)"; exit 2; }
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	bash deploy/system-deps.sh
	@rm -f $(VENV)/.installed-*; touch $@

infra-install: setup
	$(INFRA) install

infra-up: setup
	$(INFRA) up

infra-down:
	@test -x $(BIN)/python && $(INFRA) down || python3 -m deploy.localinfra down

infra-status:
	@$(INFRA) status

topics: setup
	$(BIN)/python -m deploy.create_topics

emulator: setup
	$(BIN)/python -m services.emulator

# The demo needs no FerretDB (it only serves the MongoDB adapter's wire-level tests).
DEMO_SERVERS := kafka postgres minio prometheus

demo: setup
	$(INFRA) up $(DEMO_SERVERS)
	$(BIN)/python -m deploy.proof
	$(BIN)/python -m deploy.create_topics
	$(BIN)/python -m deploy.demo

up: setup
	$(BIN)/reelforge up

down:
	$(BIN)/reelforge down

# The whole suite: unit, contract (fake and real adapters), integration and e2e. The servers
# are started if they are not running, and only those this run started are stopped after.
test: setup lint
	$(INFRA) run -- $(BIN)/python -m pytest $(PYTEST_ARGS)

test-unit: setup
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check shared services deploy tests
	$(BIN)/ruff format --check shared services deploy tests

typecheck: setup
	$(BIN)/mypy shared services deploy

bench: setup
	$(INFRA) run -- $(BIN)/python -m tests.bench

# The fault matrix at full size (10 jobs per row; `make test` runs 3), its table into the README.
fault-matrix: setup
	$(INFRA) run -- env FAULT_MATRIX_N=10 FAULT_MATRIX_OUT=deploy/fault_matrix.json \
		$(BIN)/python -m pytest tests/e2e/test_fault_matrix.py $(PYTEST_ARGS)
	$(BIN)/python -m deploy.docs

schemas: setup
	$(BIN)/python -m deploy.schemas

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .bench
