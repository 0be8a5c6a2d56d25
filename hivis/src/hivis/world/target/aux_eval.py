"""``hivis world eval-aux``: what a run's vision tower has learnt, read through its
auxiliary heads."""

from __future__ import annotations

import torch

from hivis.world.data.dataset import Split
from hivis.world.data.scenes import (
    COLOURS,
    FACT_SLOTS,
    OBJECT_COUNT_LABELS,
    PATCH_LABELS,
    WorldConfig,
)
from hivis.world.target.aux_heads import head_of_run, visual_tokens
from hivis.world.target.batches import make_vision_batch
from hivis.world.target.checkpoint import model_of_checkpoint
from hivis.world.target.config import TargetTrainConfig


@torch.no_grad()
def evaluate_aux_heads(cfg: TargetTrainConfig, scenes: int = 256) -> dict:
    """What the vision tower of ``cfg.out_dir/checkpoint.pt`` has learnt, read through the
    run's auxiliary heads on ``scenes`` validation scenes: the step, the fraction of right
    scene counts (``counts_all``, mean over colours ``counts_colour`` and over shapes
    ``counts_shape``), per object patch the fraction of right labels (``patch_*``: colour,
    shape, size, region, and the objects-sharing-its-colour/shape counts when the run trained
    them), and when the run trained facts the fraction right per kind over the slots that name
    one object (``fact_*``)."""
    model, processor, ckpt = model_of_checkpoint(cfg)
    head = head_of_run(cfg, model, processor.tokenizer)
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
