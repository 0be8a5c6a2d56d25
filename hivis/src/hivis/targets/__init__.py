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
    "DTYPES",
    "SUPPORTED_FAMILIES",
    "Family",
    "HFTarget",
    "PreparedPrompt",
    "TargetModel",
    "UnsupportedFamilyError",
    "additive_tree_mask",
    "as_device",
    "as_dtype",
    "load_target",
    "wrap_target",
]

_FALLBACKS = {
    Family.QWEN2_VL: prepare_qwen_fallback,
    Family.QWEN2_5_VL: prepare_qwen_fallback,
    Family.SMOLVLM: prepare_smolvlm_fallback,
}


def load_target(directory: str | Path, dtype=None, lean: bool = True, device=None) -> HFTarget:
    """Load ``directory`` with AutoModelForImageTextToText + AutoProcessor as a target.

    The family and the device are checked before any weights load; weights that cannot be
    read raise ValueError naming the directory. If the processor cannot be built (Qwen2-VL,
    Qwen2.5-VL and SmolVLM processors require torchvision for their video half), the
    tokenizer and image processor are loaded on their own and hivis expands image
    placeholders with the processor's documented rule. dtype: a torch dtype or its name
    (default float32); device: e.g. "cpu", "cuda", "cuda:1" (default cpu). ``lean``: see
    :class:`HFTarget`.
    """
    from transformers import AutoConfig, AutoModelForImageTextToText

    directory = Path(directory)
    if not (directory / "config.json").is_file():
        raise FileNotFoundError(f"{directory} is not a model directory (no config.json)")
    try:
        config = AutoConfig.from_pretrained(directory)
    except (OSError, ValueError) as err:
        raise ValueError(
            f"{directory / 'config.json'} is not a readable model config: {err}"
        ) from None
    family = family_of(config.model_type)
    dtype, device = as_dtype(dtype), as_device(device)
    try:
        model = AutoModelForImageTextToText.from_pretrained(directory, dtype=dtype)
    except Exception as err:  # safetensors' own error type, OSError, size mismatches
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"cannot load the model weights in {directory}: {first}") from None
    model.to(device).eval()
    return wrap_target(model, _load_processor(directory, family), family, lean)


DTYPES = ("float32", "bfloat16", "float16")


def as_dtype(dtype):
    """A torch dtype from a dtype or one of :data:`DTYPES` (None: float32)."""
    import torch

    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}; got {dtype!r}")
    return getattr(torch, dtype)


def as_device(device):
    """A torch device that exists on this machine (None: cpu), or a clear error."""
    import torch

    try:
        device = torch.device("cpu" if device is None else device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(
            f"device {device!r} is not a torch device (cpu, cuda, cuda:1, mps): {err}"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} asked for, but this torch sees no CUDA GPU")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ValueError(f"device {str(device)!r}: only {torch.cuda.device_count()} CUDA GPU(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device 'mps' asked for, but MPS is not available here")
    return device


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
