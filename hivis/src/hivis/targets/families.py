"""The VLM families hivis supports, identified by the model's ``config.model_type``."""

from __future__ import annotations

from enum import StrEnum


class Family(StrEnum):
    """A supported target family; the value is the Hugging Face ``model_type``."""

    LLAVA = "llava"
    LLAVA_NEXT = "llava_next"
    QWEN2_VL = "qwen2_vl"
    QWEN2_5_VL = "qwen2_5_vl"
    IDEFICS3 = "idefics3"
    SMOLVLM = "smolvlm"


SUPPORTED_FAMILIES: tuple[str, ...] = tuple(f.value for f in Family)

# Families whose text continuation uses 3-D multimodal RoPE positions.
MROPE_FAMILIES = frozenset({Family.QWEN2_VL, Family.QWEN2_5_VL})


class UnsupportedFamilyError(ValueError):
    """Raised for a model whose ``model_type`` hivis has no adapter for."""


def family_of(model_type: str) -> Family:
    """Map a config ``model_type`` to a :class:`Family`, or raise listing the supported ones."""
    try:
        return Family(model_type)
    except ValueError:
        raise UnsupportedFamilyError(
            f"model_type {model_type!r} is not supported by hivis; supported families: "
            f"{', '.join(SUPPORTED_FAMILIES)}"
        ) from None
