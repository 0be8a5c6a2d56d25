"""One optimisation step of the world's target: the losses (answer cross-entropy, auxiliary
heads, look-up), the vision-only and joint steps, the optimizer."""

from __future__ import annotations

from contextlib import nullcontext

import torch
import torch.nn.functional as F

from hivis.world.data.dataset import Split
from hivis.world.target.aux_heads import AuxHead, aux_losses, visual_tokens
from hivis.world.target.batches import make_batch, make_vision_batch
from hivis.world.target.config import TargetTrainConfig, TrainState
from hivis.world.target.lookup import captured_query_key, lookup_loss
from hivis.world.target.packing import IGNORE, PackedBatch, segment_exact_match
from hivis.world.target.schedule import lr_factor, run_progress, world_for_progress


def forward_losses(
    model,
    head: AuxHead,
    batch: PackedBatch,
    aux: dict[str, torch.Tensor],
    facts: bool = False,
    object_counts: bool = False,
):
    """Returns (answer loss, aux loss, logits ``[B, T, vocab]``)."""
    out = batch.forward(model)
    logits = out.logits
    answer = F.cross_entropy(logits.flatten(0, 1), batch.labels.flatten(), ignore_index=IGNORE)
    states = out.image_hidden_states
    if isinstance(states, (list, tuple)):  # transformers >= 5.24: one tensor per image
        states = torch.cat([s.reshape(-1, s.shape[-1]) for s in states])
    visual = states.reshape(batch.input_ids.shape[0], -1, states.shape[-1])
    return answer, aux_losses(head(visual), aux, facts, object_counts), logits


def forward_precision(cfg: TargetTrainConfig):
    """The context the forward passes of a training step run in: bf16 autocast with
    ``cfg.bf16`` (backward then follows the forward's dtypes), else nothing."""
    return torch.autocast("cpu", dtype=torch.bfloat16) if cfg.bf16 else nullcontext()


def optimizer_for(model, head, cfg: TargetTrainConfig) -> torch.optim.Optimizer:
    params = list(model.parameters()) + list(head.parameters())
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.98))


def _vision_step(model, head, cfg: TargetTrainConfig, state: TrainState, world, processor) -> dict:
    """Forward and backward of the auxiliary loss alone (vision tower, projector, head)."""
    pixels, aux = make_vision_batch(
        Split.TRAIN, state.scenes_seen, cfg.vision_batch_size, cfg.seed, world, processor
    )
    with forward_precision(cfg):
        aux_loss = aux_losses(
            head(visual_tokens(model, pixels)), aux, cfg.fact_targets, cfg.object_count_targets
        )
    aux_loss.backward()
    return {"phase": "vision", "images": cfg.vision_batch_size, "aux_loss": aux_loss.item()}


def _joint_step(model, head, cfg: TargetTrainConfig, state: TrainState, world, progress, processor):
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
        long_form=cfg.long_form,
        long_form_lookup=cfg.long_form_lookup,
    )
    looking = (
        captured_query_key(model, cfg.lookup_layer_index)
        if cfg.lookup_weight > 0
        else nullcontext({})
    )
    with forward_precision(cfg):
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


def train_step(
    model, head, optimizer, cfg: TargetTrainConfig, state: TrainState, processor
) -> dict:
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
