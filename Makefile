# make demo: the main job on embedded synthetic data.  make test: the test suite.
# Both create .venv and install everything on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint bench clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# CPU machines: torch/torchvision from the local wheel cache (see README); elsewhere any torch>=2.2 works
	# compiled at install (no --no-compile): with PYTHONDONTWRITEBYTECODE=1, as on CI, Python
	# would otherwise compile torch & co. from source in every process (make test: 32 min)
	$(BIN)/pip install -q "torch==2.14.1" "torchvision==0.29.1" || $(BIN)/pip install -q "torch>=2.2" "torchvision>=0.17"
	$(BIN)/pip install -q -e ".[dev,dlc,umap,optuna,slurm,review]"
	touch $(STAMP)

demo: $(STAMP)
	WANDB_MODE=offline $(BIN)/python train.py experiment=demo

test: $(STAMP) lint
	# chromium for the review pages' browser tests (exit 3: cannot install here; they skip)
	scripts/install-browser || [ $$? = 3 ]
	WANDB_MODE=offline $(BIN)/python -m pytest -q

# ruff (lint + format), configured in pyproject.toml
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test-fast: $(STAMP)
	WANDB_MODE=offline $(BIN)/python -m pytest -q -m "not slow"

# speed and memory targets (README: Benchmarks); results land in benchmarks/results/
bench: $(STAMP)
	$(BIN)/python benchmarks/render_speed.py > benchmarks/results/render_speed.json
	$(BIN)/python benchmarks/extract_speed.py > benchmarks/results/extract_speed_640x360.json
	$(BIN)/python benchmarks/extract_speed.py --width 1920 --height 1080 --minutes 1 3 > benchmarks/results/extract_speed_1920x1080.json
	$(BIN)/python benchmarks/extract_speed.py --width 3840 --height 2160 --fps 30 --minutes 0.1 0.3 > benchmarks/results/extract_speed_3840x2160.json
	$(BIN)/python benchmarks/datamodule_throughput.py > benchmarks/results/datamodule_throughput.json
	$(BIN)/python benchmarks/memory_format.py > benchmarks/results/memory_format.json
	$(BIN)/python benchmarks/dlc_speed.py > benchmarks/results/dlc_speed_cspnext_s.json
	$(BIN)/python benchmarks/difficulty.py | tee benchmarks/results/difficulty.txt
	$(BIN)/python benchmarks/pipeline_speed.py --sizes 640x360 1920x1080 3840x2160 --frames 600 > benchmarks/results/pipeline_speed.json
	scripts/local-slurm start && $(BIN)/python benchmarks/slurm_overhead.py > benchmarks/results/slurm_overhead.json
	# about 2.5 min per unit and seed on 2 cores (30 runs for 5 seeds); resumes where it stopped
	$(BIN)/python benchmarks/planted_regions.py | tee benchmarks/results/planted_regions.txt

clean:
	rm -rf $(VENV) logs data outputs multirun
