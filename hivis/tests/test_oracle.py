"""An oracle drafter gets every draft accepted: acceptance length = depth + 1 at every step.

A wrong row kept in (or missing from) the target's KV cache after any step would change the
target's argmax and break the run of full acceptances, so this checks path compaction.
"""

from __future__ import annotations

import pytest

import hivis
from hivis.hf import generate_prepared
from hivis.selfcheck.inputs import random_image, random_prompt
from hivis.selfcheck.proposers import oracle_proposer
from hivis.targets import Family
from hivis.tree import TreeConfig


@pytest.mark.parametrize("family", list(Family))
@pytest.mark.parametrize("tree", [TreeConfig.chain(3), TreeConfig(8, 4, 2)])
def test_oracle_accepts_full_depth(tiny_target, family, tree):
    target = tiny_target(family)
    image, prompt = random_image(11), random_prompt(family, 11)
    prepared = target.prepare([image], prompt)
    # No EOS so the run is long; the reference reaches past the last tree.
    eos = target.vocab_size + 1
    reference = generate_prepared(target, prepared, 40, eos)
    oracle = oracle_proposer(reference, target.vocab_size)
    out = hivis.generate(
        target, oracle, [image], prompt, max_new_tokens=25, tree=tree, eos_token_id=eos
    )
    assert out.token_ids == reference[:25]
    steps = out.metrics.accepted_per_step
    assert steps == [tree.depth] * len(steps)
    # 1 token from the prefill, then depth + 1 per step except the (cut) last one.
    assert len(steps) == -(-(25 - 1) // (tree.depth + 1))
    full_steps = len(steps) - 1
    assert out.metrics.committed_in_steps >= full_steps * (tree.depth + 1)


def _eos_case(target):
    """(image, prompt, prepared, reference, eos) where eos first appears at index 7."""
    never = target.vocab_size + 1
    for seed in range(12, 40):
        image, prompt = random_image(seed), random_prompt(Family.LLAVA, seed)
        prepared = target.prepare([image], prompt)
        reference = generate_prepared(target, prepared, 40, never)
        firsts: dict[int, int] = {}
        for i, token in enumerate(reference):
            firsts.setdefault(token, i)
        candidates = [t for t, i in firsts.items() if i == 7]
        if candidates:
            return image, prompt, prepared, reference, candidates[0]
    raise AssertionError("no seed gives a token first seen at index 7")


def test_eos_inside_an_accepted_run_stops_there(tiny_target):
    target = tiny_target(Family.LLAVA)
    # EOS = a token first emitted at index 7: the 2nd token of the 2nd step's run of 5
    # (1 prefill token + 5 per fully accepted depth-4 chain).
    image, prompt, prepared, reference, eos = _eos_case(target)
    expected = generate_prepared(target, prepared, 40, eos)
    assert expected == reference[:8]
    out = hivis.generate(
        target,
        oracle_proposer(reference, target.vocab_size),
        [image],
        prompt,
        max_new_tokens=40,
        tree=TreeConfig.chain(4),
        eos_token_id=eos,
    )
    assert out.token_ids == expected
    # The last step accepted all 4 drafts but only 2 tokens were kept (EOS was inside).
    assert out.metrics.accepted_per_step == [4, 4]
    assert out.metrics.committed_in_steps == 5 + 2


def test_max_new_tokens_reached_mid_run(tiny_target):
    target = tiny_target(Family.QWEN2_5_VL)
    image, prompt = random_image(13), random_prompt(Family.QWEN2_5_VL, 13)
    prepared = target.prepare([image], prompt)
    never = target.vocab_size + 1
    reference = generate_prepared(target, prepared, 30, never)
    out = hivis.generate(
        target,
        oracle_proposer(reference, target.vocab_size),
        [image],
        prompt,
        max_new_tokens=9,
        tree=TreeConfig.chain(4),
        eos_token_id=never,
    )
    assert out.token_ids == reference[:9]
    assert out.metrics.accepted_per_step == [4, 4]
    assert out.metrics.committed_in_steps == 8  # 5 + 3: the second run was cut at 9 tokens
