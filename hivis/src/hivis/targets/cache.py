"""A KV-cache layer that grows in place, so decoding steps do not re-allocate the cache.

Hugging Face's ``DynamicLayer`` concatenates every new key/value onto the old tensor, which
re-allocates and copies the whole cache at each step. :class:`GrowingLayer` keeps a buffer
of spare capacity (doubled when full) and exposes ``keys``/``values`` as views of its first
``length`` rows; hivis's path compaction and cropping operate on those views in place.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import DynamicCache, DynamicLayer

MIN_CAPACITY = 256


class GrowingLayer(DynamicLayer):
    """``DynamicLayer`` semantics over a preallocated buffer [batch, heads, capacity, dim]."""

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        super().lazy_initialization(key_states, value_states)
        self._key_buffer = self._value_buffer = None

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        start = self.get_seq_length()
        end = start + key_states.shape[-2]
        if self._key_buffer is None or end > self._key_buffer.shape[-2]:
            self._grow(key_states, value_states, start, end)
        self._key_buffer[..., start:end, :].copy_(key_states)
        self._value_buffer[..., start:end, :].copy_(value_states)
        self.keys = self._key_buffer[..., :end, :]
        self.values = self._value_buffer[..., :end, :]
        return self.keys, self.values

    def _grow(self, key_states, value_states, start: int, end: int) -> None:
        old = 0 if self._key_buffer is None else self._key_buffer.shape[-2]
        capacity = max(MIN_CAPACITY, 2 * old, end)
        buffers = []
        for states, current in ((key_states, self.keys), (value_states, self.values)):
            shape = (*states.shape[:-2], capacity, states.shape[-1])
            buffer = torch.empty(shape, dtype=states.dtype, device=states.device)
            if start > 0:
                buffer[..., :start, :].copy_(current[..., :start, :])
            buffers.append(buffer)
        self._key_buffer, self._value_buffer = buffers


def growing_cache(num_layers: int) -> DynamicCache:
    """A ``DynamicCache`` whose ``num_layers`` layers are :class:`GrowingLayer`."""
    cache = DynamicCache()
    cache.layers.extend(GrowingLayer() for _ in range(num_layers))
    return cache
