"""Segment attention (training only) equals dense attention under the packed row's mask."""

import pytest
import torch
from tiny_world import TINY_WORLD_SCENES, TINY_WORLD_TARGET

from hivis.world.data.dataset import Split, make_sample
from hivis.world.data.scenes import render_scene
from hivis.world.target.packing import IGNORE, pack_batch
from hivis.world.target.segment_attention import attention, segment_layout


def _batch(processor, rows=3):
    """Rows with different numbers of questions, so segments and row lengths differ."""
    items = []
    for i in range(rows):
        sample = make_sample(0, Split.TRAIN, i, TINY_WORLD_SCENES)
        items.append((render_scene(sample.scene), list(sample.tasks)[: 2 + i]))
    return pack_batch(items, processor, TINY_WORLD_TARGET.num_visual_tokens)


def test_layout_marks_exactly_the_mask_of_the_packed_row(world_target):
    """Rebuilding a dense [B, T, T] mask from the layout gives the batch's own mask on every
    position that a segment or the prefix holds."""
    batch = _batch(world_target[1])
    layout = batch.segment_layout
    rows, length = batch.input_ids.shape
    rebuilt = torch.zeros(rows * length, rows * length, dtype=torch.bool)
    p = layout.prefix_len
    for b in range(rows):
        base = b * length
        rebuilt[base : base + p, base : base + p] = torch.tril(torch.ones(p, p, dtype=torch.bool))
    for bucket in layout.buckets:
        for s in range(bucket.query_index.shape[0]):
            for i in bucket.valid[s].nonzero()[:, 0]:
                keys = bucket.key_index[s][bucket.mask[s, 0, i]]
                rebuilt[bucket.query_index[s, i], keys] = True
    held = torch.zeros(rows * length, dtype=torch.bool)
    held[torch.cat([b.query_index[b.valid] for b in layout.buckets])] = True
    held.view(rows, length)[:, :p] = True
    dense = torch.block_diag(*batch.attention_mask[:, 0])
    assert torch.equal(rebuilt[held], dense[held])
    # every supervised position is held, and padding is not
    assert held.view(rows, length)[batch.labels != IGNORE].all()
    assert not held.view(rows, length)[
        batch.input_ids == world_target[1].tokenizer.pad_token_id
    ].any()


def test_segment_attention_equals_dense_masked_attention_values_and_gradients():
    torch.manual_seed(0)
    rows, heads, length, dim, p = 2, 3, 100, 8, 6
    # row 0: two short segments (one group) and a long one; row 1: two short segments
    spans = [[(6, 9), (9, 30), (30, 100)], [(6, 20), (20, 23)]]
    layout = segment_layout(p, spans, length)
    assert [tuple(b.query_index.shape) for b in layout.buckets] == [(2, 24), (1, 70)]
    mask = torch.zeros(rows, 1, length, length, dtype=torch.bool)
    for b, row in enumerate(spans):
        mask[b, 0, :p, :p] = torch.tril(torch.ones(p, p, dtype=torch.bool))
        for start, end in row:
            n = end - start
            mask[b, 0, start:end, :p] = True
            mask[b, 0, start:end, start:end] = torch.tril(torch.ones(n, n, dtype=torch.bool))
        mask[b, 0, row[-1][1] :, 0] = True
    q, k, v = (torch.randn(rows, heads, length, dim, requires_grad=True) for _ in range(3))
    module = torch.nn.Module()
    dense, _ = attention(module, q, k, v, mask, scaling=0.3)
    fast, _ = attention(module, q, k, v, None, scaling=0.3, segment_layout=layout)
    held = mask[:, 0].any(-1) & (torch.arange(length) < torch.tensor([100, 23])[:, None])
    torch.testing.assert_close(fast[held], dense[held], atol=1e-6, rtol=1e-5)
    assert torch.equal(fast[~held], torch.zeros_like(fast[~held]))  # row 1's padding
    weights = torch.randn_like(dense) * held[..., None, None]
    grads_dense = torch.autograd.grad((dense * weights).sum(), (q, k, v))
    grads_fast = torch.autograd.grad((fast * weights).sum(), (q, k, v))
    for a, b in zip(grads_fast, grads_dense, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_segment_attention_attends_in_float32_under_bf16_autocast():
    """In a bf16-autocast step the output keeps the query's dtype, but its values are the
    float32 attention of the (bf16) inputs: the bf16 kernel's backward is the slower one."""
    torch.manual_seed(1)
    layout = segment_layout(4, [[(4, 10), (10, 60)]], 60)
    q, k, v = (torch.randn(1, 2, 60, 8).bfloat16().requires_grad_() for _ in range(3))
    module = torch.nn.Module()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = attention(module, q, k, v, None, scaling=0.4, segment_layout=layout)
    exact, _ = attention(
        module, q.float(), k.float(), v.float(), None, scaling=0.4, segment_layout=layout
    )
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out, exact.bfloat16(), atol=0, rtol=0)
    out.float().sum().backward()
    assert q.grad.dtype == torch.bfloat16 and torch.isfinite(q.grad.float()).all()


def test_segment_attention_logits_equal_the_dense_forward(world_target):
    model, processor = world_target
    batch = _batch(processor)
    assert batch.segment_layout is not None
    with torch.no_grad():
        dense = model(**batch.model_inputs()).logits
        fast = batch.forward(model).logits
    supervised = batch.labels != IGNORE
    torch.testing.assert_close(fast[supervised], dense[supervised], atol=1e-5, rtol=1e-5)
    assert model.config.text_config._attn_implementation == "sdpa"  # restored after the block


def test_a_layout_with_a_segment_outside_its_row_is_refused():
    with pytest.raises(ValueError, match="within the row"):
        segment_layout(4, [[(4, 12)]], 10)
    with pytest.raises(ValueError, match="after the prefix"):
        segment_layout(4, [[(2, 6)]], 10)
