# Two commands do all set-up on a machine with Python 3.11+ and make:
#   make demo   the whole pipeline end to end on embedded PostgreSQL, a local lake and totes's local
#               Prefect API (both left running at the end, for a look around: it says how to stop them)
#   make test   every test, against real PostgreSQL, a real S3 API and a real Prefect API
# (and `make docs`: the documentation site, served locally)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# What each target needs installed: the demo extra (the embedded PostgreSQL), the dev extra (tests,
# linters, the benchmark's baseline) or the docs extra (Material for MkDocs), all at the versions of
# the dev lock.
DEMO_INSTALLED := $(VENV)/.installed-demo
INSTALLED := $(VENV)/.installed
DOCS_INSTALLED := $(VENV)/.installed-docs
# pip compiles what it installs, but not an editable project's own modules; where Python may not
# write bytecode (PYTHONDONTWRITEBYTECODE, as in our image and CI) every totes process would compile
# them again (~0.1 s a start). A module edited later is compiled in memory, as before.
COMPILE := $(BIN)/python -m compileall -q tasks flows

.PHONY: install demo test unit integration lint docs docs-build bench bench-codecs bench-lake-age chaos clean

install: $(INSTALLED)

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(DEMO_INSTALLED): pyproject.toml requirements-dev.lock | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet --constraint requirements-dev.lock --editable ".[demo]"
	$(COMPILE)
	touch $(DEMO_INSTALLED)

$(INSTALLED): pyproject.toml requirements-dev.lock | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet --constraint requirements-dev.lock --editable ".[dev]"
	$(COMPILE)
	touch $(INSTALLED) $(DEMO_INSTALLED)

$(DOCS_INSTALLED): pyproject.toml requirements-dev.lock | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet --constraint requirements-dev.lock --editable ".[docs]"
	touch $(DOCS_INSTALLED)

demo: $(DEMO_INSTALLED)
	$(BIN)/totes demo

# Three workers (pytest-xdist) on two cores: the integration tests mostly wait on servers, child
# processes and retry back-offs (with two workers CI used 1.5 of its 2 cores and took 24.7 min), and
# each worker starts its own PostgreSQL, S3 server and Prefect API. The longest tests are collected
# first (tests/conftest.py) and an idle worker takes tests queued for another (worksteal), so that
# no long test runs alone at the end.
test: $(INSTALLED)
	$(BIN)/python -m pytest -n 3 --dist worksteal --durations=25

unit: $(INSTALLED)
	$(BIN)/python -m pytest -m unit

integration: $(INSTALLED)
	$(BIN)/python -m pytest -m integration

# Format and lint (ruff), types (mypy), and the rooms' import contracts (import-linter, see
# pyproject.toml): every finding fails.
lint: $(INSTALLED)
	$(BIN)/ruff format --check tasks flows tests bench docs_hooks
	$(BIN)/ruff check tasks flows tests bench docs_hooks
	$(BIN)/mypy
	$(BIN)/lint-imports

# The documentation site (mkdocs.yml, docs/): `make docs` serves it at http://127.0.0.1:8000 and
# rebuilds it on every change; `make docs-build` builds site/ as CI does, with --strict: a dead link
# or anchor, or a reference page docs_hooks/ cannot generate from the code, fails. Material for
# MkDocs is maintained until 2027-05 (its successor, Zensical, reads mkdocs.yml): its banner saying so
# on every build is switched off (NO_MKDOCS_2_WARNING).
docs: $(DOCS_INSTALLED)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve

docs-build: $(DOCS_INSTALLED)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# The benchmark: totes beside the hand-built baseline and the COPY-to-COPY limit, at each scale
# (default 1 10 100; e.g. `make bench SCALES="1 10"`). Writes bench/results/.
SCALES ?= 1 10 100
bench: $(INSTALLED)
	$(BIN)/python -m bench --scales $(SCALES)

# Parquet codecs and row groups, on the lake the last `make bench` wrote at scale 100.
bench-codecs: $(INSTALLED)
	$(BIN)/python -m bench.codecs .totes/bench/lake-100_0

# What a lake's age costs: run, status, backfill, history switch-on and rebuild on lakes of
# BATCHES batches beside a young lake (e.g. `make bench-lake-age BATCHES="1000 5000"`).
BATCHES ?= 1000 5000
bench-lake-age: $(INSTALLED)
	$(BIN)/python -m bench.lake_age --batches $(BATCHES) --s3

# The long chaos run: 50 SIGKILLs of `totes run` / `totes files` at random moments, then the check.
KILLS ?= 50
chaos: $(INSTALLED)
	TOTES_CHAOS_KILLS=$(KILLS) $(BIN)/python -m pytest -m chaos -s -p no:cacheprovider

clean:
	rm -rf $(VENV) .totes site .pytest_cache .mypy_cache .ruff_cache
