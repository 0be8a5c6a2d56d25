"""The world's target VLM: a tiny LlavaForConditionalGeneration (CLIP vision tower + Llama).

``build_target`` creates it from a ``TargetConfig`` with fresh weights (2-D sin-cos vision
position embeddings) together with its ``LlavaProcessor``; ``save_target`` writes both with
``save_pretrained`` so that ``AutoModelForImageTextToText.from_pretrained(dir)`` and
``AutoProcessor.from_pretrained(dir)`` load them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedTokenizerFast,
)
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

from hivis.world.data.tokenizer import CHAT_TEMPLATE


@dataclass(frozen=True)
class TargetConfig:
    """Shape of the tiny target: ``(image_size // patch_size) ** 2`` patch tokens per image,
    plus the vision tower's class token when ``class_token`` (LLaVA's "full" feature selection;
    trained to carry the scene's counts, see ``train``)."""

    image_size: int = 256
    patch_size: int = 16
    class_token: bool = True
    vision_hidden: int = 128
    vision_layers: int = 6
    vision_heads: int = 8
    vision_intermediate: int = 512
    text_hidden: int = 128
    text_layers: int = 8
    text_heads: int = 4
    text_intermediate: int = 384
    max_positions: int = 1024

    def __post_init__(self) -> None:
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} must be a multiple of patch_size")
        if self.vision_hidden % self.vision_heads or self.text_hidden % self.text_heads:
            raise ValueError("hidden sizes must be multiples of the number of heads")
        if self.num_visual_tokens + 64 > self.max_positions:
            raise ValueError("max_positions leaves no room for text after the visual tokens")

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @property
    def num_visual_tokens(self) -> int:
        return self.num_patches + int(self.class_token)

    @property
    def feature_strategy(self) -> str:
        """LLaVA's ``vision_feature_select_strategy``: "full" keeps the class token."""
        return "full" if self.class_token else "default"


def llava_config(cfg: TargetConfig, tokenizer: PreTrainedTokenizerFast) -> LlavaConfig:
    vision = CLIPVisionConfig(
        hidden_size=cfg.vision_hidden,
        intermediate_size=cfg.vision_intermediate,
        num_hidden_layers=cfg.vision_layers,
        num_attention_heads=cfg.vision_heads,
        image_size=cfg.image_size,
        patch_size=cfg.patch_size,
        projection_dim=cfg.vision_hidden,
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.text_hidden,
        intermediate_size=cfg.text_intermediate,
        num_hidden_layers=cfg.text_layers,
        num_attention_heads=cfg.text_heads,
        num_key_value_heads=cfg.text_heads,
        max_position_embeddings=cfg.max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=tokenizer.convert_tokens_to_ids(tokenizer.image_token),
        image_seq_length=cfg.num_visual_tokens,
        vision_feature_layer=-1,
        vision_feature_select_strategy=cfg.feature_strategy,
        projector_hidden_act="gelu",
        tie_word_embeddings=False,
    )
    config.bos_token_id = tokenizer.bos_token_id
    config.eos_token_id = tokenizer.eos_token_id
    config.pad_token_id = tokenizer.pad_token_id
    return config


def build_processor(cfg: TargetConfig, tokenizer: PreTrainedTokenizerFast) -> LlavaProcessor:
    """Images are resized to ``image_size`` squared and scaled to [-1, 1]."""
    size = {"height": cfg.image_size, "width": cfg.image_size}
    image_processor = CLIPImageProcessorPil(
        size=size,
        crop_size=size,
        do_center_crop=False,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=cfg.patch_size,
        vision_feature_select_strategy=cfg.feature_strategy,
        num_additional_image_tokens=1,
        chat_template=CHAT_TEMPLATE,
    )


def sincos_2d(grid: int, dim: int) -> torch.Tensor:
    """``[grid * grid, dim]`` 2-D sin-cos embedding: half the channels encode the row, half the
    column, each as sin/cos pairs of geometrically spaced frequencies."""
    if dim % 4:
        raise ValueError(f"dim must be a multiple of 4, got {dim}")
    quarter = dim // 4
    freqs = 1.0 / (100.0 ** (torch.arange(quarter, dtype=torch.float64) / quarter))
    coords = torch.arange(grid, dtype=torch.float64)
    rows, cols = torch.meshgrid(coords, coords, indexing="ij")
    parts = []
    for axis in (rows.reshape(-1), cols.reshape(-1)):
        angles = axis[:, None] * freqs[None, :]
        parts += [torch.sin(angles), torch.cos(angles)]
    return torch.cat(parts, dim=1).float()


def init_vision_positions(model: LlavaForConditionalGeneration, cfg: TargetConfig) -> None:
    """Replace the vision position table by 2-D sin-cos rows (class token row: zeros)."""
    table = model.model.vision_tower.embeddings.position_embedding.weight
    grid = cfg.image_size // cfg.patch_size
    with torch.no_grad():
        table[0].zero_()
        table[1:].copy_(sincos_2d(grid, table.shape[1]) / math.sqrt(2.0))


def build_target(
    cfg: TargetConfig, tokenizer: PreTrainedTokenizerFast, seed: int = 0
) -> tuple[LlavaForConditionalGeneration, LlavaProcessor]:
    """Fresh float32 target and its processor (deterministic in ``seed``)."""
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(llava_config(cfg, tokenizer))
    init_vision_positions(model, cfg)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    return model, build_processor(cfg, tokenizer)


def save_target(
    model: LlavaForConditionalGeneration,
    processor: LlavaProcessor,
    out_dir: Path,
    dtype: torch.dtype | None = None,
) -> None:
    """``save_pretrained`` of model (optionally cast, e.g. to float16) and processor."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if dtype is not None and dtype != next(model.parameters()).dtype:
        # A cast copy: the caller's model object is left untouched.
        clone = LlavaForConditionalGeneration(model.config)
        clone.load_state_dict(model.state_dict())
        clone.generation_config = model.generation_config
        model = clone.to(dtype)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)


def count_parameters(model: torch.nn.Module) -> dict[str, int]:
    parts = {
        "vision": model.model.vision_tower,
        "projector": model.model.multi_modal_projector,
        "text": model.model.language_model,
        "lm_head": model.lm_head,
    }
    counts = {k: sum(p.numel() for p in m.parameters()) for k, m in parts.items()}
    counts["total"] = sum(p.numel() for p in model.parameters())
    return counts
