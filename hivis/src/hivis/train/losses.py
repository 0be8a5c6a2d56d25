"""Drafter training losses and the stage-2 dynamic data selection.

Notation, for one batch of text sequences (visual positions already removed):

- ``f[b, i]``: the target's last-layer hidden state at text position i (it predicts token i+1);
- the drafter's output ``h[b, i]`` at position i is trained to equal ``f[b, i+1]`` and its logits
  ``head(h[b, i])`` to match the target's ``head(f[b, i+1])`` (the distribution of token i+2);
- ``mask[b, i]`` is 1 where that prediction is supervised (its token lies in an assistant span).

All losses are means over supervised positions; a batch without one gives 0 (with a gradient
path) rather than NaN.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of values [B, S] over mask [B, S] (bool or 0/1); 0 if the mask is empty."""
    weights = mask.to(values.dtype)
    return (values * weights).sum() / weights.sum().clamp_min(1.0)


def soft_cross_entropy(
    drafter_logits: torch.Tensor, target_logits: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """``-sum_x q(x) log p(x)`` with q = softmax(target), p = softmax(drafter).

    drafter_logits, target_logits [B, S, V]; mask [B, S]. Returns a scalar.
    """
    q = torch.softmax(target_logits.float(), dim=-1)
    log_p = torch.log_softmax(drafter_logits.float(), dim=-1)
    return masked_mean(-(q * log_p).sum(-1), mask)


def topk_distribution_loss(
    drafter_logits: torch.Tensor, target_logits: torch.Tensor, mask: torch.Tensor, k: int = 10
) -> torch.Tensor:
    """``-sum_{x in top-k(q)} q(x) log p(x)``: the soft cross-entropy restricted to the target's
    k most likely tokens, which are the ones a draft tree can propose and have accepted.

    drafter_logits, target_logits [B, S, V]; mask [B, S]. Returns a scalar.
    """
    q = torch.softmax(target_logits.float(), dim=-1)
    top_q, top_idx = q.topk(min(k, q.shape[-1]), dim=-1)
    log_p = torch.log_softmax(drafter_logits.float(), dim=-1).gather(-1, top_idx)
    return masked_mean(-(top_q * log_p).sum(-1), mask)


def feature_regression(
    predicted: torch.Tensor, target: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """SmoothL1 between drafter features and the target's next hidden states.

    predicted, target [B, S, H]; mask [B, S]. Mean over hidden units, then over positions.
    """
    per_position = F.smooth_l1_loss(predicted.float(), target.float(), reduction="none").mean(-1)
    return masked_mean(per_position, mask)


def top_k_hits(
    drafter_logits: torch.Tensor, target_logits: torch.Tensor, k: int = 5
) -> torch.Tensor:
    """Whether the target's argmax is among the drafter's top-k tokens: [B, S] bool.

    drafter_logits, target_logits [B, S, V].
    """
    target_best = target_logits.argmax(-1, keepdim=True)
    drafter_top = drafter_logits.topk(min(k, drafter_logits.shape[-1]), dim=-1).indices
    return (drafter_top == target_best).any(-1)


def next_step_selection(selected: torch.Tensor, hits: torch.Tensor) -> torch.Tensor:
    """Dynamic data selection: the positions that keep training at the next drafting step.

    At step k the input of position i continues the draft made at step k-1 from position i-1,
    so a trajectory moves one position right per step. It stays selected only while the
    target's argmax was in the drafter's top-k at every earlier step along it:
    ``selected_k[:, i] = selected_{k-1}[:, i-1] and hits_{k-1}[:, i-1]``, and position 0 drops.

    selected, hits [B, S] bool. Returns [B, S] bool.
    """
    alive = selected.bool() & hits.bool()
    out = torch.zeros_like(alive)
    out[:, 1:] = alive[:, :-1]
    return out


def top1_accuracy(
    drafter_logits: torch.Tensor, target_logits: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Fraction of supervised positions where drafter and target argmax agree (a scalar)."""
    agree = (drafter_logits.argmax(-1) == target_logits.argmax(-1)).float()
    return masked_mean(agree, mask)
