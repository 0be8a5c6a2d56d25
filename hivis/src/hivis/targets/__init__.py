"""Target adapters: load a Hugging Face VLM directory as a :class:`TargetModel`."""

from __future__ import annotations

from pathlib import Path

from hivis.protocols import TargetModel
from hivis.targets.base import HFTarget, PreparedPrompt, additive_tree_mask
from hivis.targets.families import (
    SUPPORTED_FAMILIES,
    Family,
    UnsupportedFamilyError,
    family_of,
)
from hivis.targets.inputs import (
    prepare_qwen_fallback,
    prepare_smolvlm_fallback,
    prepare_with_processor,
)

__all__ = [
    "SUPPORTED_FAMILIES",
    "Family",
    "HFTarget",
    "PreparedPrompt",
    "TargetModel",
    "UnsupportedFamilyError",
    "additive_tree_mask",
    "load_target",
    "wrap_target",
]

_FALLBACKS = {
    Family.QWEN2_VL: prepare_qwen_fallback,
    Family.QWEN2_5_VL: prepare_qwen_fallback,
    Family.SMOLVLM: prepare_smolvlm_fallback,
}


def load_target(directory: str | Path, dtype=None, lean: bool = True) -> HFTarget:
    """Load ``directory`` with AutoModelForImageTextToText + AutoProcessor as a target.

    The family is checked from ``config.json`` before any weights load. If the processor
    cannot be built (Qwen2-VL, Qwen2.5-VL and SmolVLM processors require torchvision for
    their video half), the tokenizer and image processor are loaded on their own and hivis
    expands image placeholders with the processor's documented rule. ``lean``: see
    :class:`HFTarget`.
    """
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText

    directory = Path(directory)
    if not (directory / "config.json").is_file():
        raise FileNotFoundError(f"{directory} is not a model directory (no config.json)")
    family = family_of(AutoConfig.from_pretrained(directory).model_type)
    model = AutoModelForImageTextToText.from_pretrained(directory, dtype=dtype or torch.float32)
    model.eval()
    return wrap_target(model, _load_processor(directory, family), family, lean)


def _load_processor(directory: Path, family: Family):
    from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer

    try:
        return AutoProcessor.from_pretrained(directory)
    except (ImportError, ValueError, TypeError, AttributeError, OSError) as err:
        if family not in _FALLBACKS:
            raise
        fallback_reason = err
    tokenizer = AutoTokenizer.from_pretrained(directory)
    image_processor = AutoImageProcessor.from_pretrained(directory)
    return _Parts(tokenizer, image_processor, fallback_reason)


class _Parts:
    """Tokenizer + image processor standing in for a processor that cannot be built."""

    def __init__(self, tokenizer, image_processor, reason):
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.reason = reason


def wrap_target(
    model, processor, family: Family | str | None = None, lean: bool = True
) -> HFTarget:
    """Wrap an already loaded model and processor (or tokenizer+image-processor parts);
    ``lean``: see :class:`HFTarget`."""
    family = family_of(model.config.model_type) if family is None else Family(family)
    if isinstance(processor, _Parts):
        preparer, full = _FALLBACKS[family], None
    else:
        preparer, full = prepare_with_processor, processor
    return HFTarget(
        model,
        processor.tokenizer,
        preparer,
        family,
        processor=full,
        image_processor=processor.image_processor,
        lean=lean,
    )
