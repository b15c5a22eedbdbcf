# make demo | make test | make bench | make lint
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: venv demo test bench lint system-deps

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch pinned first: the CPU wheel (an unpinned torch pulls a multi-GB CUDA build)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	# type stubs only: their declared dependencies would download TensorRT itself from NVIDIA
	$(BIN)/pip install -q --no-deps tensorrt-stubs
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/streamer demo $(ARGS)

system-deps:
	bash scripts/install-system-deps.sh

test: system-deps $(STAMP)
	$(BIN)/python -m pytest -q $(ARGS)

bench: $(STAMP)
	$(BIN)/python -m benchmarks.ingest --json benchmarks/results/ingest.json
	$(BIN)/python -m benchmarks.engine --json benchmarks/results/engine.json
	$(BIN)/python -m benchmarks.e2e --cameras 8 --json benchmarks/results/e2e.json

lint: $(STAMP)
	$(BIN)/ruff check streamer engines tests benchmarks
	$(BIN)/python scripts/typecheck_tensorrt.py
