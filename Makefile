# One place for every command. Works from a fresh clone: `make demo`, `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# torch comes first and pinned: the CPU wheel on this machine's disk (on a GPU machine the
# same pin pulls the CUDA build); later installs then find it satisfied and pull nothing.
TORCH := torch==2.13.0

.PHONY: venv demo test lint format bench world world-long clean

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

# The deeper long-form world (hivis issue 17; world README, "A deeper long-form target grown
# from the shipped one"): the package's 8-layer target grown to 24 layers and trained on the
# long-form questions too (55 minutes), then its drafters (about 50 minutes), into
# $(WORLD_LONG_ASSETS); `hivis bench --assets $(WORLD_LONG_ASSETS)` measures it. Resumable.
SHIPPED_TARGET := hivis/src/hivis/world/assets/target
WORLD_LONG_ASSETS ?= $(WORLD)/assets24
world-long: venv
	$(BIN)/hivis world tokenizer --out $(WORLD)/tok-lf --long-form --extend $(SHIPPED_TARGET)
	$(BIN)/hivis world train-target --out $(WORLD)/run24 --tokenizer $(WORLD)/tok-lf --long-form \
		--init-from $(SHIPPED_TARGET) --text-layers 24 --freeze-vision-in-joint --aux-weight 0 \
		--extra-questions 2 --early-batch-size 8 --batch-size 8 --lr 1e-3 --curriculum-fraction 0 \
		--wall-budget-min 55 --cpu-budget-core-min 105 --checkpoint-every 25
	$(BIN)/hivis world eval-target --target $(WORLD)/run24/target --scenes 100
	$(BIN)/hivis world build --target $(WORLD)/run24/target --work $(WORLD)/drafters24 \
		--assets $(WORLD_LONG_ASSETS) --long-form --train-scenes 200

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
