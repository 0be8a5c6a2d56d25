"""Pure tree functions: masks, ancestor-closed selection, expansion budgets."""

from __future__ import annotations

import torch

from hivis.targets.base import additive_tree_mask
from hivis.tree import TreeConfig, build_tree, chain_tree, expand_tree, select_best


def test_ancestor_mask_and_depths():
    #      0
    #    1   2
    #   3     4
    #   5
    tree = build_tree([9, 1, 2, 3, 4, 5], [-1, 0, 0, 1, 2, 3])
    assert tree.depths.tolist() == [0, 1, 1, 2, 2, 3]
    assert tree.children == ((1, 2), (3,), (4,), (5,), (), ())
    expected = torch.tensor(
        [
            [1, 0, 0, 0, 0, 0],
            [1, 1, 0, 0, 0, 0],
            [1, 0, 1, 0, 0, 0],
            [1, 1, 0, 1, 0, 0],
            [1, 0, 1, 0, 1, 0],
            [1, 1, 0, 1, 0, 1],
        ],
        dtype=torch.bool,
    )
    assert torch.equal(tree.ancestor_mask, expected)


def test_chain_mask_is_causal():
    tree = chain_tree(7, [1, 2, 3])
    assert torch.equal(tree.ancestor_mask, torch.ones(4, 4, dtype=torch.bool).tril())


def test_additive_mask_layout():
    mask = additive_tree_mask(torch.tensor([[True, False], [True, True]]), 3, torch.float32)
    assert mask.shape == (1, 1, 2, 5)
    assert (mask[0, 0, :, :3] == 0).all()
    assert mask[0, 0, 0, 4] == torch.finfo(torch.float32).min
    assert mask[0, 0, 1, 4] == 0


def test_select_best_is_ancestor_closed():
    # Node 3 scores best but its parent 1 is weak: taking 3 forces 1 to come first.
    scores = [0.0, -3.0, -0.5, -0.1, -0.6]
    parents = [-1, 0, 0, 1, 2]
    depths = [0, 1, 1, 2, 2]
    chosen = select_best(scores, parents, depths, 2)
    assert chosen == [0, 2, 4]
    for node in chosen[1:]:
        assert parents[node] in chosen


def _uniformish(nodes, tokens, parents, depth):
    gen = torch.Generator().manual_seed(len(tokens))
    return torch.randn(len(nodes), 20, generator=gen)


def test_greedy_expansion_respects_budget_and_depth():
    config = TreeConfig(total_tokens=7, depth=3, top_k=3, min_prob=0.0)
    tree = expand_tree(_uniformish, 5, torch.randn(20), config, 0.0)
    assert tree.size == 1 + 7
    assert int(tree.depths.max()) <= 3
    for siblings in tree.children:
        tokens = [int(tree.tokens[c]) for c in siblings]
        assert len(tokens) == len(set(tokens))


def test_sampled_expansion_keeps_every_draw_within_budget():
    config = TreeConfig(total_tokens=10, depth=4, top_k=3, min_prob=0.0)
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        tree = expand_tree(_uniformish, 5, torch.randn(20), config, 1.0, gen)
        assert 1 < tree.size <= 11
        assert tree.draft_probs is not None
        # Each expanded node drew the same number of children at its level.
        per_level: dict[int, set] = {}
        for node, kids in enumerate(tree.children):
            if kids:
                per_level.setdefault(int(tree.depths[node]), set()).add(len(kids))
        assert all(len(counts) == 1 for counts in per_level.values())


def test_confidence_floor_prunes_unlikely_nodes():
    flat = torch.zeros(20)  # every token has probability 1/20 < 0.1
    tree = expand_tree(_uniformish, 5, flat, TreeConfig(min_prob=0.1), 0.0)
    assert tree.size == 1
    peaked = torch.full((20,), -30.0)
    peaked[4] = 10.0
    tree = expand_tree(_uniformish, 5, peaked, TreeConfig(min_prob=0.1), 0.0)
    assert tree.tokens.tolist()[:2] == [5, 4]
