"""Training losses and the stage-2 selection mask, against hand-computed values."""

import math

import torch

from hivis.train.losses import (
    feature_regression,
    masked_mean,
    next_step_selection,
    soft_cross_entropy,
    top1_accuracy,
    top_k_hits,
    topk_distribution_loss,
)


def test_selection_mask_equals_the_hand_computed_case():
    # One sequence of 6 positions; position 5 is not supervised at step 0.
    selected0 = torch.tensor([[1, 1, 1, 1, 1, 0]], dtype=torch.bool)
    hits0 = torch.tensor([[1, 0, 1, 1, 1, 1]], dtype=torch.bool)
    hits1 = torch.tensor([[1, 1, 1, 0, 1, 1]], dtype=torch.bool)
    selected1 = next_step_selection(selected0, hits0)
    # Trajectory started at i continues at i+1: alive where selected0 & hits0, shifted right.
    assert selected1.tolist() == [[False, True, False, True, True, True]]
    selected2 = next_step_selection(selected1, hits1)
    # From step 1: positions 1 (hit), 3 (miss), 4 (hit), 5 (hit but shifted out).
    assert selected2.tolist() == [[False, False, True, False, False, True]]


def test_top_k_hits():
    target = torch.tensor([[[0.0, 5.0, 1.0, 2.0], [9.0, 0.0, 0.0, 0.0]]])
    drafter = torch.tensor([[[3.0, 2.0, 1.0, 0.0], [0.0, 1.0, 2.0, 3.0]]])
    assert top_k_hits(drafter, target, k=2).tolist() == [[True, False]]
    assert top_k_hits(drafter, target, k=4).tolist() == [[True, True]]


def test_soft_cross_entropy_matches_the_definition():
    target = torch.tensor([[[math.log(0.7), math.log(0.2), math.log(0.1)]]])
    drafter = torch.tensor([[[math.log(0.5), math.log(0.25), math.log(0.25)]]])
    mask = torch.ones(1, 1)
    expected = -(0.7 * math.log(0.5) + 0.2 * math.log(0.25) + 0.1 * math.log(0.25))
    assert abs(soft_cross_entropy(drafter, target, mask).item() - expected) < 1e-6
    expected_top2 = -(0.7 * math.log(0.5) + 0.2 * math.log(0.25))
    assert abs(topk_distribution_loss(drafter, target, mask, k=2).item() - expected_top2) < 1e-6


def test_losses_ignore_unsupervised_positions_and_empty_masks():
    torch.manual_seed(0)
    drafter, target = torch.randn(2, 1, 3, 7)
    mask = torch.tensor([[1.0, 0.0, 1.0]])
    full = soft_cross_entropy(drafter, target, mask)
    changed = drafter.clone()
    changed[0, 1] += 100.0
    assert torch.equal(full, soft_cross_entropy(changed, target, mask))
    empty = torch.zeros(1, 3)
    assert soft_cross_entropy(drafter, target, empty).item() == 0.0
    assert masked_mean(torch.ones(1, 3), empty).item() == 0.0


def test_feature_regression_is_smooth_l1():
    predicted = torch.tensor([[[0.0, 0.0], [3.0, 0.5]]])
    target = torch.zeros(1, 2, 2)
    mask = torch.tensor([[0.0, 1.0]])
    # SmoothL1 (beta 1): |x| - 0.5 for |x| >= 1, 0.5 x^2 otherwise; mean over 2 hidden units.
    expected = ((3.0 - 0.5) + 0.5 * 0.25) / 2
    assert abs(feature_regression(predicted, target, mask).item() - expected) < 1e-6


def test_top1_accuracy():
    target = torch.tensor([[[0.0, 1.0], [1.0, 0.0], [1.0, 0.0]]])
    drafter = torch.tensor([[[0.0, 1.0], [0.0, 1.0], [1.0, 0.0]]])
    assert abs(top1_accuracy(drafter, target, torch.ones(1, 3)).item() - 2 / 3) < 1e-6
