"""An oracle drafter gets every draft accepted: acceptance length = depth + 1 at every step.

A wrong row kept in (or missing from) the target's KV cache after any step would change the
target's argmax and break the run of full acceptances, so this checks path compaction.
"""

from __future__ import annotations

import pytest

import hivis
from hivis.lossless import reference_generate
from hivis.targets import Family
from hivis.testing import oracle_proposer, random_image, random_prompt
from hivis.tree import TreeConfig


@pytest.mark.parametrize("family", list(Family))
@pytest.mark.parametrize("tree", [TreeConfig.chain(3), TreeConfig(8, 4, 2)])
def test_oracle_accepts_full_depth(tiny_target, family, tree):
    target = tiny_target(family)
    image, prompt = random_image(11), random_prompt(family, 11)
    prepared = target.prepare([image], prompt)
    # No EOS so the run is long; the reference reaches past the last tree.
    eos = target.vocab_size + 1
    reference = reference_generate(target, prepared, 40, eos)
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
