# make demo: the main job on embedded synthetic data.  make test: the test suite.
# Both create .venv and install everything on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast bench clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# CPU machines: torch/torchvision from the local wheel cache (see README); elsewhere any torch>=2.2 works
	$(BIN)/pip install -q "torch==2.14.1" "torchvision==0.29.1" || $(BIN)/pip install -q "torch>=2.2" "torchvision>=0.17"
	$(BIN)/pip install -q -e ".[dev,dlc,umap,optuna]"
	touch $(STAMP)

demo: $(STAMP)
	WANDB_MODE=offline $(BIN)/python train.py experiment=demo

test: $(STAMP)
	WANDB_MODE=offline $(BIN)/python -m pytest -q

test-fast: $(STAMP)
	WANDB_MODE=offline $(BIN)/python -m pytest -q -m "not slow"

bench: $(STAMP)
	$(BIN)/python benchmarks/render_speed.py
	$(BIN)/python benchmarks/extract_speed.py
	$(BIN)/python benchmarks/datamodule_throughput.py

clean:
	rm -rf $(VENV) logs data outputs multirun
