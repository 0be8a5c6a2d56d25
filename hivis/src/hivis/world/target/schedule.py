"""What follows the progress of a target-training run: the fraction of its budget used, the
learning rate and the curriculum of scenes."""

from __future__ import annotations

import math

from hivis.world.data.scenes import WorldConfig
from hivis.world.target.config import TargetTrainConfig, TrainState


def run_progress(state: TrainState, cfg: TargetTrainConfig) -> float:
    """Fraction in [0, 1] of the run's budget used: max of the step, CPU-time and (if set)
    wall-clock fractions."""
    used = [state.step / cfg.max_steps, state.cpu_s / (60.0 * cfg.cpu_budget_core_min)]
    if cfg.wall_budget_min is not None:
        used.append(state.wall_s / (60.0 * cfg.wall_budget_min))
    return min(1.0, max(used))


REWARM_PROGRESS = 0.03  # linear re-warm-up (in progress) when the text model joins


def lr_factor(step: int, progress: float, cfg: TargetTrainConfig) -> float:
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


def world_for_progress(progress: float, cfg: TargetTrainConfig) -> WorldConfig:
    """Scenes of at most ``curriculum_max_objects`` objects during the first
    ``curriculum_fraction`` of the joint phase (the vision-only phase sees the full world)."""
    t = cfg.target
    joint = progress - cfg.vision_pretrain_fraction
    if 0 <= joint < cfg.curriculum_fraction:
        return WorldConfig(t.image_size, t.patch_size, 1, cfg.curriculum_max_objects)
    return WorldConfig(t.image_size, t.patch_size)
