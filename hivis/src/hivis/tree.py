"""Draft trees: the dataclass, its masks, and EAGLE-2-style dynamic expansion.

A tree's node 0 is the *root*: the last committed token, which the target has not processed
yet. Every other node is a draft token. A chain is a tree of width 1.

Expansion (:func:`expand_tree`) asks a callback for next-token logits of a batch of nodes and
grows the tree level by level:

* T = 0 (EAGLE-2): each expanded node proposes its ``top_k`` most likely tokens; a node's score
  is its cumulative log-probability; the ``top_k`` best nodes of each level are expanded; at
  the end the ``total_tokens`` best nodes (ancestor-closed) form the tree.
* T > 0: children are *sampled without replacement* from the drafter's distribution q, and
  every sampled child is kept - dropping a sampled child because of its own value would bias
  rejection sampling. The number of children drawn per level depends only on the budget
  (never on the sampled values), so ``total_tokens`` is still respected; expansion still
  picks the best-scored nodes, which only decides which subtrees exist.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TreeConfig:
    """Shape of the draft tree.

    total_tokens: maximum number of draft nodes (root excluded).
    depth: maximum depth (draft tokens along one path).
    top_k: children proposed per expanded node, and nodes expanded per level.
    min_prob: confidence floor. At T = 0 a node whose cumulative draft probability (product
    along its path) is below it is not proposed; at T > 0 such a node is not expanded (its
    own inclusion never depends on its value). A drafter that knows nothing therefore costs
    little more than a plain decode step: its tree shrinks to the root.

    The default (10 nodes, depth 4, top-k 3) suits a CPU, where verifying 60 tokens costs
    2-3 decode steps (see PERFORMANCE.md); GPU setups use 60 / 5 / 10.
    """

    total_tokens: int = 10
    depth: int = 4
    top_k: int = 3
    min_prob: float = 0.02

    def __post_init__(self):
        for name in ("total_tokens", "depth", "top_k"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"tree {name} must be a positive integer, got {value!r}")
        if not 0.0 <= self.min_prob < 1.0:
            raise ValueError(f"tree min_prob must be in [0, 1), got {self.min_prob!r}")
        if self.total_tokens < self.depth and self.top_k == 1:
            raise ValueError("a chain needs total_tokens >= depth")

    @classmethod
    def chain(cls, depth: int, min_prob: float = 0.02) -> TreeConfig:
        """A width-1 tree of ``depth`` draft tokens."""
        return cls(total_tokens=depth, depth=depth, top_k=1, min_prob=min_prob)

    @property
    def is_chain(self) -> bool:
        return self.top_k == 1


@dataclass(frozen=True)
class DraftTree:
    """A draft tree of ``n`` nodes (node 0 = root).

    tokens: [n] long token ids. parents: [n] long parent index (-1 for the root).
    depths: [n] long (root 0). ancestor_mask: [n, n] bool, row i is True at i and its
    ancestors. children: per node, child indices in draw order.
    draft_probs: [n, V] float, the distribution each node's children were sampled from
    (T > 0 only; None for greedy trees).
    """

    tokens: torch.Tensor
    parents: torch.Tensor
    depths: torch.Tensor
    ancestor_mask: torch.Tensor
    children: tuple[tuple[int, ...], ...]
    draft_probs: torch.Tensor | None = None

    @property
    def size(self) -> int:
        return int(self.tokens.shape[0])


def build_tree(
    tokens: list[int], parents: list[int], draft_probs: torch.Tensor | None = None, device=None
) -> DraftTree:
    """Make a :class:`DraftTree`; ``parents[i] < i`` for every non-root node."""
    n = len(tokens)
    if n == 0 or parents[0] != -1:
        raise ValueError("node 0 must be the root (parent -1)")
    depths = [0] * n
    children: list[list[int]] = [[] for _ in range(n)]
    mask = torch.zeros((n, n), dtype=torch.bool)
    mask[0, 0] = True
    for i in range(1, n):
        parent = parents[i]
        if not 0 <= parent < i:
            raise ValueError(f"node {i} has parent {parent}; parents must precede children")
        depths[i] = depths[parent] + 1
        children[parent].append(i)
        mask[i] = mask[parent]
        mask[i, i] = True
    return DraftTree(
        tokens=torch.tensor(tokens, dtype=torch.long, device=device),
        parents=torch.tensor(parents, dtype=torch.long, device=device),
        depths=torch.tensor(depths, dtype=torch.long, device=device),
        ancestor_mask=mask.to(device) if device is not None else mask,
        children=tuple(tuple(c) for c in children),
        draft_probs=draft_probs,
    )


def chain_tree(root: int, draft: list[int]) -> DraftTree:
    """A chain: root followed by ``draft`` tokens."""
    return build_tree([root, *draft], list(range(-1, len(draft))))


def select_best(
    scores: list[float], parents: list[int], depths: list[int], total: int
) -> list[int]:
    """Indices of the ``total`` best-scored non-root nodes, closed under ancestors.

    Nodes are visited by (score descending, depth ascending); a node is taken only when its
    parent is already taken, so the result is a valid tree. Returned in index order (parents
    before children) with the root (index 0) first.
    """
    order = sorted(range(1, len(scores)), key=lambda i: (-scores[i], depths[i], i))
    taken = {0}
    for i in order:
        if len(taken) > total:
            break
        if parents[i] in taken:
            taken.add(i)
    return sorted(taken)


def _draw_children(
    logits: torch.Tensor, count: int, temperature: float, generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Children of each row: (tokens [f, count], log-probs [f, count], q [f, V] or None)."""
    if temperature == 0.0:
        logp = torch.log_softmax(logits.float(), dim=-1)
        values, tokens = torch.topk(logp, count, dim=-1)
        return tokens, values, None
    # Sampling happens on the CPU so one CPU generator makes runs reproducible anywhere.
    q = torch.softmax(logits.float() / temperature, dim=-1).cpu()
    tokens = torch.multinomial(q, count, replacement=False, generator=generator)
    return tokens, torch.log(q.gather(-1, tokens)), q


NextLogits = Callable[[list[int], list[int], list[int], int], torch.Tensor]


def expand_tree(
    next_logits: NextLogits,
    root_token: int,
    root_logits: torch.Tensor,
    config: TreeConfig,
    temperature: float,
    generator: torch.Generator | None = None,
) -> DraftTree:
    """Grow a draft tree (see module docstring).

    root_logits: [V] drafter logits for the root's next token.
    next_logits(nodes, tokens, parents, depth): drafter logits [f, V] for the listed nodes
    (pool indices, all at ``depth``); ``tokens`` and ``parents`` are the whole pool so far.
    """
    tokens, parents, depths, scores = [root_token], [-1], [0], [0.0]
    q_rows: dict[int, torch.Tensor] = {}
    budget = config.total_tokens
    floor = math.log(config.min_prob) if config.min_prob > 0 else -math.inf
    frontier, frontier_logits = [0], root_logits[None, :]
    for depth in range(1, config.depth + 1):
        count = _children_per_node(config, temperature, budget, len(frontier))
        if count == 0:
            break
        kids, logps, q = _draw_children(frontier_logits, count, temperature, generator)
        kids, logps = kids.tolist(), logps.tolist()
        level = []
        for row, parent in enumerate(frontier):
            if q is not None:
                q_rows[parent] = q[row]
            for token, logp in zip(kids[row], logps[row], strict=True):
                if q is None and scores[parent] + logp < floor:
                    continue  # T = 0: a node this unlikely is not worth verifying
                level.append(len(tokens))
                tokens.append(token)
                parents.append(parent)
                depths.append(depth)
                scores.append(scores[parent] + logp)
        if temperature > 0.0:
            budget -= len(level)
        if depth == config.depth or budget <= 0:
            break
        width = config.top_k if temperature == 0.0 else min(config.top_k, budget)
        frontier = sorted(level, key=lambda i: -scores[i])[:width]
        frontier = [i for i in frontier if scores[i] >= floor]
        if not frontier:
            break
        frontier_logits = next_logits(frontier, tokens, parents, depth)
    return _finish_tree(tokens, parents, depths, scores, q_rows, config, temperature)


def _children_per_node(config: TreeConfig, temperature: float, budget: int, width: int) -> int:
    if temperature == 0.0:
        return config.top_k
    # Value-independent budget split: every frontier node draws the same number of children.
    return max(0, min(config.top_k, budget // width))


def _finish_tree(tokens, parents, depths, scores, q_rows, config, temperature) -> DraftTree:
    if temperature == 0.0:
        keep = select_best(scores, parents, depths, config.total_tokens)
    else:
        keep = list(range(len(tokens)))
    new_index = {old: new for new, old in enumerate(keep)}
    kept_parents = [-1] + [new_index[parents[i]] for i in keep[1:]]
    probs = None
    if q_rows:
        vocab = next(iter(q_rows.values())).shape[0]
        probs = torch.zeros((len(keep), vocab))
        for old, row in q_rows.items():
            probs[new_index[old]] = row
    return build_tree([tokens[i] for i in keep], kept_parents, probs)
