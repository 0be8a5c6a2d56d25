"""The training loop on Hugging Face accelerate (DDP; bf16 on GPU, fp32 on CPU).

Data order is a pure function of (seed, epoch, record lengths): every epoch is a seeded
permutation of the feature records cut into global batches of ``batch_size`` records (with
``length_grouped``, records of similar length share a batch: see :func:`global_batch`);
process ``rank`` of ``world`` takes records ``rank::world`` of each global batch. The noise
on the features is drawn per record from a generator seeded by (seed, step, record), whatever
the process count. A run can therefore stop anywhere and resume from its last checkpoint
(model, optimizer, scheduler and RNG states saved by accelerate, plus the step) without
losing or repeating a sample, and give the same weights.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path

import torch

from hivis.train.features import RecordFeatures
from hivis.train.objective import DrafterObjective, LossWeights, collate


class Stage(Enum):
    STAGE1 = "stage1"
    STAGE2 = "stage2"


@dataclass(frozen=True)
class DrafterTrainConfig:
    """Optimisation settings (defaults as in the paper's code for stage 1).

    num_steps: drafting steps simulated per batch (1 for stage 1, K = 3 for stage 2).
    max_steps / epochs: exactly one sets the length. warmup_steps: linear warm-up, then
    linear decay to 0. checkpoint_every: optimizer steps between checkpoints (0: none).
    length_grouped: batch records of similar length together (a batch is padded to its
    longest record; mixing 13-token and 300-token answers wastes most of every batch). Off
    by default: on the world's long-form data it made the HiViS drafter's training 3x faster
    but its held-out top-1 1-1.5 points lower at the same steps (hivis/BENCHMARKS.md,
    session 13).
    """

    stage: Stage = Stage.STAGE1
    num_steps: int = 1
    lr: float = 3e-5
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.0
    warmup_steps: int = 20
    max_steps: int | None = None
    epochs: float | None = None
    batch_size: int = 8
    grad_clip: float = 0.5
    weights: LossWeights = field(default_factory=LossWeights)
    checkpoint_every: int = 100
    keep_checkpoints: int = 2
    log_every: int = 10
    seed: int = 0
    length_grouped: bool = False

    def __post_init__(self) -> None:
        if (self.max_steps is None) == (self.epochs is None):
            raise ValueError("give exactly one of max_steps and epochs")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")
        if self.epochs is not None and self.epochs <= 0:
            raise ValueError(f"epochs must be > 0, got {self.epochs}")
        if self.batch_size < 1 or self.lr <= 0 or self.grad_clip <= 0:
            raise ValueError("batch_size >= 1, lr > 0 and grad_clip > 0 are required")
        if self.stage is Stage.STAGE1 and self.num_steps != 1:
            raise ValueError("stage 1 trains a single step: num_steps must be 1")

    def total_steps(self, num_records: int) -> int:
        if self.max_steps is not None:
            return self.max_steps
        return max(1, math.ceil(self.epochs * batches_per_epoch(num_records, self.batch_size)))


def batches_per_epoch(num_records: int, batch_size: int) -> int:
    return math.ceil(num_records / batch_size)


# With length grouping, each run of this many batches of the epoch's permutation is sorted by
# length before it is cut: long enough to find partners of similar length, short enough to
# keep every batch a random draw from the data.
LENGTH_GROUP_BATCHES = 32


def global_batch(lengths: list[int], config: DrafterTrainConfig, step: int) -> list[int]:
    """Record indices of optimizer step ``step`` (0-based), a pure function of the seed.

    lengths: rows per record, in record order. Without ``length_grouped`` an epoch is a
    seeded permutation cut into batches. With it, each window of ``LENGTH_GROUP_BATCHES``
    batches of that permutation is sorted by length (longest first) and cut, and the epoch's
    batches are then shuffled (as Hugging Face's length-grouped sampler does).
    """
    per_epoch = batches_per_epoch(len(lengths), config.batch_size)
    epoch, index = divmod(step, per_epoch)
    seed = config.seed * 7919 + epoch
    order = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(seed)).tolist()
    size = config.batch_size
    if not config.length_grouped:
        return order[index * size : (index + 1) * size]
    window = size * LENGTH_GROUP_BATCHES
    batches = []
    for start in range(0, len(order), window):
        group = sorted(order[start : start + window], key=lambda i: -lengths[i])
        batches += [group[i : i + size] for i in range(0, len(group), size)]
    shuffle = torch.randperm(len(batches), generator=torch.Generator().manual_seed(seed + 1))
    return batches[int(shuffle[index])]


@dataclass
class TrainResult:
    steps: int
    history: list[dict]


def train(
    drafter,
    records: list[RecordFeatures],
    config: DrafterTrainConfig,
    out_dir: str | Path,
    accelerator=None,
    on_step: Callable[[int, dict], None] | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train ``drafter`` on feature records; checkpoints and logs go to ``out_dir``.

    Resumes from the newest checkpoint in ``out_dir/checkpoints`` if there is one. Returns the
    number of optimizer steps done and the logged history (one dict per logged step).
    on_step(step, metrics): called after every optimizer step (tests use it to interrupt).
    """
    from accelerate import Accelerator
    from tqdm.auto import tqdm
    from transformers import get_linear_schedule_with_warmup

    if not records:
        raise ValueError("no training records: the feature store is empty")
    accelerator = accelerator or Accelerator(**default_precision())
    out_dir = Path(out_dir)
    total = config.total_steps(len(records))
    objective = DrafterObjective(drafter, config.num_steps, config.weights)
    params = [p for p in drafter.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        params, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay
    )
    scheduler = get_linear_schedule_with_warmup(optimizer, config.warmup_steps, total)
    objective, optimizer, scheduler = accelerator.prepare(objective, optimizer, scheduler)
    start = _resume(accelerator, out_dir)
    history = _read_history(out_dir, start) if accelerator.is_main_process else []
    bar = tqdm(
        total=total,
        initial=start,
        desc=config.stage.value,
        disable=not progress or not accelerator.is_main_process,
    )
    lengths = [int(r.input_ids.shape[0]) for r in records]
    weight_of = _loss_weights(records, config)
    for step in range(start, total):
        batch = global_batch(lengths, config, step)
        metrics = _train_step(
            accelerator, objective, optimizer, scheduler, records, config, step, batch,
            weight_of(batch),
        )  # fmt: skip
        bar.update(1)
        bar.set_postfix(loss=f"{metrics['loss']:.4f}", top1=f"{metrics['top1_0']:.3f}")
        if step % config.log_every == 0 or step + 1 == total:
            history.append({"step": step + 1, **metrics})
            _append_log(accelerator, out_dir, history[-1])
        done = step + 1
        if config.checkpoint_every and (done % config.checkpoint_every == 0 or done == total):
            _save_checkpoint(accelerator, out_dir, done, config.keep_checkpoints)
        if on_step is not None:
            on_step(done, metrics)
    bar.close()
    return TrainResult(total, history)


def _loss_weights(records: list[RecordFeatures], config: DrafterTrainConfig):
    """batch (record indices) -> the factor on its row-mean loss.

    Length-grouped batches differ widely in supervised rows; weighting each batch by its rows
    over the data's mean keeps every row's weight what it is in a random batch (else the few
    long-answer batches count as much as the many short ones). Ungrouped: 1.
    """
    if not config.length_grouped:
        return lambda batch: 1.0
    supervised = [int(r.loss_mask.sum()) for r in records]
    mean_supervised = max(1.0, sum(supervised) / len(records))
    return lambda batch: sum(supervised[i] for i in batch) / (mean_supervised * len(batch))


def default_precision() -> dict:
    """bf16 mixed precision on a GPU that supports it, fp32 on the CPU (where bf16 gives no
    speed-up without AMX and costs accuracy)."""
    if torch.cuda.is_available():
        return {"mixed_precision": "bf16" if torch.cuda.is_bf16_supported() else "no"}
    return {"cpu": True, "mixed_precision": "no"}


def _train_step(
    accelerator, objective, optimizer, scheduler, records, config, step, batch, weight=1.0
):
    """One optimizer step on the global batch ``batch`` (record indices), its loss scaled by
    ``weight``; returns its metrics (the loss unscaled)."""
    rank, world = accelerator.process_index, accelerator.num_processes
    indices = batch[rank::world]
    if not indices:
        raise ValueError(f"a batch of {len(batch)} records leaves process {rank} no record")
    seeds = [(config.seed * 1_000_003 + step) * 100_003 + i for i in indices]
    batch = collate([records[i] for i in indices], seeds)
    batch = type(batch)(**{k: v.to(accelerator.device) for k, v in vars(batch).items()})
    objective.train()
    loss, metrics = objective(batch)
    accelerator.backward(loss * weight)
    accelerator.clip_grad_norm_(objective.parameters(), config.grad_clip)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad()
    reduced = {"loss": loss.detach(), **metrics}
    reduced = {
        k: float(accelerator.reduce(v.float(), reduction="mean")) for k, v in reduced.items()
    }
    reduced["lr"] = scheduler.get_last_lr()[0]
    return reduced


def _checkpoints(out_dir: Path) -> list[Path]:
    root = out_dir / "checkpoints"
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.name.startswith("step_") and (p / "done").exists()]
    return sorted(found, key=lambda p: int(p.name.split("_")[1]))


def _resume(accelerator, out_dir: Path) -> int:
    found = _checkpoints(out_dir)
    if not found:
        return 0
    accelerator.load_state(str(found[-1]))
    return int(json.loads((found[-1] / "done").read_text())["step"])


def _save_checkpoint(accelerator, out_dir: Path, step: int, keep: int) -> None:
    path = out_dir / "checkpoints" / f"step_{step:07d}"
    accelerator.save_state(str(path))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        # Written last: a checkpoint without it (a crash mid-save) is never resumed from.
        (path / "done").write_text(json.dumps({"step": step}))
        for old in _checkpoints(out_dir)[:-keep]:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()


def _append_log(accelerator, out_dir: Path, entry: dict) -> None:
    if accelerator.is_main_process:
        out_dir.mkdir(parents=True, exist_ok=True)
        with open(out_dir / "log.jsonl", "a") as handle:
            handle.write(json.dumps(entry) + "\n")


def _read_history(out_dir: Path, start: int) -> list[dict]:
    """Logged entries up to ``start`` (a resumed run keeps its log consistent)."""
    path = out_dir / "log.jsonl"
    if not path.exists():
        return []
    entries = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    kept = [e for e in entries if e["step"] <= start]
    path.write_text("".join(json.dumps(e) + "\n" for e in kept))
    return kept


def config_to_json(config: DrafterTrainConfig) -> dict:
    data = asdict(config)
    data["stage"] = config.stage.value
    return data
