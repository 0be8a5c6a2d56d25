"""Proposers for the self-checks: scripted next-token logits, and an oracle that proposes
the target's own continuation (optionally wrong at a chosen fraction of positions)."""

from __future__ import annotations

import random

import torch


class ScriptedProposer:
    """A drafter stand-in whose next-token logits are a function of the generated tokens.

    ``logits_fn(tokens)`` gets the generated tokens so far (committed plus the draft path) and
    returns logits [V] for the next one. Trees are grown by the same
    :func:`hivis.tree.expand_tree` as the real drafter, so acceptance sees real trees.
    """

    def __init__(self, logits_fn):
        self.logits_fn = logits_fn

    def begin(self, target, prompt, hidden, first_token: int):
        return _ScriptedSession(self.logits_fn, first_token)


class _ScriptedSession:
    prefill_length = 0

    def __init__(self, logits_fn, first_token: int):
        self.logits_fn = logits_fn
        self.committed = [first_token]

    def accept(self, tokens, features, root_position) -> None:
        self.committed.extend(tokens)

    def draft(self, root_position, config, temperature, generator=None):
        from hivis.tree import expand_tree

        def path(node, tokens, parents):
            out = []
            while node > 0:
                out.append(tokens[node])
                node = parents[node]
            return self.committed + out[::-1]

        def next_logits(nodes, tokens, parents, depth):
            return torch.stack([self.logits_fn(path(n, tokens, parents)) for n in nodes])

        root_logits = self.logits_fn(list(self.committed))
        return expand_tree(
            next_logits, self.committed[-1], root_logits, config, temperature, generator
        )


def _noise(tokens: list[int], vocab: int, salt: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed((hash(tuple(tokens)) + salt) % (2**31))
    return torch.randn(vocab, generator=gen)


def oracle_proposer(reference: list[int], vocab: int, accuracy: float = 1.0, seed: int = 0):
    """Proposes ``reference`` (the target's own continuation) with peaked logits.

    With ``accuracy`` < 1 the peak sits on a wrong token at a fraction ~(1 - accuracy) of
    positions (deterministic in the position and ``seed``): a "mostly right" drafter. Off the
    reference path, logits are deterministic noise.
    """
    rng = random.Random(seed)
    wrong = {i for i in range(len(reference)) if rng.random() > accuracy}

    def logits_fn(tokens: list[int]) -> torch.Tensor:
        logits = _noise(tokens, vocab, seed)
        n = len(tokens)
        if n < len(reference) and tokens == reference[:n]:
            peak = reference[n] if n not in wrong else (reference[n] + 1) % vocab
            logits[peak] += 20.0
        return logits

    return ScriptedProposer(logits_fn)
