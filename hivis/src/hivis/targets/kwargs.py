"""The keyword by which a Hugging Face module takes its KV cache, across transformers versions.

transformers 5.24 renamed the ``past_key_values`` argument of model and layer forwards to
``cache`` (the old name is deprecated, its removal announced for 5.40); 5.23 and earlier only
know ``past_key_values``. hivis passes its own cache object explicitly, so it asks each module
class once which name its forward declares.
"""

from __future__ import annotations

import functools
import inspect

import torch


@functools.cache
def _cache_keyword(module_type: type) -> str:
    # inspect.signature follows the __wrapped__ of transformers' deprecation decorators.
    params = inspect.signature(module_type.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def cache_kwargs(module: torch.nn.Module, cache) -> dict:
    """``{"cache": cache}`` or ``{"past_key_values": cache}``, as ``module.forward`` expects."""
    return {_cache_keyword(type(module)): cache}
