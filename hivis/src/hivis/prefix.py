"""Prefix caching: reuse the target's prefill of an image across questions about it.

A VLM prompt is mostly its image: 257 of the ~271 tokens of a world question, thousands in a
real VLM. When several questions are asked about one image (a chat, a batch of questions, an
evaluation), every prompt starts with the same tokens and the same image, and the target's
keys, values and last-layer hidden states over that shared prefix are the same. A
:class:`PrefixCache` keeps them from one generation to the next: the next prompt whose images
are equal (the processed tensors compared exactly) and whose first ``P`` token ids are equal
prefills only its remaining tokens on top of a copy of those ``P`` rows. Positions are the
prompt's own (M-RoPE included), so the computation is the same attention over the same keys;
only the split of the matrix products differs (float rounding, not semantics).

Both ``hivis.generate`` and ``hivis.autoregressive`` take ``prefix_cache=``, so a speculative
run and its autoregressive reference can share the same saving. The cache holds one prompt,
the last one whose images differed from what it held (consecutive questions about one image
all reuse the first one's prefix). It is not thread-safe; use one per conversation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hivis.kv_cache import copy_rows, fill
from hivis.protocols import TargetModel
from hivis.targets.base import PreparedPrompt


@dataclass
class _Snapshot:
    """input_ids ``[1, L]``; keys / values per layer ``[1, kv_heads, L, head_dim]``; hidden
    ``[1, L, H]`` target last-layer states; vision_inputs: the prompt's image tensors."""

    input_ids: torch.Tensor
    vision_inputs: dict
    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    hidden: torch.Tensor


def _same_images(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    for key, value in a.items():
        other = b[key]
        if isinstance(value, torch.Tensor):
            if not isinstance(other, torch.Tensor) or value.shape != other.shape:
                return False
            if not torch.equal(value, other):
                return False
        elif value != other:
            return False
    return True


def _common_length(a: torch.Tensor, b: torch.Tensor) -> int:
    """Number of leading positions where ``[1, L]`` id tensors agree."""
    n = min(a.shape[1], b.shape[1])
    differ = (a[0, :n] != b[0, :n].to(a.device)).nonzero()
    return n if differ.numel() == 0 else int(differ[0, 0])


class PrefixCache:
    """The target's prefill of the last new image, reused by the next prompts (module
    docstring). ``hits`` / ``misses`` count the generations that reused a prefix or not;
    ``reused_tokens`` the prefix tokens they did not recompute."""

    def __init__(self) -> None:
        self._snapshot: _Snapshot | None = None
        self.hits = 0
        self.misses = 0
        self.reused_tokens = 0

    def clear(self) -> None:
        self._snapshot = None

    def reusable_length(self, prompt: PreparedPrompt) -> int:
        """How many leading tokens of ``prompt`` can be taken from the cache (0 = none). At
        least one token is always left to compute: it gives the next-token logits."""
        snap = self._snapshot
        if snap is None or not _same_images(snap.vision_inputs, prompt.vision_inputs):
            return 0
        common = _common_length(prompt.input_ids, snap.input_ids)
        reused = min(common, prompt.length - 1)
        visual = prompt.visual_mask.nonzero()
        if visual.numel() and reused <= int(visual[-1, 0]):
            return 0  # the prompts part inside the image: nothing worth reusing
        return reused

    def restore(self, length: int, cache) -> torch.Tensor:
        """Fill the empty ``cache`` with the first ``length`` cached rows of every layer
        (copied: later generations must not change the snapshot); returns their hidden
        states ``[1, length, H]``."""
        snap = self._snapshot
        fill(cache, snap.keys, snap.values, length)
        self.hits += 1
        self.reused_tokens += length
        return snap.hidden[:, :length]

    def store(self, prompt: PreparedPrompt, cache, hidden: torch.Tensor) -> None:
        """Keep a copy of the prefill just made: ``cache`` holds exactly the prompt's rows,
        hidden ``[1, L, H]``."""
        self.misses += 1
        keys, values = copy_rows(cache)
        self._snapshot = _Snapshot(
            prompt.input_ids.clone(), dict(prompt.vision_inputs), keys, values, hidden.clone()
        )


def prefill_with_cache(
    target: TargetModel, prompt: PreparedPrompt, cache, prefix_cache: PrefixCache | None
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The target's prefill of ``prompt`` into the empty ``cache``, reusing ``prefix_cache``
    when it can (and refilling it when the images changed). Returns (logits ``[1, V]`` for the
    next token, hidden ``[1, L, H]`` over the whole prompt, reused prefix length)."""
    reused = 0 if prefix_cache is None else prefix_cache.reusable_length(prompt)
    if reused == 0:
        logits, hidden = target.prefill(prompt, cache)
        if prefix_cache is not None:
            prefix_cache.store(prompt, cache, hidden)
        return logits, hidden, 0
    cached_hidden = prefix_cache.restore(reused, cache)
    logits, rest = target.prefill_from(prompt, reused, cache)
    return logits, torch.cat([cached_hidden, rest], dim=1), reused
