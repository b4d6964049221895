# Two commands do all the setup:  make demo  (run the demo end to end)  and  make test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: demo test test-slurm lint bench clean

demo: $(VENV)/.installed
	snakemake --cores all

test: $(VENV)/.installed
	python -m pytest -q

# Starts a one-node SLURM cluster (tests/slurm/start.sh: root, Debian) and runs the workflow on it.
test-slurm: $(VENV)/.installed
	python -m pytest -q -s -m slurm tests/test_slurm.py

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
