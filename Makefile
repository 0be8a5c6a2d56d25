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
	$(BIN)/pip install -q -e 'hivis[dev,train,bench]' -e 'anelastic[dev,bench,dask,mpi]' $(TORCH)
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

# anelastic's tests are bound by Devito's operator building (Python, one core each): two workers,
# a file's tests on one of them so its operators are built once.
test: lint
	$(BIN)/pytest -q -n 2 --dist loadfile anelastic/tests
	$(BIN)/pytest -q hivis/tests

bench: venv
	$(BIN)/python anelastic/benchmarks/forward.py --json anelastic/benchmarks/forward.json
	$(BIN)/python anelastic/benchmarks/kernels.py --json anelastic/benchmarks/kernels.json
	$(BIN)/python hivis/benchmarks/engine.py --json hivis/benchmarks/engine.json
	$(BIN)/hivis bench --json hivis/benchmarks/world.json

# The embedded world (hivis issues 6 and 17): the world's tokenizer, an 8-layer base target
# trained from scratch (BASE_MIN minutes wall), the base grown to 24 layers and trained on the
# long-form questions too (block expansion, the base's layers frozen; GROW_MIN minutes), its
# held-out accuracy, then the three drafters on target-regenerated answers and the assets
# (23-31 minutes; stage 2 of 400 steps instead of 600 costs HiViS 0.1-0.3 points of held-out
# top-1). Every step resumes when rerun; the grow steps in a fresh process every 60 steps (in one
# process the allocator fragments and a step slows from 3.7 to 6.0 s). Measured in session 18
# (hivis/BENCHMARKS.md): 1 h 46.5 min on 2 idle cores (grow 580 steps); colour and counting
# 99-100 %, long-form facts report 84.8 % and step-by-step 77.7 %, 82.0 % of all facts (the
# shipped target, grown longer: 87.0 / 79.1 %).
# PRECISION=auto trains the grow under bf16 autocast where the CPU multiplies bf16 natively (a
# warm grow step 1.1-1.25x cheaper), float32 elsewhere; fp32 forces float32. The base stays
# float32: there bf16 made vision steps 1.16x slower and early joint steps no faster.
BASE_MIN ?= 41
GROW_MIN ?= 40
PRECISION ?= auto
WORLD := build/world
world: venv
	$(BIN)/hivis world tokenizer --out $(WORLD)/tok
	$(BIN)/hivis world train-target --out $(WORLD)/run --tokenizer $(WORLD)/tok \
		--wall-budget-min $(BASE_MIN) --cpu-budget-core-min $$(( $(BASE_MIN) * 19 / 10 ))
	$(BIN)/hivis world tokenizer --out $(WORLD)/tok-lf --long-form --extend $(WORLD)/run/target
	$(BIN)/hivis world train-target --out $(WORLD)/run24 --tokenizer $(WORLD)/tok-lf --long-form \
		--init-from $(WORLD)/run/target --text-layers 24 --freeze-vision-in-joint --aux-weight 0 \
		--extra-questions 2 --early-batch-size 8 --batch-size 8 --lr 1e-3 --curriculum-fraction 0 \
		--precision $(PRECISION) --wall-budget-min $(GROW_MIN) --cpu-budget-core-min $$(( $(GROW_MIN) * 2 )) --checkpoint-every 25 \
		--steps-per-process 60
	$(BIN)/hivis world eval-target --target $(WORLD)/run24/target --scenes 100
	$(BIN)/hivis world build --target $(WORLD)/run24/target --work $(WORLD)/drafters24 \
		--long-form --train-scenes 200 --stage2-steps 400

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
