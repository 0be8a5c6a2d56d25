"""Prefix caching: questions about one image reuse its prefill, and the output stays the
target's own greedy output, for every family (M-RoPE and image-splitting ones included)."""

from __future__ import annotations

import pytest
import torch

import hivis
from hivis.hf import generate_prepared
from hivis.prefix import PrefixCache
from hivis.selfcheck.inputs import random_image
from hivis.selfcheck.proposers import oracle_proposer
from hivis.selfcheck.zoo import PLACEHOLDER, WORDS
from hivis.targets import Family

QUESTIONS = ("red blue", "green green cat dog", "one two three")


def _prompt(family: Family, question: str) -> str:
    return f"{WORDS[0]} {PLACEHOLDER[family]} {question}"


@pytest.mark.parametrize("family", list(Family))
def test_prefix_cache_questions_on_one_image_match_the_targets_greedy_output(family, tiny_target):
    target = tiny_target(family)
    image = random_image(7)
    torch.manual_seed(0)
    drafter = hivis.HiViSDrafter(target)
    ar_cache, spec_cache = PrefixCache(), PrefixCache()
    for question in QUESTIONS:
        prompt = _prompt(family, question)
        prepared = target.prepare([image], prompt)
        expected = generate_prepared(target, prepared, 12)
        ar = hivis.autoregressive(target, [image], prompt, 12, prefix_cache=ar_cache)
        good = oracle_proposer(expected, target.vocab_size, accuracy=0.8, seed=1)
        spec = hivis.generate(target, good, [image], prompt, 12, prefix_cache=spec_cache)
        untrained = hivis.generate(target, drafter, [image], prompt, 12, prefix_cache=spec_cache)
        assert ar.token_ids == spec.token_ids == untrained.token_ids == expected
    # The first question filled each cache; every later generation reused the whole image.
    last_visual = int(prepared.visual_mask.nonzero()[-1, 0])
    assert ar_cache.misses == 1 and ar_cache.hits == len(QUESTIONS) - 1
    assert spec_cache.misses == 1 and spec_cache.hits == 2 * len(QUESTIONS) - 1
    assert ar.metrics.reused_prefix_length > last_visual
    assert untrained.metrics.reused_prefix_length == ar.metrics.reused_prefix_length


def test_prefix_cache_is_refilled_for_a_new_image_and_never_reused_across_images(tiny_target):
    target = tiny_target(Family.LLAVA)
    cache = PrefixCache()
    prompt = _prompt(Family.LLAVA, QUESTIONS[0])
    for seed in (1, 2, 1):  # same prompt text, images differ from the cached one each time
        image = random_image(seed)
        out = hivis.autoregressive(target, [image], prompt, 8, prefix_cache=cache)
        assert out.metrics.reused_prefix_length == 0
        assert out.token_ids == generate_prepared(target, target.prepare([image], prompt), 8)
    assert cache.misses == 3 and cache.hits == 0
    # The identical prompt again: all but its last token come from the cache.
    again = hivis.autoregressive(target, [image], prompt, 8, prefix_cache=cache)
    assert again.metrics.reused_prefix_length == again.metrics.target_prefill_length - 1
    assert again.token_ids == out.token_ids


def test_prefix_cache_restores_copies_so_generations_do_not_change_it(tiny_target):
    target = tiny_target(Family.LLAVA)
    cache = PrefixCache()
    image = random_image(3)
    hivis.autoregressive(
        target, [image], _prompt(Family.LLAVA, QUESTIONS[0]), 4, prefix_cache=cache
    )
    keys = [k.clone() for k in cache._snapshot.keys]
    hivis.autoregressive(
        target, [image], _prompt(Family.LLAVA, QUESTIONS[1]), 16, prefix_cache=cache
    )
    assert all(torch.equal(a, b) for a, b in zip(keys, cache._snapshot.keys, strict=True))


def test_prefix_cache_bad_argument_is_refused_before_compute(tiny_target):
    target = tiny_target(Family.LLAVA)
    with pytest.raises(TypeError, match="hivis.PrefixCache"):
        hivis.autoregressive(target, [random_image(0)], _prompt(Family.LLAVA, "x"), prefix_cache={})
    prepared = target.prepare([random_image(0)], _prompt(Family.LLAVA, "red"))
    with pytest.raises(ValueError, match="prefill_from"):
        target.prefill_from(prepared, 0, target.new_cache())
