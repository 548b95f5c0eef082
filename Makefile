# Two commands do all the set-up on a fresh machine (Python 3.11 and pip are enough):
#   make run    executes every notebook headless (quick profile) into outputs/
#   make test   runs ruff (lint and format check) and then the whole test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
PROFILE ?= quick

.PHONY: setup data chromium run docs lint format test benchmark clean

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# The CPU build of torch; an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(INSTALLED)

# Bytecode for the kit's own modules: an editable install leaves none, and where
# PYTHONDONTWRITEBYTECODE is set none is ever written, so every process (each notebook's kernel
# too) would compile the kit from source again (0.5 s per process on two cores).
setup: $(INSTALLED) data
	$(BIN)/python -m compileall -q cmkd_lab

# Converts the offline datasets into the cache (no network needed after install).
data: $(INSTALLED)
	$(BIN)/python -m cmkd_lab.datasets.prepare

# Chromium lets kaleido write PNG/SVG figures; without it figures are HTML only.
chromium:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else echo "note: no Chromium and no root to install it; static figure export will be skipped"; fi

# The API reference goes into the site before the gallery, whose index links it when it is there.
run: setup chromium
	$(BIN)/python -m cmkd_lab run all --profile $(PROFILE) --static --out outputs
	$(BIN)/python -m cmkd_lab docs --out site
	$(BIN)/python -m cmkd_lab gallery --outputs outputs --out site

# The API reference alone (pdoc, from the docstrings): site/api/index.html
docs: $(INSTALLED)
	$(BIN)/python -m cmkd_lab docs --out site

# What CI checks before the tests (ruff, configured in pyproject.toml); `make format` fixes what it can.
lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(INSTALLED)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: lint setup chromium
	# One thread per process: two workers and their notebook kernels share the two cores.
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n 2 --dist loadfile --durations=15 --nbval-lax tests notebooks

benchmark: setup
	$(BIN)/python benchmarks/batched_vs_single.py

clean:
	rm -rf $(VENV) outputs site .pytest_cache
