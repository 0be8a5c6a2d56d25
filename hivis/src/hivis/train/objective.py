"""The training objective of one batch: stage 1 (single step) and stage 2 (HiViS multi-step
self-feedback with dynamic data selection and step-dependent residual embeddings).

Stage 2 simulates drafting exactly. At step k the row of position j stands for the tree node
at depth k whose chain started after the committed row j-k: its input is token x_j fused with
the drafter's own step-(k-1) output at row j-1 (detached) and residual row k, and it attends to
what that node attends to at inference - the rows i <= j-k fed with the target's features
(step 0) and its own ancestors, the step-m rows j-k+m for m = 1..k. Earlier steps' keys and
values stay in a KV cache, so each step costs one pass over the rows.

Dynamic data selection: a row keeps training at step k only while its trajectory is alive -
the target's argmax was in the drafter's top ``select_top`` at every earlier step of it
(:func:`hivis.train.losses.next_step_selection`) - and only where the rows are contiguous.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from hivis.train.losses import (
    feature_regression,
    next_step_selection,
    soft_cross_entropy,
    top1_accuracy,
    top_k_hits,
    topk_distribution_loss,
)


@dataclass(frozen=True)
class LossWeights:
    """w_p: soft cross-entropy; w_v: SmoothL1 feature regression; w_topk: stage-2 top-K loss
    over the target's ``topk`` most likely tokens; ``select_top``: the top-k of the dynamic
    data selection; ``noise``: amplitude of the uniform noise on the target features."""

    w_p: float = 0.1
    w_v: float = 1.0
    w_topk: float = 0.1
    topk: int = 10
    select_top: int = 5
    noise: float = 0.1


@dataclass
class Batch:
    """Padded rows of a batch. input_ids, loss_mask, contiguous [b, S]; hidden_in, hidden_out,
    noise [b, S, H]; positions [R, b, S]. ``loss_mask`` is already False on padding; ``noise``
    is uniform in [-1, 1], drawn per record (so it does not depend on how a batch is split
    over processes)."""

    input_ids: torch.Tensor
    hidden_in: torch.Tensor
    hidden_out: torch.Tensor
    positions: torch.Tensor
    loss_mask: torch.Tensor
    contiguous: torch.Tensor
    noise: torch.Tensor


def collate(records, noise_seeds: list[int], dtype: torch.dtype = torch.float32) -> Batch:
    """Right-pad a list of :class:`~hivis.train.features.RecordFeatures` into a Batch;
    record i's noise comes from a generator seeded with ``noise_seeds[i]``."""
    length = max(int(r.input_ids.shape[0]) for r in records)
    b, h = len(records), int(records[0].hidden_in.shape[1])
    r_dims = int(records[0].positions.shape[0])
    out = Batch(
        input_ids=torch.zeros(b, length, dtype=torch.long),
        hidden_in=torch.zeros(b, length, h, dtype=dtype),
        hidden_out=torch.zeros(b, length, h, dtype=dtype),
        positions=torch.zeros(r_dims, b, length, dtype=torch.long),
        loss_mask=torch.zeros(b, length, dtype=torch.bool),
        contiguous=torch.zeros(b, length, dtype=torch.bool),
        noise=torch.zeros(b, length, h, dtype=dtype),
    )
    for i, r in enumerate(records):
        n = int(r.input_ids.shape[0])
        generator = torch.Generator().manual_seed(noise_seeds[i])
        out.noise[i, :n] = 2 * torch.rand(n, h, generator=generator, dtype=dtype) - 1
        out.input_ids[i, :n] = r.input_ids
        out.hidden_in[i, :n] = r.hidden_in
        out.hidden_out[i, :n] = r.hidden_out
        # Padding continues the positions so rotary embeddings stay finite and ordered.
        last = r.positions[:, -1:]
        out.positions[:, i, :n] = r.positions
        out.positions[:, i, n:] = last + torch.arange(1, length - n + 1)
        out.loss_mask[i, :n] = r.loss_mask
        out.contiguous[i, :n] = r.contiguous
    return out


def step_mask(length: int, step: int, dtype: torch.dtype, device=None) -> torch.Tensor:
    """Additive mask [1, 1, S, (step+1) S] for the step-``step`` rows (module docstring).

    Key block 0 holds the step-0 rows, block m the step-m rows; query j may see block 0 at
    i <= j - step and block m (1 <= m <= step) at j - step + m. Step 0 is the causal mask.
    """
    j = torch.arange(length, device=device)
    allowed = [j[None, :] <= (j[:, None] - step)]
    for m in range(1, step + 1):
        allowed.append(j[None, :] == (j[:, None] - step + m))
    allowed = torch.cat(allowed, dim=1) if step else j[None, :] <= j[:, None]
    mask = torch.zeros(allowed.shape, dtype=dtype, device=device)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask[None, None]


class DrafterObjective(nn.Module):
    """Wraps a drafter so one ``forward(batch)`` computes the whole multi-step loss (one
    forward per optimizer step, as DistributedDataParallel wants)."""

    def __init__(self, drafter: nn.Module, num_steps: int, weights: LossWeights) -> None:
        super().__init__()
        if num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")
        self.drafter = drafter
        self.num_steps = num_steps
        self.weights = weights

    def forward(self, batch: Batch):
        """Returns (loss scalar, metrics {name: float tensor}) for one batch."""
        from transformers.cache_utils import DynamicCache

        w = self.weights
        target_logits = self.drafter.logits(batch.hidden_out)
        features = batch.hidden_in + w.noise * batch.noise
        selected = batch.loss_mask
        cache = DynamicCache()
        total = batch.hidden_in.new_zeros(())
        metrics = {}
        length = batch.input_ids.shape[1]
        for k in range(self.num_steps):
            mask = step_mask(length, k, features.dtype, features.device)
            hidden = self.drafter(batch.input_ids, features, batch.positions, k, mask, cache)
            logits = self.drafter.logits(hidden)
            loss = w.w_v * feature_regression(hidden, batch.hidden_out, selected)
            loss = loss + w.w_p * soft_cross_entropy(logits, target_logits, selected)
            if self.num_steps > 1:
                loss = loss + w.w_topk * topk_distribution_loss(
                    logits, target_logits, selected, w.topk
                )
            total = total + loss
            metrics[f"loss_{k}"] = loss.detach()
            metrics[f"top1_{k}"] = top1_accuracy(logits.detach(), target_logits, selected)
            metrics[f"rows_{k}"] = selected.sum().to(loss.dtype)
            if k + 1 < self.num_steps:
                hits = top_k_hits(logits.detach(), target_logits, w.select_top)
                selected = next_step_selection(selected, hits) & batch.contiguous
                selected &= batch.loss_mask
                features = torch.zeros_like(hidden)
                features[:, 1:] = hidden[:, :-1].detach()
        return total, metrics
