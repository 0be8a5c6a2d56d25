"""Target adapters: inputs, positions, tree forward and path keeping."""

from __future__ import annotations

import pytest
import torch

from hivis.selfcheck.inputs import random_image, random_prompt
from hivis.targets import Family
from hivis.targets.inputs import image_token_id, prepare_smolvlm_fallback
from hivis.targets.kwargs import cache_kwargs


def test_smolvlm_fallback_expansion_equals_idefics3_processor(tiny_target):
    # SmolVLM's processor needs torchvision here, so hivis expands its placeholders itself;
    # the layout is Idefics3's, whose real processor is available: both must agree.
    target = tiny_target(Family.IDEFICS3)
    image, prompt = random_image(2), random_prompt(Family.IDEFICS3, 2)
    real = target.prepare([image], prompt)
    ours = prepare_smolvlm_fallback(target, [image], prompt)
    assert torch.equal(real.input_ids, ours.input_ids)
    assert torch.equal(real.vision_inputs["pixel_values"], ours.vision_inputs["pixel_values"])


@pytest.mark.parametrize("family", [Family.QWEN2_VL, Family.QWEN2_5_VL])
def test_mrope_positions_continue_after_image(tiny_target, family):
    target = tiny_target(family)
    prepared = target.prepare([random_image(1)], random_prompt(family, 1))
    pos = prepared.positions
    assert pos.shape[0] == 3
    # Text after the image: the three rows agree and the next position is max + 1 < length.
    assert torch.equal(pos[0, -1], pos[1, -1]) and torch.equal(pos[0, -1], pos[2, -1])
    assert prepared.next_position == int(pos.max()) + 1
    assert prepared.next_position < prepared.length
    n_visual = int((prepared.input_ids == image_token_id(target.model)).sum())
    assert n_visual == int(prepared.visual_mask.sum()) > 0


@pytest.mark.parametrize("family", list(Family))
def test_tree_forward_equals_sequential_decoding(tiny_target, family):
    # Two branches scored in one tree pass give the logits of decoding each branch alone,
    # and keep_path leaves exactly the cache of the kept branch.
    target = tiny_target(family)
    prepared = target.prepare([random_image(6)], random_prompt(family, 6))
    from hivis.tree import build_tree

    tree = build_tree([20, 21, 22, 23, 24], [-1, 0, 1, 0, 3])  # root, branch A (21,22), B (23,24)
    with torch.inference_mode():
        cache = target.new_cache()
        target.prefill(prepared, cache)
        prefix = cache.get_seq_length()
        logits, _ = target.forward_tree(
            tree.tokens, tree.depths, tree.ancestor_mask, prepared.next_position, cache
        )
        target.keep_path(cache, prefix, torch.tensor([0, 3, 4]))
        after = target.decode_one(25, prepared.next_position + 3, cache)
        for branch, rows in (([20, 21, 22], [0, 1, 2]), ([20, 23, 24, 25], [0, 3, 4])):
            seq_cache = target.new_cache()
            target.prefill(prepared, seq_cache)
            for i, token in enumerate(branch):
                step = target.decode_one(token, prepared.next_position + i, seq_cache)
                if i < len(rows):
                    torch.testing.assert_close(step, logits[rows[i]], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(after, step, atol=1e-4, rtol=1e-4)
        assert cache.get_seq_length() == prefix + 4


def test_cache_keyword_follows_the_forward_signature():
    # transformers 5.24 renamed past_key_values to cache; each module gets the name it declares.
    class NewStyle(torch.nn.Module):
        def forward(self, x, cache=None):
            return x

    class OldStyle(torch.nn.Module):
        def forward(self, x, past_key_values=None):
            return x

    marker = object()
    assert cache_kwargs(NewStyle(), marker) == {"cache": marker}
    assert cache_kwargs(OldStyle(), marker) == {"past_key_values": marker}


def test_dynamic_int8_target_is_lossless_against_its_own_generate(target_dir):
    """A torch dynamic-int8 target (every Linear, LM head included, quantised) runs through
    its own modules: hivis's output equals its own greedy generate, in both entry points."""
    import hivis
    import hivis.hf
    from hivis.hf import generate_prepared
    from hivis.targets import load_target, wrap_target

    base = load_target(target_dir(Family.LLAVA))
    quantised = torch.ao.quantization.quantize_dynamic(
        base.model, {torch.nn.Linear}, dtype=torch.qint8
    )
    target = wrap_target(quantised, base.processor)
    assert target.lean is None  # quantised projections: no lean path
    torch.manual_seed(0)
    drafter = hivis.HiViSDrafter(target)
    for seed in range(2):
        image, prompt = random_image(seed), random_prompt(Family.LLAVA, seed)
        prepared = target.prepare([image], prompt)
        expected = generate_prepared(target, prepared, 12)
        assert hivis.generate(target, drafter, [image], prompt, 12).token_ids == expected
        assert hivis.autoregressive(target, [image], prompt, 12).token_ids == expected
        out = quantised.generate(
            input_ids=prepared.input_ids,
            **prepared.vision_inputs,
            custom_generate=hivis.hf.generate,
            drafter=drafter,
            max_new_tokens=12,
        )
        assert out[0, prepared.length :].tolist() == expected


def test_model_spread_over_devices_is_refused(target_dir):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from hivis.targets import wrap_target

    directory = target_dir(Family.LLAVA)
    model = AutoModelForImageTextToText.from_pretrained(directory)
    model.hf_device_map = {"model.vision_tower": "cpu", "model.language_model": "disk"}
    with pytest.raises(ValueError, match="whole model on one device"):
        wrap_target(model, AutoProcessor.from_pretrained(directory))
