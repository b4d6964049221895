# Two commands do all the setup:  make demo  (run the demo end to end)  and  make test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: demo test test-slurm test-gpu lint bench clean

demo: $(VENV)/.installed
	snakemake --cores all

test: $(VENV)/.installed
	python -m pytest -q

# Starts a one-node SLURM cluster (tests/slurm/start.sh: root, Debian) and runs the workflow on it.
test-slurm: $(VENV)/.installed
	python -m pytest -q -s -m slurm tests/test_slurm.py

# On a node with a CUDA GPU (skipped elsewhere): CUDA scores equal the CPU's, training on CUDA is
# reproducible, and CUDA picks agree with CPU picks.
test-gpu: $(VENV)/.installed
	python -m pytest -q -m gpu tests/test_gpu.py

lint: $(VENV)/.installed
	snakemake --lint

# deepem vs Topaz on ../shared/data (bgal, syn19hc), full and 30 % labels; creates bench/.topaz if missing.
# Topaz is trained for TOPAZ_BUDGET updates: one epoch of its default 10 x 1000 (409-477 s here);
# deepem is trained with DEEPEM_SEEDS seeds (the table shows the first, seeds.tsv all).
# From scratch on 2 quiet cores: syn19hc ~22 min, bgal ~87 min (30 of them the pretrained Topaz extract).
# Stages already done in bench/results/<dataset> are reused, so an interrupted run resumes.
# Results: bench/results/<dataset>/{comparison.tsv,seeds.tsv,pr.png,throughput.tsv}; see bench/RESULTS.md.
DATA ?= ../shared/data
TOPAZ_BUDGET ?= --topaz-epochs 1 --topaz-epoch-size 1000
DEEPEM_SEEDS ?= 3

bench: $(VENV)/.installed
	python bench/pick_speed.py
	python bench/compare_topaz.py $(DATA)/syn19hc -o bench/results/syn19hc --fractions 1 0.3 $(TOPAZ_BUDGET) --deepem-seeds $(DEEPEM_SEEDS) --threshold-mics 3 --throughput 24
	python bench/compare_topaz.py $(DATA)/bgal -o bench/results/bgal --fractions 0.3 1 $(TOPAZ_BUDGET) --deepem-seeds $(DEEPEM_SEEDS) --threshold-mics 2

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[workflow,test]"
	touch $@

clean:
	rm -rf results demo .snakemake
