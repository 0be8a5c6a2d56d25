"""KV caches: the one place where hivis creates, crops, compacts and copies them.

Every cache hivis owns is a Hugging Face ``DynamicCache`` whose layers are
:class:`GrowingLayer`: ``DynamicLayer`` concatenates every new key/value onto the old tensor,
which re-allocates and copies the whole cache at each step; a :class:`GrowingLayer` keeps a
buffer of spare capacity (doubled when full) and exposes ``keys``/``values`` as views of its
first ``length`` rows, so that cropping (:func:`crop`) and path compaction
(:func:`keep_rows`) work on those views in place. Keys and values are
``[batch, kv_heads, length, head_dim]`` per layer. A target's cache is a
:class:`StackedCache`: the same, with every layer's keys and values views of one buffer, so
that compacting the accepted path moves the rows of all layers in one gather and one copy
(instead of two per layer and tensor: measured in ``benchmarks/step_costs.py``).

Users: the target adapter (:func:`full_attention_cache`, :func:`keep_rows` after a tree
pass), the drafter (:func:`crop` drops its tree rows after drafting), the prefix cache
(:func:`copy_rows`, :func:`fill`) and the step-cost benchmark (:func:`crop`).
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


class StackedCache(DynamicCache):
    """A cache of ``num_layers`` full-attention layers (:class:`StackedLayer`) whose keys and
    values are views of one buffer ``[layers, 2, batch, kv_heads, capacity, head_dim]`` (spare
    capacity, doubled when full). Every layer must have one shape (checked on update)."""

    def __init__(self, num_layers: int):
        super().__init__()
        self.buffer: torch.Tensor | None = None
        self.layers.extend(StackedLayer(self, i) for i in range(num_layers))

    def reserve(self, states: torch.Tensor, end: int) -> None:
        """Grow the buffer to hold ``end`` rows per layer (contents kept, every layer's views
        moved); states [batch, kv_heads, n, head_dim] are rows about to be written."""
        old = self.buffer
        capacity = max(MIN_CAPACITY, 2 * (0 if old is None else old.shape[-2]), end)
        self.buffer = states.new_empty(
            (len(self.layers), 2, *states.shape[:-2], capacity, states.shape[-1])
        )
        if old is not None:
            self.buffer[..., : old.shape[-2], :].copy_(old)
        for layer in self.layers:
            layer.attach(self.buffer)

    def keep(self, prefix_len: int, rows: torch.Tensor) -> None:
        """Every layer keeps rows ``rows`` [m] (in order) after its first ``prefix_len``."""
        m = int(rows.shape[0])
        self.buffer[..., prefix_len : prefix_len + m, :] = self.buffer[..., rows, :]
        for layer in self.layers:
            layer.cut(prefix_len + m)


class StackedLayer(DynamicLayer):
    """``DynamicLayer`` semantics on layer ``index`` of a :class:`StackedCache`'s buffer
    (``key_rows`` / ``value_rows``: its full-capacity views [batch, kv_heads, capacity, dim])."""

    def __init__(self, owner: StackedCache, index: int):
        super().__init__()
        self.owner, self.index = owner, index
        self.key_rows = self.value_rows = None

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
            rows = self.key_rows
            if rows is not None and (rows.shape[:2], rows.shape[-1]) != (
                key_states.shape[:2],
                key_states.shape[-1],
            ):
                raise ValueError(
                    f"a StackedCache needs layers of one shape; got keys "
                    f"{tuple(key_states.shape)} for rows {tuple(rows.shape)}"
                )
        start = self.get_seq_length()
        end = start + key_states.shape[-2]
        if self.key_rows is None or end > self.key_rows.shape[-2]:
            self.owner.reserve(key_states, end)
        self.key_rows[..., start:end, :].copy_(key_states)
        self.value_rows[..., start:end, :].copy_(value_states)
        self.cut(end)
        return self.keys, self.values

    def attach(self, buffer: torch.Tensor) -> None:
        """Point this layer at ``buffer`` (a new one: its rows were copied there)."""
        length = self.get_seq_length()
        self.key_rows, self.value_rows = buffer[self.index, 0], buffer[self.index, 1]
        if self.is_initialized:
            self.cut(length)

    def cut(self, length: int) -> None:
        """Keys and values: views of this layer's first ``length`` rows."""
        self.keys = self.key_rows[..., :length, :]
        self.values = self.value_rows[..., :length, :]


def growing_cache(num_layers: int) -> DynamicCache:
    """A ``DynamicCache`` whose ``num_layers`` layers are :class:`GrowingLayer`."""
    cache = DynamicCache()
    cache.layers.extend(GrowingLayer() for _ in range(num_layers))
    return cache


def full_attention_cache(model_config) -> StackedCache:
    """An empty :class:`StackedCache` laid out as ``model_config`` asks; refuses a model
    whose cache needs sliding-window or other non-full-attention layers."""
    layout = DynamicCache(config=model_config)
    if any(type(layer) is not DynamicLayer for layer in layout.layers):
        raise ValueError(
            "hivis supports full-attention caches only; this model's config asks for "
            "sliding-window or other cache layers"
        )
    return StackedCache(len(layout.layers))


def crop(cache: DynamicCache, length: int) -> None:
    """Cut every layer of ``cache`` back to its first ``length`` rows (views, no copy)."""
    for layer in cache.layers:
        layer.keys = layer.keys[:, :, :length]
        layer.values = layer.values[:, :, :length]


def keep_rows(cache: DynamicCache, prefix_len: int, kept: torch.Tensor) -> None:
    """Keep rows ``prefix_len + kept`` (in order) after the first ``prefix_len`` rows.

    kept: [m] long row offsets (e.g. the accepted tree nodes, root first). Rows are compacted
    in place and the cache is cut to ``prefix_len + m``; nothing is re-allocated.
    """
    m = int(kept.shape[0])
    if cache.get_seq_length() == prefix_len + m:
        return  # every row is kept (e.g. a lone root): nothing moves
    rows = kept + prefix_len
    if isinstance(cache, StackedCache):
        cache.keep(prefix_len, rows)
        return
    for layer in cache.layers:
        for name in ("keys", "values"):
            full = getattr(layer, name)
            full[:, :, prefix_len : prefix_len + m] = full[:, :, rows]
            setattr(layer, name, full[:, :, : prefix_len + m])


def copy_rows(cache: DynamicCache) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Copies of every layer's keys and values (later updates of ``cache`` leave them be)."""
    keys = [layer.keys.clone() for layer in cache.layers]
    values = [layer.values.clone() for layer in cache.layers]
    return keys, values


def fill(
    cache: DynamicCache, keys: list[torch.Tensor], values: list[torch.Tensor], length: int
) -> None:
    """Append the first ``length`` rows of per-layer ``keys`` / ``values`` to ``cache``
    (copied into its buffers: later updates of ``cache`` leave the sources be)."""
    for layer, k, v in zip(cache.layers, keys, values, strict=True):
        layer.update(k[:, :, :length], v[:, :, :length])
