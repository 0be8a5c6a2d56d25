"""Greedy speculative output equals the target's own greedy ``generate``, token for token."""

from __future__ import annotations

import warnings

import pytest
import torch

import hivis
from hivis.hf import generate_prepared
from hivis.selfcheck.inputs import random_image, random_prompt
from hivis.selfcheck.lossless import verify_family
from hivis.targets import Family


@pytest.mark.parametrize("family", list(Family))
def test_lossless_every_family(family, tmp_path):
    # Untrained and good drafter, tree and chain, EOS inside runs, max_new mid-tree.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = verify_family(family, cases=4, workdir=str(tmp_path))
    assert report.failures == ()
    assert report.identical == report.total == 4
    # hivis passes its KV cache under the keyword the installed transformers declares:
    # from 5.24 on, `past_key_values` is deprecated (the warning is attributed to torch's
    # Module.__call__, so it is matched by its text; transformers itself no longer uses it).
    old_keyword = [
        str(w.message) for w in caught if "`past_key_values` is deprecated" in str(w.message)
    ]
    assert old_keyword == [], old_keyword


def test_adaptive_backoff_is_lossless(tiny_target):
    target = tiny_target(Family.LLAVA)
    torch.manual_seed(1)
    drafter = hivis.HiViSDrafter(target)
    for seed in range(3):
        image, prompt = random_image(seed), random_prompt(Family.LLAVA, seed)
        expected = generate_prepared(target, target.prepare([image], prompt), 24)
        out = hivis.generate(target, drafter, [image], prompt, max_new_tokens=24)
        assert out.token_ids == expected


def test_generation_runs_in_eval_mode_and_restores_training_flags(tiny_target):
    """A drafter left in training mode (dropout on, one submodule frozen in eval) still
    decodes losslessly, and each submodule's flag is what it was before."""
    target = tiny_target(Family.LLAVA)
    torch.manual_seed(3)
    drafter = hivis.HiViSDrafter(target).train()
    drafter.fc.eval()
    flags = {name: m.training for name, m in drafter.named_modules()}
    image, prompt = random_image(4), random_prompt(Family.LLAVA, 4)
    expected = generate_prepared(target, target.prepare([image], prompt), 16)
    out = hivis.generate(target, drafter, [image], prompt, max_new_tokens=16)
    assert out.token_ids == expected
    assert {name: m.training for name, m in drafter.named_modules()} == flags
    assert not target.model.training


def test_stop_string_matches_hf(tiny_target):
    target = tiny_target(Family.QWEN2_VL)
    torch.manual_seed(2)
    drafter = hivis.HiViSDrafter(target)
    checked = 0
    for seed in range(6):
        image, prompt = random_image(seed), random_prompt(Family.QWEN2_VL, seed)
        prepared = target.prepare([image], prompt)
        full = generate_prepared(target, prepared, 16)
        words = [target.tokenizer.decode([t]) for t in full[2:]]
        words = [w for w in words if w.isalpha()]
        if not words:
            continue
        stop = words[0]
        ref = generate_prepared(
            target, prepared, 16, stop_strings=[stop], tokenizer=target.tokenizer
        )
        out = hivis.generate(
            target, drafter, [image], prompt, max_new_tokens=16, stop_strings=[stop]
        )
        assert out.token_ids == ref
        assert len(ref) < len(full)  # the stop string really cut the output
        checked += 1
    assert checked >= 3


def test_hf_baselines_in_harness(tiny_target):
    from hivis.hf import hf_generate

    target = tiny_target(Family.LLAVA_NEXT)
    image, prompt = random_image(3), random_prompt(Family.LLAVA_NEXT, 3)
    expected = hivis.autoregressive(target, [image], prompt, max_new_tokens=12).token_ids
    plain = hf_generate(target, [image], prompt, max_new_tokens=12)
    lookup = hf_generate(target, [image], prompt, max_new_tokens=12, prompt_lookup_num_tokens=3)
    assert plain.token_ids == expected
    assert lookup.token_ids == expected  # HF's assisted greedy is lossless too
    assert plain.metrics.total_s > 0 and plain.metrics.new_tokens == len(expected)


@pytest.mark.parametrize("family", [Family.LLAVA, Family.QWEN2_VL, Family.IDEFICS3])
def test_two_images_lossless(tiny_target, family):
    from hivis.selfcheck.zoo import PLACEHOLDER

    target = tiny_target(family)
    torch.manual_seed(3)
    drafter = hivis.HiViSDrafter(target)
    images = [random_image(1), random_image(2, (24, 20))]
    slot = PLACEHOLDER[family]
    prompt = f"{slot} left image {slot} right image what is the color"
    prepared = target.prepare(images, prompt)
    assert int(prepared.visual_mask.sum()) > 0
    expected = generate_prepared(target, prepared, 14)
    out = hivis.generate(target, drafter, images, prompt, max_new_tokens=14, adaptive=False)
    assert out.token_ids == expected
