# autoui: `make install` sets up .venv (CPU torch first), `make test` runs the suite, `make demo` shows it working.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0

.PHONY: install test test-all demo clean chromium default-model

install: $(BIN)/.installed chromium

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, so nothing else pulls a CUDA build
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q torch==$(TORCH_VERSION)
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

chromium:
	@$(BIN)/python -m autoui.envs.browser_setup --install

test: install
	$(BIN)/python -m pytest -q -m "not slow and not gpu"

test-all: install
	$(BIN)/python -m pytest -q

demo: install
	$(BIN)/python -m autoui.demo

# The recipe of models/default-model/: expert demonstrations (seeds 0..319 per task, held-out 500000..),
# one hour of CPU training, then fp16 weights into models/default-model/. The shipped weights came from
# this recipe at commit ceb0d65; fresh models have since started their vision positions from sin-cos
# (autoui/model/vision.py), so a rerun trains a different model. Augmentation (--augment-shift,
# --augment-text: docs/train.md section 6) is not part of the recipe: it did not make taps follow the
# screen within an hour of this CPU.
default-model: install
	$(BIN)/autoui collect miniwob --suite default --episodes 320 --seed 0 --out data/miniwob/train --workers 2
	$(BIN)/autoui collect miniwob --suite default --episodes 24 --seed 500000 --out data/miniwob/heldout --workers 2
	OMP_NUM_THREADS=2 $(BIN)/python train/sft.py --preset default --data data/miniwob/train \
	    --val-data data/miniwob/heldout --out runs/miniwob-default --steps 3600 --batch-size 32 --lr 1e-3 \
	    --warmup 150 --fmt compact --workers 0 --save-every 300 --val-every 900 --val-max-steps 150 --seed 0
	$(BIN)/python train/ship_model.py runs/miniwob-default/final

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
