"""hivis: lossless speculative decoding for vision-language models (HiViS).

Quick start::

    import hivis
    target = hivis.load_target("path/to/vlm")
    drafter = hivis.HiViSDrafter.load("path/to/drafter", target)
    out = hivis.generate(target, drafter, ["cat.png"], "<image> describe the image")
    print(out.text, out.metrics.acceptance_length)
"""

from hivis.acceptance import NonFiniteLogitsError
from hivis.api import autoregressive, generate
from hivis.drafter import DrafterConfig, DrafterFileError, DrafterMismatchError, HiViSDrafter
from hivis.engine import GenerationConfig, GenerationResult
from hivis.metrics import GenerationMetrics
from hivis.prefix import PrefixCache
from hivis.targets import (
    SUPPORTED_FAMILIES,
    Family,
    UnsupportedFamilyError,
    load_target,
    wrap_target,
)
from hivis.tree import DraftTree, TreeConfig

__all__ = [
    "SUPPORTED_FAMILIES",
    "DraftTree",
    "DrafterConfig",
    "DrafterFileError",
    "DrafterMismatchError",
    "Family",
    "GenerationConfig",
    "GenerationMetrics",
    "GenerationResult",
    "HiViSDrafter",
    "NonFiniteLogitsError",
    "PrefixCache",
    "TreeConfig",
    "UnsupportedFamilyError",
    "autoregressive",
    "generate",
    "load_target",
    "wrap_target",
]
