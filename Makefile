# Thin wrappers around the real commands; `make help` lists them.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench
PYTEST_ARGS ?=
ARGS ?=

.PHONY: help install run demo test lint fmt bench chaos up down clean

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-8s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Re-installs only when pyproject.toml is newer than the stamp.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e '.[dev]'
	@touch $@

# `make bench` also needs the peers it measures against (the `bench` extra).
$(BENCH_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e '.[dev,bench]'
	@touch $@

install: $(STAMP) ## Create .venv and install the project with dev extras (when pyproject.toml changed)

run: install ## Run the engine on the embedded default (SQLite + filesystem broker)
	$(BIN)/quorum dev

demo: install ## Run a router + for_each + extract (n_consensus 3) workflow locally, print the run
	$(BIN)/quorum demo

test: install ## Run the test suite (THE test command; PYTEST_ARGS="..." to pass options)
	$(BIN)/pytest $(PYTEST_ARGS)

lint: install ## ruff check, ruff format --check, mypy
	$(BIN)/ruff check
	$(BIN)/ruff format --check
	$(BIN)/mypy

fmt: install ## Format and auto-fix with ruff
	$(BIN)/ruff format
	$(BIN)/ruff check --fix

bench: $(BENCH_STAMP) ## Run the benchmarks (installs the `bench` extra: DBOS)
	$(BIN)/python -m bench $(ARGS)

chaos: install ## Run the chaos tests
	$(BIN)/python -m tests.chaos

up: ## Start the docker compose stack and wait until healthy
	docker compose up -d --wait

down: ## Stop the docker compose stack and delete its volumes
	docker compose down -v

clean: ## Remove caches and build artifacts (keeps .venv and .data)
	rm -rf .pytest_cache .mypy_cache .ruff_cache build dist *.egg-info
	find . -path ./.venv -prune -o -type d -name __pycache__ -exec rm -rf {} +
