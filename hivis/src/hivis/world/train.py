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
"""

from __future__ import annotations

import json
import math
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from hivis.world.aux_heads import (
    AuxHead,
    aux_head_for,
    aux_labels,
    aux_losses,
    visual_tokens,
)
from hivis.world.dataset import Split, make_sample
from hivis.world.lookup import captured_query_key, lookup_loss, referent_tokens
from hivis.world.model import TargetConfig, build_target, save_target
from hivis.world.packing import IGNORE, PackedBatch, pack_batch, segment_exact_match
from hivis.world.scenes import (
    COLOURS,
    FACT_SLOTS,
    OBJECT_COUNT_LABELS,
    PATCH_LABELS,
    WorldConfig,
    render_scene,
)
from hivis.world.tasks import colour_of, count_colour, count_shape


@dataclass
class TrainState:
    step: int
    cpu_s: float  # process CPU time spent in training, all threads
    wall_s: float
    scenes_seen: int = 0


@dataclass(frozen=True)
class TrainConfig:
    out_dir: Path
    tokenizer_dir: Path
    max_steps: int = 5000
    batch_size: int = 16
    early_batch_size: int = 8
    batch_switch_fraction: float = 0.6
    lr: float = 2e-3
    min_lr_ratio: float = 0.05
    warmup_steps: int = 50
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    aux_weight: float = 1.0
    extra_questions: int = 6
    balanced_extra_questions: bool = True
    curriculum_fraction: float = 0.15
    vision_pretrain_fraction: float = 0.15
    vision_batch_size: int = 32
    freeze_vision_in_joint: bool = False
    fact_targets: bool = False
    object_count_targets: bool = True
    word_tied_heads: bool = False
    lookup_weight: float = 1.0
    lookup_layer: int | None = None  # None: the middle of the text model (text_layers // 2 - 1)
    lookup_head: int = 0
    count_all_on_class_token: bool = True
    curriculum_max_objects: int = 3
    checkpoint_every: int = 50
    log_every: int = 10
    seed: int = 0
    threads: int = 2
    cpu_budget_core_min: float = 80.0
    wall_budget_min: float | None = 45.0
    target: TargetConfig = field(default_factory=TargetConfig)

    def __post_init__(self) -> None:
        if self.max_steps <= 0 or self.batch_size <= 0 or self.early_batch_size <= 0:
            raise ValueError("max_steps, batch_size and early_batch_size must be > 0")
        if not 0 <= self.warmup_steps < self.max_steps:
            raise ValueError("warmup_steps must be in [0, max_steps)")
        if self.wall_budget_min is not None and self.wall_budget_min <= 0:
            raise ValueError(f"wall_budget_min must be > 0, got {self.wall_budget_min}")
        if not 0 <= self.vision_pretrain_fraction < 1 or self.vision_batch_size <= 0:
            raise ValueError("need 0 <= vision_pretrain_fraction < 1 and vision_batch_size > 0")
        if not 0 <= self.curriculum_fraction <= 1 or self.cpu_budget_core_min <= 0:
            raise ValueError("need 0 <= curriculum_fraction <= 1 and cpu_budget_core_min > 0")
        if not (self.lr > 0 and 0 <= self.min_lr_ratio <= 1 and self.aux_weight >= 0):
            raise ValueError("need lr > 0, 0 <= min_lr_ratio <= 1, aux_weight >= 0")
        if self.lookup_weight < 0:
            raise ValueError(f"lookup_weight must be >= 0, got {self.lookup_weight}")
        if not 0 <= self.lookup_layer_index < self.target.text_layers:
            raise ValueError(
                f"lookup_layer must be in [0, {self.target.text_layers}), got {self.lookup_layer}"
            )
        if self.count_all_on_class_token and not self.target.class_token:
            raise ValueError("count_all_on_class_token needs a target that keeps the class token")
        if not 0 <= self.lookup_head < self.target.text_heads:
            raise ValueError(
                f"lookup_head must be in [0, {self.target.text_heads}), got {self.lookup_head}"
            )
        if not Path(self.tokenizer_dir).is_dir():
            raise FileNotFoundError(
                f"tokenizer directory {self.tokenizer_dir} does not exist "
                f"(create it with `world tokenizer --out DIR`)"
            )

    @property
    def lookup_layer_index(self) -> int:
        """The text layer whose head the look-up loss trains (the middle one by default: the
        layers before it bring the question's words to the answer positions)."""
        if self.lookup_layer is not None:
            return self.lookup_layer
        return max(0, self.target.text_layers // 2 - 1)


def _head_of_run(cfg: TrainConfig, model, tokenizer) -> AuxHead:
    if cfg.word_tied_heads:
        return aux_head_for(cfg.target, model, tokenizer)
    return aux_head_for(cfg.target)


def run_progress(state: TrainState, cfg: TrainConfig) -> float:
    """Fraction in [0, 1] of the run's budget used: max of the step, CPU-time and (if set)
    wall-clock fractions."""
    used = [state.step / cfg.max_steps, state.cpu_s / (60.0 * cfg.cpu_budget_core_min)]
    if cfg.wall_budget_min is not None:
        used.append(state.wall_s / (60.0 * cfg.wall_budget_min))
    return min(1.0, max(used))


REWARM_PROGRESS = 0.03  # linear re-warm-up (in progress) when the text model joins


def lr_factor(step: int, progress: float, cfg: TrainConfig) -> float:
    """Linear warm-up over ``warmup_steps``, then cosine decay to ``min_lr_ratio`` at
    progress 1; after a vision-only phase, a linear re-warm-up over ``REWARM_PROGRESS`` (the
    text model starts from scratch there)."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    cosine = 0.5 * (1 + math.cos(math.pi * progress))
    factor = cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * cosine
    joined = progress - cfg.vision_pretrain_fraction
    if cfg.vision_pretrain_fraction > 0 and joined >= 0:
        factor *= min(1.0, 0.05 + joined / REWARM_PROGRESS)
    return factor


def world_for_progress(progress: float, cfg: TrainConfig) -> WorldConfig:
    """Scenes of at most ``curriculum_max_objects`` objects during the first
    ``curriculum_fraction`` of the joint phase (the vision-only phase sees the full world)."""
    t = cfg.target
    joint = progress - cfg.vision_pretrain_fraction
    if 0 <= joint < cfg.curriculum_fraction:
        return WorldConfig(t.image_size, t.patch_size, 1, cfg.curriculum_max_objects)
    return WorldConfig(t.image_size, t.patch_size)


EXTRA_QUESTION_MAKERS = (count_colour, count_shape, colour_of)
BALANCEABLE = (count_colour, count_shape)


def _with_extra_questions(
    sample, extra: int, seed: int, index: int, balanced: bool = False
) -> list:
    """The sample's tasks plus ``extra`` more questions of the kinds that need a
    question-conditioned look at the image (the hardest skill): counting by colour, by shape,
    the colour of a named object, in turn (a colour question the scene does not allow is
    skipped). An extra question costs ~20 tokens against the ~260 of the shared image prefix.
    With ``balanced`` the counting questions ask about a colour / shape whose count is drawn
    uniformly from the scene's distinct counts (``tasks._pick_balanced``): in natural questions
    "one" is the answer to 64 % of colour counts, a prior a model can lean on instead of
    looking."""
    rng = np.random.default_rng([seed, 99, index])
    makers = [EXTRA_QUESTION_MAKERS[k % 3] for k in range(extra)]
    made = [
        maker(sample.scene, rng, balanced=True)
        if balanced and maker in BALANCEABLE
        else maker(sample.scene, rng)
        for maker in makers
    ]
    return list(sample.tasks) + [task for task in made if task is not None]


def make_batch(
    split: Split,
    start: int,
    count: int,
    seed: int,
    world: WorldConfig,
    processor,
    num_visual: int,
    extra_questions: int = 0,
    balanced_extra: bool = False,
    lookup: bool = False,
    count_all_on_class_token: bool = False,
) -> tuple[PackedBatch, dict[str, torch.Tensor]]:
    """Packed batch of scenes [start, start + count) of ``split`` and their patch labels
    (each ``[count, num_visual]``; ``"counts"``: ``[count, len(COUNT_KEYS)]``); with
    ``lookup`` the batch carries ``lookup_keys`` (the visual tokens of each question's
    referents, ``hivis.world.lookup``; ``count_all_on_class_token``: "how many objects?" looks
    at the class token)."""
    samples = [make_sample(seed, split, i, world) for i in range(start, start + count)]
    items = [
        (
            render_scene(s.scene),
            _with_extra_questions(s, extra_questions, seed, start + i, balanced_extra),
        )
        for i, s in enumerate(samples)
    ]
    referents = None
    if lookup:
        class_token = num_visual > world.grid**2
        referents = [
            referent_tokens(s.scene, tasks, world.patch_size, class_token, count_all_on_class_token)
            for s, (_, tasks) in zip(samples, items, strict=True)
        ]
    batch = pack_batch(items, processor, num_visual, referents)
    return batch, aux_labels(samples, world.patch_size)


def make_vision_batch(
    split: Split, start: int, count: int, seed: int, world: WorldConfig, processor
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Pixel values ``[count, 3, H, W]`` of scenes [start, start + count) and their patch
    labels, as in ``make_batch`` (no text)."""
    samples = [make_sample(seed, split, i, world) for i in range(start, start + count)]
    images = [render_scene(s.scene) for s in samples]
    pixels = processor.image_processor(images, return_tensors="pt")["pixel_values"]
    return pixels, aux_labels(samples, world.patch_size)


def forward_losses(
    model,
    head: AuxHead,
    batch: PackedBatch,
    aux: dict[str, torch.Tensor],
    facts: bool = False,
    object_counts: bool = False,
):
    """Returns (answer loss, aux loss, logits ``[B, T, vocab]``)."""
    out = model(**batch.model_inputs())
    logits = out.logits
    answer = F.cross_entropy(logits.flatten(0, 1), batch.labels.flatten(), ignore_index=IGNORE)
    states = out.image_hidden_states
    if isinstance(states, (list, tuple)):  # transformers >= 5.24: one tensor per image
        states = torch.cat([s.reshape(-1, s.shape[-1]) for s in states])
    visual = states.reshape(batch.input_ids.shape[0], -1, states.shape[-1])
    return answer, aux_losses(head(visual), aux, facts, object_counts), logits


def _checkpoint_path(cfg: TrainConfig) -> Path:
    return Path(cfg.out_dir) / "checkpoint.pt"


def save_checkpoint(cfg, model, head, optimizer, state: TrainState) -> None:
    """Atomic write of everything needed to resume exactly (data position = step)."""
    path = _checkpoint_path(cfg)
    tmp = path.with_suffix(".pt.tmp")
    torch.save(
        {
            "model": model.state_dict(),
            "head": head.state_dict(),
            "optimizer": optimizer.state_dict(),
            "step": state.step,
            "cpu_s": state.cpu_s,
            "wall_s": state.wall_s,
            "scenes_seen": state.scenes_seen,
            "torch_rng": torch.get_rng_state(),
        },
        tmp,
    )
    tmp.replace(path)


def load_checkpoint(cfg, model, head, optimizer) -> TrainState:
    path = _checkpoint_path(cfg)
    if not path.exists():
        return TrainState(0, 0.0, 0.0)
    ckpt = torch.load(path, weights_only=False)
    model.load_state_dict(ckpt["model"])
    head.load_state_dict(ckpt["head"])
    optimizer.load_state_dict(ckpt["optimizer"])
    torch.set_rng_state(ckpt["torch_rng"])
    return TrainState(ckpt["step"], ckpt["cpu_s"], ckpt["wall_s"], ckpt["scenes_seen"])


def _model_of_checkpoint(cfg: TrainConfig):
    """(model in eval mode, processor, checkpoint dict) of ``cfg.out_dir/checkpoint.pt``."""
    from transformers import AutoTokenizer

    if not _checkpoint_path(cfg).exists():
        raise FileNotFoundError(f"no checkpoint at {_checkpoint_path(cfg)}")
    model, processor = build_target(
        cfg.target, AutoTokenizer.from_pretrained(cfg.tokenizer_dir), cfg.seed
    )
    ckpt = torch.load(_checkpoint_path(cfg), weights_only=False)
    model.load_state_dict(ckpt["model"])
    return model.eval(), processor, ckpt


def export_checkpoint(cfg: TrainConfig, out_dir: Path, dtype: torch.dtype | None = None) -> Path:
    """Save the model of ``cfg.out_dir/checkpoint.pt`` (e.g. of a run still going) as a
    loadable target directory ``out_dir`` (optionally cast, e.g. to float16)."""
    model, processor, _ = _model_of_checkpoint(cfg)
    save_target(model, processor, Path(out_dir), dtype)
    return Path(out_dir)


@torch.no_grad()
def evaluate_aux_heads(cfg: TrainConfig, scenes: int = 256) -> dict:
    """What the vision tower of ``cfg.out_dir/checkpoint.pt`` has learnt, read through the
    run's auxiliary heads on ``scenes`` validation scenes: the step, the fraction of right
    scene counts (``counts_all``, mean over colours ``counts_colour`` and over shapes
    ``counts_shape``), per object patch the fraction of right labels (``patch_*``: colour,
    shape, size, region, and the objects-sharing-its-colour/shape counts when the run trained
    them), and when the run trained facts the fraction right per kind over the slots that name
    one object (``fact_*``)."""
    model, processor, ckpt = _model_of_checkpoint(cfg)
    head = _head_of_run(cfg, model, processor.tokenizer)
    # Runs made before some heads existed lack their weights; only trained heads are reported.
    head.load_state_dict(ckpt["head"], strict=False)
    world = WorldConfig(cfg.target.image_size, cfg.target.patch_size)
    pixels, aux = make_vision_batch(Split.VALIDATION, 0, scenes, cfg.seed, world, processor)
    preds = head(visual_tokens(model, pixels))
    right = (preds["counts"].argmax(-1) == aux["counts"]).float().mean(0)  # [len(COUNT_KEYS)]
    colours = slice(1, 1 + len(COLOURS))  # COUNT_KEYS: all, each colour, each shape
    report = {
        "step": ckpt["step"],
        "scenes": scenes,
        "counts_all": right[0].item(),
        "counts_colour": right[colours].mean().item(),
        "counts_shape": right[colours.stop :].mean().item(),
    }
    occupied = aux["colour"] > 0
    for key in (*PATCH_LABELS, *(OBJECT_COUNT_LABELS if cfg.object_count_targets else ())):
        hits = preds[key].argmax(-1)[occupied] == aux[key][occupied]
        report[f"patch_{key}"] = hits.float().mean().item()
    for key in FACT_SLOTS if cfg.fact_targets else ():  # over the slots that name one object
        named = aux[key] > 0
        report[f"fact_{key}"] = (
            (preds[key].argmax(-1)[named] == aux[key][named]).float().mean().item()
        )
    return report


def _optimizer(model, head, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = list(model.parameters()) + list(head.parameters())
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.98))


def _vision_step(model, head, cfg: TrainConfig, state: TrainState, world, processor) -> dict:
    """Forward and backward of the auxiliary loss alone (vision tower, projector, head)."""
    pixels, aux = make_vision_batch(
        Split.TRAIN, state.scenes_seen, cfg.vision_batch_size, cfg.seed, world, processor
    )
    aux_loss = aux_losses(
        head(visual_tokens(model, pixels)), aux, cfg.fact_targets, cfg.object_count_targets
    )
    aux_loss.backward()
    return {"phase": "vision", "images": cfg.vision_batch_size, "aux_loss": aux_loss.item()}


def _joint_step(model, head, cfg: TrainConfig, state: TrainState, world, progress, processor):
    """Forward and backward of answer loss + ``aux_weight`` x auxiliary loss."""
    batch_size = cfg.early_batch_size if progress < cfg.batch_switch_fraction else cfg.batch_size
    batch, aux = make_batch(
        Split.TRAIN,
        state.scenes_seen,
        batch_size,
        cfg.seed,
        world,
        processor,
        cfg.target.num_visual_tokens,
        cfg.extra_questions,
        cfg.balanced_extra_questions,
        lookup=cfg.lookup_weight > 0,
        count_all_on_class_token=cfg.count_all_on_class_token,
    )
    looking = (
        captured_query_key(model, cfg.lookup_layer_index)
        if cfg.lookup_weight > 0
        else nullcontext({})
    )
    with looking as captured:
        answer, aux_loss, logits = forward_losses(
            model, head, batch, aux, cfg.fact_targets, cfg.object_count_targets
        )
    look = torch.zeros(())
    if batch.lookup_keys is not None:
        look = lookup_loss(
            model,
            captured,
            batch.position_ids,
            batch.attention_mask,
            batch.lookup_keys,
            cfg.lookup_head,
        )
    (answer + cfg.aux_weight * aux_loss + cfg.lookup_weight * look).backward()
    with torch.no_grad():
        exact = segment_exact_match(logits.detach(), batch)
    by_task = {}
    for task_type in set(batch.segment_tasks):
        chosen = torch.tensor([t is task_type for t in batch.segment_tasks])
        by_task[task_type.value] = round(exact[chosen].float().mean().item(), 3)
    return {
        "phase": "joint",
        "images": batch_size,
        "loss": answer.item(),
        "aux_loss": aux_loss.item(),
        "lookup_loss": look.item(),
        "train_exact": exact.float().mean().item(),
        "train_exact_by_task": by_task,
        "tokens": int(batch.input_ids.numel()),
    }


def train_step(model, head, optimizer, cfg: TrainConfig, state: TrainState, processor) -> dict:
    """One optimisation step on the next scenes (vision-only while progress <
    ``vision_pretrain_fraction``, else joint); returns the logged quantities."""
    progress = run_progress(state, cfg)
    for group in optimizer.param_groups:
        group["lr"] = cfg.lr * lr_factor(state.step, progress, cfg)
    world = world_for_progress(progress, cfg)
    optimizer.zero_grad(set_to_none=True)
    joint = progress >= cfg.vision_pretrain_fraction
    model.model.vision_tower.requires_grad_(not (joint and cfg.freeze_vision_in_joint))
    if not joint:
        record = _vision_step(model, head, cfg, state, world, processor)
    else:
        record = _joint_step(model, head, cfg, state, world, progress, processor)
    grad_norm = torch.nn.utils.clip_grad_norm_(
        list(model.parameters()) + list(head.parameters()), cfg.grad_clip
    )
    return {
        "step": state.step,
        "progress": round(progress, 4),
        "max_objects": world.max_objects,
        **record,
        "grad_norm": float(grad_norm),
        "lr": optimizer.param_groups[0]["lr"],
    }


def _log(path: Path, record: dict) -> None:
    with path.open("a") as fh:
        fh.write(json.dumps(record) + "\n")


def train_target(cfg: TrainConfig, stop_at_step: int | None = None) -> Path:
    """Train (or resume from ``out_dir/checkpoint.pt``) the target; returns the directory of the
    saved float32 target. ``stop_at_step`` interrupts the run there (checkpoint written), as a
    crash would, without ending its schedule."""
    from transformers import AutoTokenizer

    torch.set_num_threads(cfg.threads)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_config.json").write_text(json.dumps(asdict(cfg), default=str, indent=1))
    tokenizer = AutoTokenizer.from_pretrained(cfg.tokenizer_dir)
    model, processor = build_target(cfg.target, tokenizer, cfg.seed)
    head = _head_of_run(cfg, model, tokenizer)
    optimizer = _optimizer(model, head, cfg)
    state = load_checkpoint(cfg, model, head, optimizer)
    model.train()
    wall0, cpu0 = time.perf_counter() - state.wall_s, time.process_time() - state.cpu_s
    bar = tqdm(total=cfg.max_steps, initial=state.step, desc="train-target", dynamic_ncols=True)
    while state.step < cfg.max_steps:
        record = train_step(model, head, optimizer, cfg, state, processor)
        optimizer.step()
        state.step += 1
        state.scenes_seen += record["images"]
        state.wall_s = time.perf_counter() - wall0
        state.cpu_s = time.process_time() - cpu0
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
        if state.step % cfg.checkpoint_every == 0:
            save_checkpoint(cfg, model, head, optimizer, state)
        if state.step == stop_at_step:
            break
        if run_progress(state, cfg) >= 1.0:
            _log(out / "log.jsonl", {"stopped": "budget", "step": state.step})
            break
    bar.close()
    save_checkpoint(cfg, model, head, optimizer, state)
    model.eval()
    save_target(model, processor, out / "target")
    return out / "target"
