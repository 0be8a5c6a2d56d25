"""The lean decode step and tree pass of the target (hivis.targets.lean) equal the HF forward."""

from __future__ import annotations

import pytest
import torch

import hivis
from hivis.hf import generate_prepared
from hivis.selfcheck.inputs import random_image, random_prompt
from hivis.targets import Family
from hivis.targets.families import MROPE_FAMILIES
from hivis.tree import build_tree


@pytest.mark.parametrize("family", list(Family))
def test_lean_steps_equal_the_hf_forward(tiny_target, family):
    target = tiny_target(family)
    assert (target.lean is not None) == (family not in MROPE_FAMILIES)  # M-RoPE: HF kept
    hf = target.with_lean(False)
    assert hf.lean is None
    prepared = target.prepare([random_image(3)], random_prompt(family, 3))
    tree = build_tree([20, 21, 22, 23, 24, 25], [-1, 0, 1, 0, 3, 0])
    out = {}
    with torch.inference_mode():
        for name, adapter in (("lean", target), ("hf", hf)):
            cache = adapter.new_cache()
            adapter.prefill(prepared, cache)
            start = prepared.next_position
            step = adapter.decode_one(7, start, cache)
            logits, hidden = adapter.forward_tree(
                tree.tokens, tree.depths, tree.ancestor_mask, start + 1, cache
            )
            out[name] = (step, logits, hidden, cache.layers[-1].keys, cache.layers[0].values)
    for ours, theirs in zip(out["lean"], out["hf"], strict=True):
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", list(Family))
def test_lean_greedy_tokens_equal_hf_generate(tiny_target, family):
    target = tiny_target(family)
    hf = target.with_lean(False)
    for seed in (4, 5):
        image, prompt = random_image(seed), random_prompt(family, seed)
        lean_tokens = hivis.autoregressive(target, [image], prompt, max_new_tokens=12).token_ids
        hf_tokens = hivis.autoregressive(hf, [image], prompt, max_new_tokens=12).token_ids
        reference = generate_prepared(target, target.prepare([image], prompt), 12)
        assert lean_tokens == hf_tokens == reference


def test_lean_forward_reads_the_model_weights_without_copies(tiny_target):
    target = tiny_target(Family.LLAVA)
    layer, lean = target.language_model.layers[0], target.lean.layers[0]
    assert lean.qkv[0][0].data_ptr() == layer.self_attn.q_proj.weight.data_ptr()
    assert lean.gate_up[1][0].data_ptr() == layer.mlp.up_proj.weight.data_ptr()
