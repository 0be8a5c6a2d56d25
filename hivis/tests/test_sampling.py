"""Speculative sampling reproduces the target's distribution (chi-square tests).

Pure level: recursive rejection sampling over sampled trees, against known distributions.
End to end: the first two generated tokens of a tiny-vocabulary LLaVA at T = 1 against the
exact joint distribution enumerated from the target itself, for a random and a good drafter.
"""

from __future__ import annotations

import copy
import math
from collections import Counter

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

import hivis
from hivis.acceptance import accept_sampling
from hivis.engine import GenerationConfig, speculative_generate, target_scores
from hivis.selfcheck.inputs import random_image
from hivis.selfcheck.proposers import ScriptedProposer
from hivis.selfcheck.zoo import TinySpec
from hivis.targets import Family
from hivis.tree import TreeConfig, expand_tree

V = 5
P_MIN = 1e-3  # seeds are fixed, so these tests are deterministic


def _chi2_pvalue(counts: Counter, probs: dict) -> float:
    """Chi-square goodness of fit, merging cells whose expected count is below 5."""
    total = sum(counts.values())
    cells = sorted(probs, key=lambda k: -probs[k])
    obs, exp, rest_o, rest_e = [], [], 0.0, 0.0
    for cell in cells:
        e = probs[cell] * total
        if e >= 5:
            obs.append(counts.get(cell, 0))
            exp.append(e)
        else:
            rest_o += counts.get(cell, 0)
            rest_e += e
    unknown = sum(c for k, c in counts.items() if k not in probs)
    obs.append(rest_o + unknown)
    exp.append(rest_e)
    if exp[-1] == 0 and obs[-1] == 0:
        obs, exp = obs[:-1], exp[:-1]
    exp = np.array(exp) * (sum(obs) / sum(exp))
    return float(chisquare(obs, exp).pvalue)


def _synthetic(seed: int):
    gen = torch.Generator().manual_seed(seed)
    p = {(): torch.distributions.Dirichlet(torch.ones(V)).sample()}
    q = {(): torch.distributions.Dirichlet(torch.ones(V)).sample()}
    for a in range(V):
        p[(a,)] = torch.distributions.Dirichlet(torch.ones(V)).sample()
        q[(a,)] = torch.distributions.Dirichlet(torch.ones(V)).sample()
    return p, q, gen


def _path(node, tokens, parents):
    out = []
    while node > 0:
        out.append(tokens[node])
        node = parents[node]
    return tuple(out[::-1])


@pytest.mark.parametrize("config", [TreeConfig(6, 2, 3, 0.0), TreeConfig.chain(2, 0.0)])
def test_rejection_sampling_keeps_target_distribution(config):
    torch.manual_seed(0)
    p, q, gen = _synthetic(0)
    first, second = Counter(), {a: Counter() for a in range(V)}
    for _ in range(4000):

        def next_logits(nodes, tokens, parents, depth):
            return torch.stack([q[_path(n, tokens, parents)].log() for n in nodes])

        tree = expand_tree(next_logits, 0, q[()].log(), config, 1.0, gen)
        tokens, parents = tree.tokens.tolist(), tree.parents.tolist()
        target = torch.stack(
            [p.get(_path(i, tokens, parents), torch.ones(V) / V).log() for i in range(tree.size)]
        )
        verdict = accept_sampling(tree, target, 1.0, gen)
        first[verdict.tokens[0]] += 1
        if len(verdict.tokens) > 1:
            second[verdict.tokens[0]][verdict.tokens[1]] += 1
    assert _chi2_pvalue(first, dict(enumerate(p[()].tolist()))) > P_MIN
    for a in range(V):
        if sum(second[a].values()) > 200:
            assert _chi2_pvalue(second[a], dict(enumerate(p[(a,)].tolist()))) > P_MIN
    # Power check: the drafter's own q is clearly rejected by the same test.
    assert _chi2_pvalue(first, dict(enumerate(q[()].tolist()))) < P_MIN


TINY = TinySpec(vocab_words=6, seed=3)


def _exact_pairs(target, image, prompt, config: GenerationConfig | None = None):
    """Exact P(first two tokens) at T = 1, or under ``config``'s temperature and warp; a
    first-token EOS ends the sequence."""
    prepared = target.prepare([image], prompt)
    eos = target.tokenizer.eos_token_id

    def dist(logits):
        scores = logits if config is None else target_scores(logits, config)
        return torch.softmax(scores.double(), -1)

    with torch.inference_mode():
        cache = target.new_cache()
        logits, _ = target.prefill(prepared, cache)
        p1 = dist(logits[0])
        probs, p2 = {}, {}
        for a in range(target.vocab_size):
            if a == eos:
                probs[(a,)] = float(p1[a])
                continue
            # Decode a on a copy of the prompt cache (also right when a is the image id,
            # which generate embeds as a plain token).
            step = target.decode_one(a, prepared.next_position, copy.deepcopy(cache))
            p2[a] = dist(step)
            for b in range(target.vocab_size):
                probs[(a, b)] = float(p1[a] * p2[a][b])
    return probs, p2


def _good_drafter(p2, vocab):
    def logits_fn(tokens):
        if len(tokens) == 1 and tokens[0] in p2:
            return torch.log(0.7 * p2[tokens[0]].float() + 0.3 / vocab)
        return torch.zeros(vocab)

    return ScriptedProposer(logits_fn)


@pytest.mark.parametrize("kind", ["random", "good"])
def test_speculative_sampling_matches_target(tiny_target, kind):
    target = tiny_target(Family.LLAVA, TINY)
    image, prompt = random_image(7), "<image> what is"
    probs, p2 = _exact_pairs(target, image, prompt)
    assert math.isclose(sum(probs.values()), 1.0, rel_tol=1e-6)
    torch.manual_seed(5)
    drafter = (
        hivis.HiViSDrafter(target) if kind == "random" else _good_drafter(p2, target.vocab_size)
    )
    prepared = target.prepare([image], prompt)
    counts, accepted = Counter(), 0
    tree = TreeConfig(6, 2, 3, 0.0)
    with torch.inference_mode():
        for seed in range(1000):
            config = GenerationConfig(2, 1.0, tree, seed=seed, adaptive=False)
            out = speculative_generate(target, drafter, prepared, config)
            counts[tuple(out.token_ids)] += 1
            accepted += sum(out.metrics.accepted_per_step)
    assert _chi2_pvalue(counts, probs) > P_MIN
    if kind == "good":
        assert accepted > 400  # the good drafter's proposals are really used


def test_sampling_follows_the_processed_distribution(tiny_target):
    """Temperature 3 with Hugging Face's top-k and top-p warpers (as ``hivis.hf.generate``
    builds them from ``generate``'s processors): the first two tokens follow the target's
    processed distribution, not the raw one."""
    from transformers.generation.logits_process import (
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    from hivis.hf import _scores_transform

    target = tiny_target(Family.LLAVA, TINY)
    image, prompt = random_image(8), "<image> what is"
    processors = [TemperatureLogitsWarper(3.0), TopKLogitsWarper(4), TopPLogitsWarper(0.9)]
    settings = type("Settings", (), {"do_sample": True})()
    temperature, warp = _scores_transform(settings, processors)
    assert temperature == 3.0 and warp is not None
    tree = TreeConfig(6, 2, 3, 0.0)
    base = GenerationConfig(2, temperature, tree, adaptive=False, warp=warp)
    probs, _ = _exact_pairs(target, image, prompt, base)
    raw, _ = _exact_pairs(target, image, prompt)
    assert sum(1 for v in probs.values() if v > 0) < sum(1 for v in raw.values() if v > 0)
    torch.manual_seed(6)
    drafter = hivis.HiViSDrafter(target)
    prepared = target.prepare([image], prompt)
    counts = Counter()
    with torch.inference_mode():
        for seed in range(800):
            config = GenerationConfig(2, temperature, tree, seed=seed, adaptive=False, warp=warp)
            counts[tuple(speculative_generate(target, drafter, prepared, config).token_ids)] += 1
    assert _chi2_pvalue(counts, probs) > P_MIN
    assert all(probs.get(pair, 0.0) > 0 for pair in counts)  # nothing top-k/p removed
    assert _chi2_pvalue(counts, raw) < P_MIN  # power: the unprocessed law is rejected
