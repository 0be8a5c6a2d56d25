"""hivis.kv_cache: growing layers, cropping, path compaction, copies of a prefill."""

import pytest
import torch
from transformers import LlamaConfig, Qwen2Config

from hivis.kv_cache import copy_rows, crop, fill, full_attention_cache, growing_cache, keep_rows


def _filled(layers: int, length: int, seed: int = 0):
    """A growing cache of ``layers`` layers holding ``length`` random rows; (cache, keys)."""
    cache = growing_cache(layers)
    gen = torch.Generator().manual_seed(seed)
    keys = [torch.randn(1, 2, length, 4, generator=gen) for _ in range(layers)]
    for i, k in enumerate(keys):
        cache.update(k, -k, i)
    return cache, keys


def test_growing_cache_layer_equals_concatenation():
    cache = growing_cache(1)
    gen = torch.Generator().manual_seed(0)
    keys = [torch.randn(1, 2, n, 4, generator=gen) for n in (200, 1, 5, 100, 3)]
    buffers = []
    for k in keys:
        got_k, got_v = cache.update(k, -k, 0)
        buffers.append(cache.layers[0]._key_buffer.data_ptr())
    expected = torch.cat(keys, dim=-2)
    assert torch.equal(got_k, expected) and torch.equal(got_v, -expected)
    assert cache.get_seq_length() == 309
    assert buffers[0] == buffers[1] == buffers[2]  # no re-allocation while capacity lasts
    assert buffers[3] != buffers[2]  # grown once past 256 rows, contents kept


def test_crop_keeps_the_first_rows_as_views():
    cache, keys = _filled(2, 10)
    buffer = cache.layers[0]._key_buffer.data_ptr()
    crop(cache, 6)
    assert cache.get_seq_length() == 6
    for layer, k in zip(cache.layers, keys, strict=True):
        assert torch.equal(layer.keys, k[:, :, :6]) and torch.equal(layer.values, -k[:, :, :6])
    new = torch.ones(1, 2, 3, 4)
    cache.update(new, new, 0)  # writes over the cropped rows, in the same buffer
    assert cache.layers[0]._key_buffer.data_ptr() == buffer
    assert torch.equal(cache.layers[0].keys, torch.cat([keys[0][:, :, :6], new], dim=2))


def test_keep_rows_compacts_the_kept_rows_after_the_prefix():
    cache, keys = _filled(2, 9)
    kept = torch.tensor([0, 2, 3])
    keep_rows(cache, 5, kept)  # rows 5, 7, 8 follow the 5 prefix rows
    rows = torch.tensor([0, 1, 2, 3, 4, 5, 7, 8])
    assert cache.get_seq_length() == 8
    for layer, k in zip(cache.layers, keys, strict=True):
        assert torch.equal(layer.keys, k[:, :, rows]) and torch.equal(layer.values, -k[:, :, rows])


def test_keep_rows_of_every_row_moves_nothing():
    cache, keys = _filled(1, 7)
    keep_rows(cache, 4, torch.tensor([0, 1, 2]))
    assert torch.equal(cache.layers[0].keys, keys[0])


def test_copy_rows_and_fill_restore_a_prefix_that_later_updates_leave_alone():
    cache, keys = _filled(2, 8)
    saved_keys, saved_values = copy_rows(cache)
    crop(cache, 0)
    cache.update(torch.zeros(1, 2, 8, 4), torch.zeros(1, 2, 8, 4), 0)  # overwrite the buffer
    assert torch.equal(saved_keys[0], keys[0]) and torch.equal(saved_values[1], -keys[1])
    again = growing_cache(2)
    fill(again, saved_keys, saved_values, 5)
    assert again.get_seq_length() == 5
    again.update(torch.zeros(1, 2, 1, 4), torch.zeros(1, 2, 1, 4), 1)
    assert torch.equal(again.layers[1].keys[:, :, :5], keys[1][:, :, :5])
    assert torch.equal(saved_keys[1], keys[1])  # the copies are not the cache's storage


def test_full_attention_cache_follows_the_config_and_refuses_sliding_windows():
    cache = full_attention_cache(LlamaConfig(num_hidden_layers=3))
    assert len(cache.layers) == 3 and cache.get_seq_length() == 0
    sliding = Qwen2Config(
        num_hidden_layers=2,
        layer_types=["sliding_attention", "full_attention"],
        sliding_window=8,
        use_sliding_window=True,
    )
    with pytest.raises(ValueError, match="full-attention caches only"):
        full_attention_cache(sliding)


def test_stacked_cache_equals_growing_layers_under_every_operation():
    gen = torch.Generator().manual_seed(3)
    stacked, growing = full_attention_cache(LlamaConfig(num_hidden_layers=3)), growing_cache(3)

    def both(fn):
        fn(stacked)
        fn(growing)
        for a, b in zip(stacked.layers, growing.layers, strict=True):
            assert torch.equal(a.keys, b.keys) and torch.equal(a.values, b.values)

    def append(n):
        rows = [torch.randn(1, 2, n, 4, generator=gen) for _ in range(3)]
        return lambda cache: [cache.update(k, k + 1, i) for i, k in enumerate(rows)]

    both(append(254))  # the prefill
    first = stacked.buffer.data_ptr()
    both(append(5))  # a tree of 5 rows past the first capacity: the buffer grows, rows kept
    assert stacked.buffer.data_ptr() != first and stacked.buffer.shape[-2] == 512
    both(lambda cache: keep_rows(cache, 254, torch.tensor([0, 2, 4])))
    assert stacked.get_seq_length() == 257
    both(append(4))
    both(lambda cache: crop(cache, 255))
    # One buffer behind every layer: a compaction is one gather and one copy.
    storage = stacked.buffer.untyped_storage().data_ptr()
    assert all(layer.keys.untyped_storage().data_ptr() == storage for layer in stacked.layers)


def test_stacked_cache_refuses_layers_of_different_shapes():
    cache = full_attention_cache(LlamaConfig(num_hidden_layers=2))
    cache.update(torch.zeros(1, 2, 3, 4), torch.zeros(1, 2, 3, 4), 0)
    with pytest.raises(ValueError, match="one shape"):
        cache.update(torch.zeros(1, 3, 3, 4), torch.zeros(1, 3, 3, 4), 1)
