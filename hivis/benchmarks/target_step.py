"""What a training step of the world's target costs two ways, medians:

- ``--compare attention``: the text model attending segment by segment
  (``hivis.world.target.segment_attention``, the default) against densely under the packed
  rows' mask;
- ``--compare precision``: the forward passes in float32 against bf16 autocast
  (``TargetTrainConfig.bf16``; needs a CPU with native bf16 matmuls).

    python hivis/benchmarks/target_step.py [--compare attention] [--processes 2] [--rounds 4]

Two recipes of ``make world``: the base (8 text layers, 16 images of short questions per step)
and the grow (24 layers grown from an 8-layer source, 8 images of long-form and short questions,
the source's layers frozen). Random weights: a step's cost does not depend on them. Every mode
runs in a fresh process, ``--rounds`` steps after two warm-up steps, late in the schedule (full
world, look-up loss on); processes alternate between the modes. One process for both modes
misled: a float32 step that followed bf16 steps cost 1.4x what it costs on its own.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
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

MODES = {"attention": ("dense", "segments"), "precision": ("fp32", "bf16")}
MAKE_BATCH = steps.make_batch


def dense_batches(*args, **kwargs):
    """``make_batch`` whose batches carry no segment layout: the forward attends densely."""
    batch, aux = MAKE_BATCH(*args, **kwargs)
    batch.segment_layout = None
    return batch, aux


def prepare(tmp: Path) -> None:
    """The recipes' tokenizer (``tmp/tok``) and 8-layer grow source (``tmp/source``)."""
    save_tokenizer(train_tokenizer(640, 300, long_form=True), tmp / "tok")
    tokenizer = AutoTokenizer.from_pretrained(tmp / "tok")
    source, processor = build_target(TargetConfig(text_layers=8), tokenizer)
    save_target(source, processor, tmp / "source")


def recipes(tmp: Path) -> dict[str, TargetTrainConfig]:
    """The base and grow configurations of ``make world`` (files of :func:`prepare` in ``tmp``)."""
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


def mode_seconds(tmp: Path, recipe: str, mode: str, rounds: int, threads: int) -> list[float]:
    """Wall seconds of ``rounds`` joint steps (forward, backward, optimizer) in ``mode``, after
    two warm-up steps (a float32 process's first steps cost up to 1.5x its later ones); run in a
    fresh process."""
    torch.set_num_threads(threads)
    cfg = recipes(tmp)[recipe]
    if mode == "bf16":
        cfg = replace(cfg, bf16=True)
    steps.make_batch = dense_batches if mode == "dense" else MAKE_BATCH
    tokenizer = AutoTokenizer.from_pretrained(cfg.tokenizer_dir)
    model, processor = build_target(cfg.target, tokenizer, cfg.seed)
    if cfg.init_from is not None:
        grow_target(model, tokenizer, cfg.init_from)
    head = head_of_run(cfg, model, tokenizer)
    optimizer = steps.optimizer_for(model, head, cfg)
    model.train()
    times = []
    for r in range(rounds + 2):  # rounds 0 and 1 warm up
        state = TrainState(step=100, wall_s=0.7 * 60 * cfg.wall_budget_min, cpu_s=0.0)
        state.scenes_seen = 1000 * r
        start = time.perf_counter()
        steps.train_step(model, head, optimizer, cfg, state, processor)
        optimizer.step()
        if r > 1:
            times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare", choices=sorted(MODES), default="attention")
    parser.add_argument("--processes", type=int, default=2, help="fresh processes per mode")
    parser.add_argument("--rounds", type=int, default=4, help="timed steps per process")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    spawn = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        prepare(Path(tmp))
        for recipe in recipes(Path(tmp)):
            times: dict[str, list[float]] = {mode: [] for mode in MODES[args.compare]}
            for _ in range(args.processes):
                for mode in times:
                    with ProcessPoolExecutor(1, mp_context=spawn) as fresh:
                        job = (Path(tmp), recipe, mode, args.rounds, args.threads)
                        times[mode] += fresh.submit(mode_seconds, *job).result()
            print(recipe, {mode: [round(t, 2) for t in values] for mode, values in times.items()})
            (a, ta), (b, tb) = ((m, statistics.median(t)) for m, t in times.items())
            print(f"{recipe}: {a} {ta:.2f} s, {b} {tb:.2f} s per step -> {ta / tb:.2f}x")


if __name__ == "__main__":
    main()
