"""Checkpoints of a target-training run (``RUN/checkpoint.pt``): atomic save, exact resume,
and the model of a checkpoint as a loadable target directory."""

from __future__ import annotations

from pathlib import Path

import torch

from hivis.world.target.config import TargetTrainConfig, TrainState
from hivis.world.target.model import build_target, save_target


def _checkpoint_path(cfg: TargetTrainConfig) -> Path:
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


def model_of_checkpoint(cfg: TargetTrainConfig):
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


def export_checkpoint(
    cfg: TargetTrainConfig, out_dir: Path, dtype: torch.dtype | None = None
) -> Path:
    """Save the model of ``cfg.out_dir/checkpoint.pt`` (e.g. of a run still going) as a
    loadable target directory ``out_dir`` (optionally cast, e.g. to float16)."""
    model, processor, _ = model_of_checkpoint(cfg)
    save_target(model, processor, Path(out_dir), dtype)
    return Path(out_dir)
