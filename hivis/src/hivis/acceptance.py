"""Acceptance of a draft tree against the target's logits: which draft tokens the target
keeps, and the bonus token after them. Pure: never calls the drafter (the target's one pass
over the tree that produces the logits is :meth:`hivis.protocols.TargetModel.forward_tree`).

Greedy (T = 0): walk from the root, at each node descend into the child whose token equals
the target's argmax there; stop when none does. The committed tokens are the accepted draft
tokens plus the *bonus* token, the target's argmax at the last accepted node.

Sampling (T > 0), recursive rejection sampling over the tree. At node u the target
distribution is p = softmax(logits_u / T). The children c_1..c_m of u were drawn without
replacement from the drafter's q_u, so c_i ~ q_i = q_u with c_1..c_{i-1} removed and
renormalised. For i = 1..m: accept c_i with probability min(1, p(c_i) / q_i(c_i)) and descend
into it; otherwise replace p by normalise(max(p - q_i, 0)). Each round is a standard
rejection-sampling step whose draft distribution is exactly the one c_i was drawn from, so the
output token at every position is distributed as the target's p (Leviathan et al. 2023;
SpecInfer's multi-candidate form). If every child is rejected, or u has none, the bonus token
is sampled from the current p.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from hivis.tree import DraftTree


@dataclass(frozen=True)
class Verdict:
    """Outcome of the acceptance of one draft tree.

    path: accepted node indices, root first (the target cache rows to keep).
    tokens: committed tokens = accepted draft tokens then the bonus token.
    """

    path: list[int]
    tokens: list[int]

    @property
    def accepted(self) -> int:
        """Draft tokens accepted (bonus excluded)."""
        return len(self.path) - 1


class NonFiniteLogitsError(FloatingPointError):
    """The target produced NaN or infinite logits; the output would be meaningless."""


def check_finite(logits: torch.Tensor) -> None:
    """Raise :class:`NonFiniteLogitsError` unless every logit is finite."""
    if not bool(torch.isfinite(logits).all()):
        raise NonFiniteLogitsError(
            "the target produced NaN/inf logits (broken weights or dtype overflow); "
            "try float32 or check the checkpoint"
        )


def accept_greedy(tree: DraftTree, target_logits: torch.Tensor) -> Verdict:
    """Greedy acceptance. target_logits: [n, V] for the tree's nodes.

    The row maxima travel to the host with the argmax (one sync) to reject NaN/inf logits.
    """
    values, indices = target_logits.max(dim=-1)
    both = torch.stack([values.float(), indices.float()]).tolist()
    if not all(math.isfinite(v) for v in both[0]):
        check_finite(target_logits)
    argmax = [int(i) for i in both[1]]
    tokens = tree.tokens.tolist()
    node, path, committed = 0, [0], []
    while True:
        wanted = argmax[node]
        nxt = next((c for c in tree.children[node] if tokens[c] == wanted), None)
        committed.append(wanted)
        if nxt is None:
            return Verdict(path, committed)
        node = nxt
        path.append(node)


def _sample(p: torch.Tensor, generator) -> int:
    return int(torch.multinomial(p, 1, generator=generator))


def accept_sampling(
    tree: DraftTree,
    target_logits: torch.Tensor,
    temperature: float,
    generator: torch.Generator | None = None,
) -> Verdict:
    """Recursive rejection sampling (module docstring). target_logits: [n, V]."""
    if tree.draft_probs is None and tree.size > 1:
        raise ValueError("sampling acceptance needs the tree's draft_probs (a T > 0 tree)")
    # On the CPU, like the draft distributions and the generator (see hivis.tree).
    target_probs = torch.softmax(target_logits.float() / temperature, dim=-1).cpu()
    tokens = tree.tokens.tolist()
    node, path, committed = 0, [0], []
    while True:
        p = target_probs[node]
        accepted = None
        if tree.children[node]:
            q = tree.draft_probs[node].clone()
            for child in tree.children[node]:
                q_i = q / q.sum()
                token = tokens[child]
                ratio = float(p[token] / q_i[token])
                if float(torch.rand((), generator=generator)) < ratio:
                    accepted = child
                    break
                residual = torch.clamp(p - q_i, min=0.0)
                # p == q_i leaves no residual mass, but then the child was always accepted.
                p = residual / residual.sum() if float(residual.sum()) > 0 else p
                q[token] = 0.0
        if accepted is None:
            committed.append(_sample(p, generator))
            return Verdict(path, committed)
        committed.append(tokens[accepted])
        node = accepted
        path.append(node)
