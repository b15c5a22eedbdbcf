# make venv | demo [ARGS=...] | test [ARGS=pytest args] | bench | lint | wheelhouse
# The venv is made once and reinstalled only when pyproject.toml changes (stamp: .venv/.installed).

# Python >= 3.11: python3 when it is new enough, else python3.11
PY ?= $(shell for p in python3 python3.11; do \
          command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
          && { command -v $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ARGS ?=
# where torch comes from: empty for pip's configured index; elsewhere the CPU wheels' index, e.g.
# make venv TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=

.PHONY: venv demo test bench lint system-deps wheelhouse

$(STAMP): pyproject.toml
	@test -n "$(PY)" || { echo "need Python >= 3.11 as python3 or python3.11 (Debian: apt-get install python3 python3-venv)" >&2; exit 1; }
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	# torch pinned first: the CPU wheel (an unpinned torch pulls a multi-GB CUDA build)
	$(BIN)/pip install -q torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
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

# ruff; mypy on the TensorRT modules; the layer rules (import-linter contracts in pyproject.toml);
# the tables in README.md and docs/ against benchmarks/results/; docs/configuration.md against streamer/config.py
lint: $(STAMP)
	$(BIN)/ruff check streamer engines tests benchmarks scripts
	$(BIN)/python scripts/typecheck_tensorrt.py
	$(BIN)/lint-imports
	$(BIN)/python scripts/readme_tables.py --check
	$(BIN)/python scripts/config_docs.py --check

# streamer's wheel and its dependencies' wheels beyond torch, for an install with no index (a GPU host):
# pip install --no-index --find-links wheelhouse streamer
wheelhouse: $(STAMP)
	$(BIN)/python scripts/wheelhouse.py --dir wheelhouse
