# Two commands do all the setup:  make demo  (run the demo end to end)  and  make test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: demo test lint bench clean

demo: $(VENV)/.installed
	snakemake --cores all

test: $(VENV)/.installed
	python -m pytest -q

lint: $(VENV)/.installed
	snakemake --lint

bench: $(VENV)/.installed
	python bench/pick_speed.py

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[workflow,test]"
	touch $@

clean:
	rm -rf results demo .snakemake
