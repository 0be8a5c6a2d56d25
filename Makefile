# One place for every command. Works from a fresh clone: `make demo`, `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# torch comes first and pinned: the CPU wheel on this machine's disk (on a GPU machine the
# same pin pulls the CUDA build); later installs then find it satisfied and pull nothing.
TORCH := torch==2.13.0

.PHONY: venv demo test lint format bench world clean

venv: $(STAMP)

$(STAMP): hivis/pyproject.toml anelastic/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e 'hivis[dev,train,bench]' -e 'anelastic[dev,bench,dask]' $(TORCH)
	touch $(STAMP)

demo: venv
	$(BIN)/hivis demo
	$(BIN)/anelastic demo

lint: venv
	$(BIN)/ruff check hivis anelastic
	$(BIN)/ruff format --check hivis anelastic

format: venv
	$(BIN)/ruff format hivis anelastic
	$(BIN)/ruff check --fix hivis anelastic

test: lint
	$(BIN)/pytest -q anelastic/tests
	$(BIN)/pytest -q hivis/tests

bench: venv
	$(BIN)/python anelastic/benchmarks/forward.py --json anelastic/benchmarks/forward.json
	$(BIN)/python anelastic/benchmarks/kernels.py --json anelastic/benchmarks/kernels.json
	$(BIN)/python hivis/benchmarks/engine.py --json hivis/benchmarks/engine.json
	$(BIN)/hivis bench --json hivis/benchmarks/world.json

# The embedded world (hivis issue 6): tokenizer, then the tiny target trained from scratch on CPU
# (45 minutes wall at most, 80 CPU core-minutes, whichever ends first; rerunning resumes from the
# last checkpoint), its held-out exact match per task type, then the three drafters on
# target-regenerated answers and the shipped assets in hivis/src/hivis/world/assets (about 20
# minutes; resumable). About 70 minutes in all on 2 idle cores.
WORLD := build/world
world: venv
	$(BIN)/hivis world tokenizer --out $(WORLD)/tok
	$(BIN)/hivis world train-target --out $(WORLD)/run --tokenizer $(WORLD)/tok
	$(BIN)/hivis world eval-target --target $(WORLD)/run/target
	$(BIN)/hivis world build --target $(WORLD)/run/target --work $(WORLD)/drafters

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
