"""What one joint training step of the world's target costs, per text-model depth, with and
without the long-form questions: the figures to size a ``world train-target`` budget.

    python hivis/benchmarks/train_step_costs.py [--layers 8 24] [--batch 16] [--steps 2]
                                                [--threads 2]

For each depth and with / without ``--long-form``: a fresh target (default widths), a
tokenizer trained with the long-form questions (a superset: the short questions encode the
same way), then ``--steps`` timed joint steps (forward, backward, optimizer) of ``--batch``
images each, late in the schedule (full world, look-up loss on), after one warm-up step.
Prints seconds per step, packed tokens per step, and how many such steps a budget of
``--budget-min`` wall minutes holds after the vision-only phase (15 %).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from hivis.world.data.tokenizer import save_tokenizer, train_tokenizer
from hivis.world.target.aux_heads import head_of_run
from hivis.world.target.config import TargetTrainConfig, TrainState
from hivis.world.target.model import TargetConfig, build_target
from hivis.world.target.steps import optimizer_for, train_step


def step_seconds(cfg: TargetTrainConfig, steps: int) -> tuple[float, int]:
    """Mean wall seconds of ``steps`` joint steps (after a warm-up) and packed tokens per step."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(cfg.tokenizer_dir)
    model, processor = build_target(cfg.target, tokenizer, cfg.seed)
    head = head_of_run(cfg, model, tokenizer)
    optimizer = optimizer_for(model, head, cfg)
    model.train()
    # Late in a 45-minute run: joint phase, full world, the late batch size.
    state = TrainState(step=100, cpu_s=0.0, wall_s=0.7 * 60 * cfg.wall_budget_min)
    times, tokens = [], 0
    for i in range(steps + 1):
        start = time.perf_counter()
        record = train_step(model, head, optimizer, cfg, state, processor)
        optimizer.step()
        state.scenes_seen += record["images"]
        if i:
            times.append(time.perf_counter() - start)
            tokens = record["tokens"]
    return sum(times) / len(times), tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, nargs="+", default=[8, 24])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--budget-min", type=float, default=90.0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        save_tokenizer(train_tokenizer(640, 300, long_form=True), Path(tmp) / "tok")
        base = TargetTrainConfig(
            out_dir=Path(tmp) / "run",
            tokenizer_dir=Path(tmp) / "tok",
            batch_size=args.batch,
            threads=args.threads,
            cpu_budget_core_min=1e9,
            wall_budget_min=45.0,
        )
        for layers in args.layers:
            for long_form in (False, True):
                cfg = replace(base, long_form=long_form, target=TargetConfig(text_layers=layers))
                seconds, tokens = step_seconds(cfg, args.steps)
                joint = 0.85 * 60 * args.budget_min / seconds
                print(
                    f"text layers {layers:2d}, long-form {'on ' if long_form else 'off'}: "
                    f"{seconds:5.1f} s per joint step of {args.batch} images ({tokens} packed "
                    f"tokens); {joint:5.0f} joint steps in {args.budget_min:.0f} min"
                )


if __name__ == "__main__":
    main()
