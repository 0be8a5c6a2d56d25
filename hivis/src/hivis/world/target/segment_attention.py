"""Attention over a packed training row that computes only what the row's mask allows.

A packed row (``hivis.world.target.packing``) is a shared prefix of ``P`` positions (the text
before the image and the visual tokens), then question segments: each segment attends to the
whole prefix and causally to itself. Dense attention under that mask scores all ``T x T``
pairs of the row; only ``P^2 / 2 + sum_i n_i (P + n_i / 2)`` of them are allowed (segment
lengths ``n_i``). In a long-form grow step (T ~ 1040, P = 262) the dense pass scored ~3.4x
more pairs than needed and was half of the step's time (BENCHMARKS.md, session 14).

Here the prefix runs as one causal attention (whose kernel skips the upper blocks), and the
segments run in groups (a long segment alone, a row's short segments together), bucketed by
length, as small batches whose keys are the row's prefix followed by the group itself. The
result equals the dense masked attention up to float summation order; positions after a row's
last segment (padding) get zeros, and nothing reads them.

Used in training and ``eval-target``: ``segment_attention(model)`` switches the text model to
this function for the block, and the forward passes the batch's ``SegmentLayout`` as
``segment_layout=``. Without a layout the function falls back to plain SDPA under the mask.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

NAME = "hivis_segments"
# Groups are bucketed by length at these bounds, so a bucket pads each query to at most
# twice its length while a batch needs only a handful of attention calls per layer.
BUCKET_BOUNDS = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
# Segments up to this length (the short questions and answers, ~25 tokens) share one group per
# row: measured, one group per short question made the base recipe's step slower than dense
# attention, its time going to gathering the 262-position prefix once per question.
SHORT = 48
# The segments attend in float32 even in a bf16-autocast step: on this CPU the flash kernel's
# backward is slower in bf16 than in float32 (185 against 140 ms for a [12, 4, 400, 32] query
# against 662 keys), and attention is the largest part of a grow step (44 % of it, profiled).


@dataclass
class SegmentBucket:
    """Groups of segments (one row's each) of similar total length, padded to ``n`` positions
    (S groups).

    query_index ``[S, n]``: flat index ``b * T + t`` of each group position (padding repeats
    the group's last position); key_index ``[S, P + n]``: the row's prefix, then query_index;
    mask ``[S, 1, n, P + n]`` bool (True = may attend): the prefix, then causal within each
    segment of the group; valid ``[S, n]`` bool: real (not padding) query positions."""

    query_index: torch.Tensor
    key_index: torch.Tensor
    mask: torch.Tensor
    valid: torch.Tensor


@dataclass
class SegmentLayout:
    """Where the prefix and the segments of a packed batch lie (B rows of T positions).

    output_index: flat index ``b * T + t`` of every computed output, in the order the
    attention produces them (each row's prefix, then each bucket's valid query positions)."""

    rows: int
    length: int
    prefix_len: int
    buckets: list[SegmentBucket]
    output_index: torch.Tensor


def segment_layout(
    prefix_len: int, spans: list[list[tuple[int, int]]], length: int
) -> SegmentLayout:
    """The layout of a batch whose row ``b`` has the prefix ``[0, prefix_len)`` and its
    segments at ``spans[b]`` (``[start, end)`` each) within ``length`` positions.

    A long segment is a group of its own; a row's short segments (<= ``SHORT``) form one
    group, so their shared prefix is gathered once, not once per question."""
    if any(not prefix_len <= start < end <= length for row in spans for start, end in row):
        raise ValueError("every segment must lie after the prefix and within the row")
    groups: list[tuple[int, list[tuple[int, int]]]] = []
    for b, row in enumerate(spans):
        short = [span for span in row if span[1] - span[0] <= SHORT]
        groups += [(b, [span]) for span in row if span[1] - span[0] > SHORT]
        groups += [(b, short)] if short else []
    by_bound: dict[int, list] = {}
    for group in groups:
        n = sum(end - start for start, end in group[1])
        by_bound.setdefault(next((b for b in BUCKET_BOUNDS if n <= b), n), []).append(group)
    buckets = [_bucket(prefix_len, length, chosen) for _, chosen in sorted(by_bound.items())]
    prefix = (torch.arange(len(spans))[:, None] * length + torch.arange(prefix_len)).flatten()
    output_index = torch.cat([prefix] + [b.query_index[b.valid] for b in buckets])
    return SegmentLayout(len(spans), length, prefix_len, buckets, output_index)


def _bucket(prefix_len: int, length: int, groups: list) -> SegmentBucket:
    """One bucket of groups ``(row, spans)``: each group's positions in order, padded."""
    positions = [[t for start, end in spans for t in range(start, end)] for _, spans in groups]
    owners = [[i for i, (s, e) in enumerate(spans) for _ in range(s, e)] for _, spans in groups]
    n = max(len(p) for p in positions)
    valid = torch.tensor([[True] * len(p) + [False] * (n - len(p)) for p in positions])
    padded = torch.tensor([p + [p[-1]] * (n - len(p)) for p in positions])
    owner = torch.tensor([o + [-1] * (n - len(o)) for o in owners])
    rows = torch.tensor([b for b, _ in groups])[:, None]
    query_index = rows * length + padded
    key_index = torch.cat([rows * length + torch.arange(prefix_len)[None, :], query_index], 1)
    # key j is allowed for query i: same segment, not later, real
    within = (owner[:, :, None] == owner[:, None, :]) & (padded[:, None, :] <= padded[:, :, None])
    within &= valid[:, None, :]
    prefix = torch.ones(len(groups), n, prefix_len, dtype=torch.bool)
    return SegmentBucket(query_index, key_index, torch.cat([prefix, within], 2)[:, None], valid)


def attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    segment_layout: SegmentLayout | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """Transformers attention function: query ``[B, H, T, d]``, key/value ``[B, Hkv, T, d]``
    -> output ``[B, T, H, d]`` (and no weights)."""
    if segment_layout is None:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout, scaling, **kwargs
        )
    rows, heads, length, dim = query.shape
    layout = segment_layout
    if (rows, length) != (layout.rows, layout.length):
        raise ValueError(
            f"segment layout is for {layout.rows}x{layout.length}, got {rows}x{length}"
        )
    with torch.autocast("cpu", enabled=False):  # float32 even in a bf16 step: see above
        output = _segments(*(x.float() for x in (query, key, value)), layout, dropout, scaling)
    return output.to(query.dtype).reshape(rows, length, heads, dim), None


def _segments(query, key, value, layout: SegmentLayout, dropout: float, scaling) -> torch.Tensor:
    """The prefix's causal attention, then each bucket's: output ``[B * T, H, d]``."""
    rows, heads, length, dim = query.shape
    gqa = key.shape[1] != heads
    p = layout.prefix_len
    prefix = F.scaled_dot_product_attention(
        query[:, :, :p],
        key[:, :, :p],
        value[:, :, :p],
        is_causal=True,
        dropout_p=dropout,
        scale=scaling,
        enable_gqa=gqa,
    )  # [B, H, P, d]
    flat_q, flat_k, flat_v = (
        x.transpose(1, 2).reshape(rows * length, -1, dim) for x in (query, key, value)
    )
    pieces = [prefix.transpose(1, 2).reshape(rows * p, heads, dim)]
    for bucket in layout.buckets:
        out = F.scaled_dot_product_attention(
            _gather(flat_q, bucket.query_index),
            _gather(flat_k, bucket.key_index),
            _gather(flat_v, bucket.key_index),
            attn_mask=bucket.mask,
            dropout_p=dropout,
            scale=scaling,
            enable_gqa=gqa,
        )  # [S, H, n, d]
        pieces.append(out.transpose(1, 2)[bucket.valid])
    return query.new_zeros(rows * length, heads, dim).index_copy(
        0, layout.output_index, torch.cat(pieces)
    )


def _gather(flat: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``flat[index]`` as ``[S, heads, n, d]`` for ``flat`` ``[B * T, heads, d]`` and ``index``
    ``[S, n]``. ``index_select``: its backward adds rows (``index_add_``), where indexing's
    (``index_put_`` with accumulation) cost ~0.3 s of a 4.2 s grow step."""
    picked = flat.index_select(0, index.flatten())
    return picked.view(*index.shape, *flat.shape[1:]).transpose(1, 2)


AttentionInterface.register(NAME, attention)


@contextmanager
def segment_attention(model) -> Iterator[None]:
    """Within the block, ``model``'s text model attends with ``attention`` (the vision tower
    is untouched); the previous implementation is restored on exit."""
    config = model.config.text_config
    previous = config._attn_implementation
    config._attn_implementation = NAME
    try:
        yield
    finally:
        config._attn_implementation = previous
