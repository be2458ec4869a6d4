# Two commands do all set-up on a machine with Python 3.11+ and make:
#   make demo   the whole pipeline end to end on embedded PostgreSQL, a local lake, Prefect's ephemeral API
#   make test   every test, against real PostgreSQL, a real S3 API and a real Prefect API
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: install demo test unit integration bench chaos clean

install: $(INSTALLED)

$(INSTALLED): pyproject.toml requirements-dev.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --constraint requirements-dev.lock --editable ".[dev]"
	touch $(INSTALLED)

demo: $(INSTALLED)
	$(BIN)/totes demo

test: $(INSTALLED)
	$(BIN)/python -m pytest

unit: $(INSTALLED)
	$(BIN)/python -m pytest -m unit

integration: $(INSTALLED)
	$(BIN)/python -m pytest -m integration

# The benchmark: totes beside the hand-built baseline and the COPY-to-COPY limit, at each scale
# (default 1 10 100; e.g. `make bench SCALES="1 10"`). Writes bench/results/.
SCALES ?= 1 10 100
bench: $(INSTALLED)
	$(BIN)/python -m bench --scales $(SCALES)

# The long chaos run: 50 SIGKILLs of `totes run` / `totes files` at random moments, then the check.
KILLS ?= 50
chaos: $(INSTALLED)
	TOTES_CHAOS_KILLS=$(KILLS) $(BIN)/python -m pytest -m chaos -s -p no:cacheprovider

clean:
	rm -rf $(VENV) .totes .pytest_cache
