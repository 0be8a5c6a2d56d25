"""``hivis verify lossless``: greedy speculative output == the target's own greedy generate.

For every supported family a tiny random-weight model is built offline; for each case (a
prompt/image pair, a max_new_tokens and sometimes an EOS id chosen to fall *inside* the
target's continuation) the token ids from :func:`hivis.generate` are compared with
``model.generate(do_sample=False)`` in float32, for an untrained HiViS drafter and a "good"
drafter (an oracle proposing the target's continuation, wrong at ~20 % of positions), each
with the default tree and a chain. A case counts as identical only if every variant matches.
"""

from __future__ import annotations

import random
import tempfile
from dataclasses import dataclass

import torch

from hivis.api import generate
from hivis.drafter import HiViSDrafter
from hivis.hf import generate_prepared
from hivis.selfcheck.inputs import random_image, random_prompt
from hivis.selfcheck.proposers import oracle_proposer
from hivis.selfcheck.zoo import build_tiny_target
from hivis.targets import Family, load_target
from hivis.tree import TreeConfig

TREES = (TreeConfig(), TreeConfig.chain(3))


@dataclass(frozen=True)
class FamilyReport:
    family: str
    identical: int
    total: int
    failures: tuple[str, ...] = ()


def _case(target, drafters, seed: int) -> tuple[bool, str]:
    rng = random.Random(seed)
    image, prompt = random_image(seed), random_prompt(target.family, seed)
    prepared = target.prepare([image], prompt)
    max_new = rng.randint(5, 18)
    long_ref = generate_prepared(target, prepared, max_new + 8)
    eos = None
    if seed % 2 == 1 and len(long_ref) > 3:
        # An EOS id that the target emits mid-continuation: it stops inside accepted runs.
        eos = long_ref[rng.randint(1, min(len(long_ref), max_new) - 1)]
    expected = generate_prepared(target, prepared, max_new, eos)
    good = oracle_proposer(long_ref, target.vocab_size, accuracy=0.8, seed=seed)
    for name, drafter in (("untrained", drafters), ("good", good)):
        for tree in TREES:
            got = generate(
                target,
                drafter,
                [image],
                prompt,
                max_new_tokens=max_new,
                tree=tree,
                eos_token_id=eos,
            ).token_ids
            if got != expected:
                return False, f"seed {seed} {name} {tree}: {got} != {expected}"
    return True, ""


def verify_family(family: Family, cases: int = 20, workdir: str | None = None) -> FamilyReport:
    """Run ``cases`` lossless cases on a tiny model of ``family``."""
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        build_tiny_target(family, tmp)
        target = load_target(tmp)
        torch.manual_seed(0)
        drafter = HiViSDrafter(target)
        results = [_case(target, drafter, seed) for seed in range(cases)]
    failures = tuple(msg for ok, msg in results if not ok)
    return FamilyReport(family.value, cases - len(failures), cases, failures)


def verify_lossless(
    families: tuple[Family, ...] = tuple(Family), cases: int = 20
) -> list[FamilyReport]:
    """All families; ``cases`` per family (the CLI uses 20)."""
    from transformers.utils import logging

    logging.disable_progress_bar()
    return [verify_family(family, cases) for family in families]
