# Two commands do all set-up on a fresh machine:
#   make demo   -> venv + install + simulate, ingest and run the built-in demo cohort
#   make test   -> venv + install + lint (ruff), format check, type check (mypy) and the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.cellsift-installed

.PHONY: setup demo test lint bench clean system-deps

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/cellsift demo demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# System packages some tests need (a browser, SLURM): each .ci/deps/*.sh installs its own, idempotently.
system-deps:
	@for script in .ci/deps/*.sh; do [ -e "$$script" ] && bash "$$script" || true; done

test: lint system-deps
	$(BIN)/python -m pytest -q -p no:cacheprovider

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_ingest.py

clean:
	rm -rf demo build dist *.egg-info
