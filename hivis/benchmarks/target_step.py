"""What a training step of the world's target costs two ways, in alternating rounds, medians:

- ``--compare attention``: the text model attending segment by segment
  (``hivis.world.target.segment_attention``, the default) against densely under the packed
  rows' mask;
- ``--compare precision``: the forward passes in float32 against bf16 autocast
  (``TargetTrainConfig.bf16``; needs a CPU with native bf16 matmuls).

    python hivis/benchmarks/target_step.py [--compare attention] [--rounds 5] [--threads 2]

Two recipes of ``make world``: the base (8 text layers, 16 images of short questions per step)
and the grow (24 layers grown from an 8-layer source, 8 images of long-form and short questions,
the source's layers frozen). Random weights: a step's cost does not depend on them. Each round
runs both modes on the same scenes, late in the schedule (full world, look-up loss on).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from transformers import AutoTokenizer

import hivis.world.target.steps as steps
from hivis.world.data.tokenizer import save_tokenizer, train_tokenizer
from hivis.world.target.aux_heads import head_of_run
from hivis.world.target.config import TargetTrainConfig, TrainState
from hivis.world.target.grow import grow_target
from hivis.world.target.model import TargetConfig, build_target, save_target

MAKE_BATCH = steps.make_batch


def dense_batches(*args, **kwargs):
    """``make_batch`` whose batches carry no segment layout: the forward attends densely."""
    batch, aux = MAKE_BATCH(*args, **kwargs)
    batch.segment_layout = None
    return batch, aux


def recipes(tmp: Path) -> dict[str, TargetTrainConfig]:
    """The base and grow configurations of ``make world`` (tokenizer and source in ``tmp``)."""
    save_tokenizer(train_tokenizer(640, 300, long_form=True), tmp / "tok")
    tokenizer = AutoTokenizer.from_pretrained(tmp / "tok")
    source, processor = build_target(TargetConfig(text_layers=8), tokenizer)
    save_target(source, processor, tmp / "source")
    common = {"out_dir": tmp / "run", "tokenizer_dir": tmp / "tok", "cpu_budget_core_min": 1e9}
    return {
        "base (8 layers, 16 images)": TargetTrainConfig(**common, wall_budget_min=38.0),
        "grow (24 layers, 8 images, long-form)": TargetTrainConfig(
            **common,
            wall_budget_min=40.0,
            long_form=True,
            init_from=tmp / "source",
            target=TargetConfig(text_layers=24),
            freeze_vision_in_joint=True,
            aux_weight=0.0,
            extra_questions=2,
            early_batch_size=8,
            batch_size=8,
            curriculum_fraction=0.0,
        ),
    }


def modes_of(cfg: TargetTrainConfig, compare: str) -> dict:
    """Mode name -> (configuration, batch maker) of the two sides of ``compare``."""
    if compare == "attention":
        return {"dense": (cfg, dense_batches), "segments": (cfg, MAKE_BATCH)}
    return {"fp32": (cfg, MAKE_BATCH), "bf16": (replace(cfg, bf16=True), MAKE_BATCH)}


def step_medians(cfg: TargetTrainConfig, rounds: int, compare: str) -> dict[str, float]:
    """Median wall seconds of one joint step (forward, backward, optimizer) per mode."""
    tokenizer = AutoTokenizer.from_pretrained(cfg.tokenizer_dir)
    model, processor = build_target(cfg.target, tokenizer, cfg.seed)
    if cfg.init_from is not None:
        grow_target(model, tokenizer, cfg.init_from)
    head = head_of_run(cfg, model, tokenizer)
    optimizer = steps.optimizer_for(model, head, cfg)
    model.train()
    modes = modes_of(cfg, compare)
    times: dict[str, list[float]] = {mode: [] for mode in modes}
    for r in range(rounds + 1):  # round 0 warms up
        for mode, (mode_cfg, make_batch) in modes.items():
            steps.make_batch = make_batch
            state = TrainState(step=100, wall_s=0.7 * 60 * cfg.wall_budget_min, cpu_s=0.0)
            state.scenes_seen = 1000 * r
            start = time.perf_counter()
            steps.train_step(model, head, optimizer, mode_cfg, state, processor)
            optimizer.step()
            if r:
                times[mode].append(time.perf_counter() - start)
    steps.make_batch = MAKE_BATCH
    return {mode: statistics.median(values) for mode, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare", choices=["attention", "precision"], default="attention")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        for name, cfg in recipes(Path(tmp)).items():
            seconds = step_medians(cfg, args.rounds, args.compare)
            (a, ta), (b, tb) = seconds.items()
            print(f"{name}: {a} {ta:.2f} s, {b} {tb:.2f} s per step -> {ta / tb:.2f}x")


if __name__ == "__main__":
    main()
