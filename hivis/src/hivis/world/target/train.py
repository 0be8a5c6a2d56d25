"""Training the world's target from scratch on CPU.

Loss = cross-entropy of the answer tokens (packed questions, see ``packing``) + ``aux_weight`` *
auxiliary loss (``aux_heads``: linear heads on the projected visual tokens predict, for each
patch, the colour, shape, size and image region of the object it holds and, with
``object_count_targets`` (default), how many objects share its colour and its shape; from the
class token, the scene's counts, and with ``fact_targets`` also the facts about its uniquely
named objects; with ``word_tied_heads`` the colour, shape and size heads score a patch by its
cosine with the text embeddings of the class words) + ``lookup_weight`` * look-up loss
(``lookup``: head ``lookup_head`` of text layer ``lookup_layer`` is taught to put each answer
position's attention on the visual tokens of the objects its question names). The heads and
the look-up target exist only in training; they are not part of the saved target.

Two phases: while progress < ``vision_pretrain_fraction`` only the vision tower, projector and
heads train, on the auxiliary loss alone (``vision_batch_size`` images per step, about 5x
cheaper per image than a joint step, which runs 8 text layers over the 256 visual tokens);
then everything trains jointly, the text model starting from the vision phase's visual tokens
(with ``freeze_vision_in_joint`` the vision tower then stays as the vision phase left it: the
joint steps are cheaper and do not disturb what its class token gathered).

Data are generated on the fly: each step takes the next training scenes after the
``scenes_seen`` already used (kept in the checkpoint), so a resumed run sees the same scenes an
uninterrupted run would. Batches hold ``early_batch_size`` images while progress <
``batch_switch_fraction``, then ``batch_size`` (more updates early, less noise later).

The run has three budgets and ends at the first one used up (``progress`` = the largest used
fraction): ``max_steps``; ``wall_budget_min`` (default 45: the issue's "45 minutes on 2
cores"); ``cpu_budget_core_min``, the CPU time of the process in core-minutes (default 80,
what an idle 2-core machine spends in ~45 minutes), which depends far less than wall-clock time
on how busy a shared machine is - but not at all only while the run's threads have their cores:
when other jobs oversubscribe them, OpenMP threads spin while waiting and a step costs up to
twice the CPU time (measured: 3.9 instead of 1.9 CPU-s per vision step).
The learning rate (linear warm-up, then cosine decay, re-warm-up when the text model joins) and
the curriculum (scenes of at most ``curriculum_max_objects`` objects for the first
``curriculum_fraction`` of progress of the joint phase) follow progress, so the run anneals
properly whichever budget ends it.

A long run can step in a sequence of fresh processes (``train_target_in_fresh_processes``),
each resuming from the checkpoint the previous one wrote. Why: glibc's allocator fragments
over a grow run (bf16, varying packed shapes), so the time it spends in ``_int_malloc`` grows
from 6 % to 14 % of the samples within 116 steps (``perf``) and a step from 3.7 to 6.0 s over
480 steps; a fresh process steps at the first speed again (BENCHMARKS.md, session 18).
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from multiprocessing import get_context
from pathlib import Path

import torch
from tqdm import tqdm

from hivis.world.data.tokenizer import expresses_long_form
from hivis.world.target.aux_heads import head_of_run
from hivis.world.target.checkpoint import load_checkpoint, save_checkpoint
from hivis.world.target.config import TargetTrainConfig, TrainState
from hivis.world.target.grow import grow_target
from hivis.world.target.model import build_target, save_target
from hivis.world.target.schedule import run_progress
from hivis.world.target.steps import optimizer_for, train_step


def _log(path: Path, record: dict) -> None:
    with path.open("a") as fh:
        fh.write(json.dumps(record) + "\n")


def _report(bar: tqdm, out: Path, cfg: TargetTrainConfig, state: TrainState, record: dict) -> None:
    """The step on the progress bar and, every ``log_every`` steps, in ``out/log.jsonl``."""
    bar.update(1)
    bar.set_postfix(
        loss=f"{record.get('loss', float('nan')):.3f}",
        aux=f"{record['aux_loss']:.3f}",
        em=f"{record.get('train_exact', float('nan')):.2f}",
    )
    if state.step % cfg.log_every == 0 or state.step == cfg.max_steps:
        _log(
            out / "log.jsonl",
            {**record, "wall_s": round(state.wall_s, 1), "cpu_s": round(state.cpu_s, 1)},
        )


def train_target(
    cfg: TargetTrainConfig, stop_at_step: int | None = None, steps_in_process: int | None = None
) -> Path | None:
    """Train (or resume from ``out_dir/checkpoint.pt``) the target; returns the directory of the
    saved float32 target, or None when the run stopped before its end: at ``stop_at_step``
    (as a crash would, without ending its schedule) or after ``steps_in_process`` steps of
    this call. Either stop writes the checkpoint."""
    from transformers import AutoTokenizer

    torch.set_num_threads(cfg.threads)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_config.json").write_text(json.dumps(asdict(cfg), default=str, indent=1))
    tokenizer = AutoTokenizer.from_pretrained(cfg.tokenizer_dir)
    if cfg.long_form and not expresses_long_form(tokenizer):
        raise ValueError(
            f"long_form needs a tokenizer trained with the long-form questions; "
            f"{cfg.tokenizer_dir} was not (make one with `world tokenizer --long-form`)"
        )
    model, processor = build_target(cfg.target, tokenizer, cfg.seed)
    if cfg.init_from is not None:
        grow_target(model, tokenizer, cfg.init_from)  # a resumed run's checkpoint overrides it
    head = head_of_run(cfg, model, tokenizer)
    optimizer = optimizer_for(model, head, cfg)
    state = load_checkpoint(cfg, model, head, optimizer)
    model.train()
    wall0, cpu0 = time.perf_counter() - state.wall_s, time.process_time() - state.cpu_s
    if steps_in_process is not None:
        stop_at_step = min(stop_at_step or cfg.max_steps, state.step + steps_in_process)
    bar = tqdm(total=cfg.max_steps, initial=state.step, desc="train-target", dynamic_ncols=True)
    while state.step < cfg.max_steps:
        record = train_step(model, head, optimizer, cfg, state, processor)
        optimizer.step()
        state.step += 1
        state.scenes_seen += record["images"]
        state.wall_s = time.perf_counter() - wall0
        state.cpu_s = time.process_time() - cpu0
        _report(bar, out, cfg, state, record)
        if state.step % cfg.checkpoint_every == 0:
            save_checkpoint(cfg, model, head, optimizer, state)
        if run_progress(state, cfg) >= 1.0:
            _log(out / "log.jsonl", {"stopped": "budget", "step": state.step})
            break
        if state.step == stop_at_step:
            break
    bar.close()
    save_checkpoint(cfg, model, head, optimizer, state)
    if run_progress(state, cfg) < 1.0:  # stopped before the schedule's end
        return None
    model.eval()
    save_target(model, processor, out / "target")
    return out / "target"


def train_target_in_fresh_processes(cfg: TargetTrainConfig, steps_per_process: int) -> Path:
    """``train_target`` run ``steps_per_process`` steps at a time, each time in a new process
    (spawned, so nothing of the last one's heap is inherited) that resumes from the
    checkpoint; returns the saved target's directory. The run's wall and CPU budgets count
    only the steps, not the processes' start-up (a few seconds each)."""
    if steps_per_process < 1:
        raise ValueError(f"steps_per_process must be >= 1, got {steps_per_process}")
    while True:
        with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
            target = pool.submit(train_target, cfg, None, steps_per_process).result()
        if target is not None:
            return target
