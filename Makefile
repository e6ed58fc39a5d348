# autoui: `make install` sets up .venv (CPU torch first), `make test` runs the suite, `make demo` shows it working.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0

.PHONY: install test test-all demo clean chromium

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

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
