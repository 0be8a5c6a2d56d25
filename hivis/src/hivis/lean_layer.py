"""An inference-only forward of a Llama-style decoder layer (the drafter's; the target's
text model, :mod:`hivis.targets.lean`).

A drafter step runs one decoder layer on a handful of rows, so the Hugging Face module stack
(about a dozen module calls, separate q/k/v and gate/up projections) costs more than the
arithmetic. :class:`LeanDecoderLayer` does the same computation - RMSNorm, rotary attention
over the KV cache, gated SiLU MLP - from the layer's current weights with fused q/k/v and
gate/up projections, in plain tensor calls. The drafter builds it once per generation (the
fused projections are copies of the weights of that moment; the others are shared); a target
uses it unfused, on its own weight tensors. It exists only for layer kinds whose arithmetic it
reproduces (:func:`lean_layer_for` returns None otherwise and
the caller keeps the HF layer).
"""

from __future__ import annotations

import sys

import torch
from torch.nn import functional as F

# Layer classes whose forward is exactly: x + attn(norm1(x)); then + mlp(norm2(x)), with
# rotate-half rotary embeddings, no sliding window and a SiLU-gated MLP.
SUPPORTED_LAYERS = ("LlamaDecoderLayer", "Qwen2DecoderLayer")


def _bias(*linears) -> torch.Tensor | None:
    if all(lin.bias is None for lin in linears):
        return None
    return torch.cat(
        [
            lin.bias if lin.bias is not None else lin.weight.new_zeros(lin.out_features)
            for lin in linears
        ]
    ).detach()


def _projections(linears, fuse: bool) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """(weight, bias) pairs applying ``linears`` to one input: one concatenated pair (a copy
    of the weights) with ``fuse``, else the linears' own tensors (no copy)."""
    if fuse:
        return [(torch.cat([lin.weight for lin in linears]).detach(), _bias(*linears))]
    return [(lin.weight.detach(), _bias(lin)) for lin in linears]


def _project(x: torch.Tensor, projections, split: list[int]) -> tuple[torch.Tensor, ...]:
    """The outputs of the linears of ``projections`` on ``x`` [..., in] (sizes ``split``)."""
    outs = [F.linear(x, weight, bias) for weight, bias in projections]
    return outs[0].split(split, -1) if len(outs) == 1 else tuple(outs)


def rms_norm(x: torch.Tensor, norm: tuple[torch.Tensor, float]) -> torch.Tensor:
    """Llama's RMSNorm of x [..., H] with (weight [H], eps), computed in float32."""
    weight, eps = norm
    x32 = x.to(torch.float32)
    x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
    return weight * x32.to(x.dtype)


def norm_of(module) -> tuple[torch.Tensor, float]:
    """(weight, eps) of an HF RMSNorm module."""
    return module.weight.detach(), module.variance_epsilon


def lean_layer_for(layer, fuse: bool = True) -> LeanDecoderLayer | None:
    """A :class:`LeanDecoderLayer` of ``layer``, or None if its kind is not supported.
    ``fuse``: q/k/v and gate/up projections as one matrix product each, from copies of their
    weights (the drafter: one small layer); without it the layer's own weight tensors are
    used as they are (a target: no copy of its weights)."""
    if type(layer).__name__ not in SUPPORTED_LAYERS:
        return None
    attn, mlp = layer.self_attn, layer.mlp
    if getattr(attn, "sliding_window", None) is not None:
        return None
    if not isinstance(mlp.act_fn, torch.nn.SiLU) and type(mlp.act_fn).__name__ != "SiLUActivation":
        return None
    projections = (attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj)
    projections += (mlp.gate_proj, mlp.up_proj, mlp.down_proj)
    if any(type(p) is not torch.nn.Linear for p in projections):
        return None  # quantised or otherwise replaced projections run as their own modules
    return LeanDecoderLayer(layer, fuse)


class LeanDecoderLayer:
    """Same arithmetic as a supported HF decoder layer in eval mode (see module docstring)."""

    def __init__(self, layer, fuse: bool = True):
        attn, mlp = layer.self_attn, layer.mlp
        qkv = (attn.q_proj, attn.k_proj, attn.v_proj)
        self.qkv = _projections(qkv, fuse)
        self.qkv_split = [p.out_features for p in qkv]
        self.o_weight, self.o_bias = attn.o_proj.weight.detach(), _bias(attn.o_proj)
        self.gate_up = _projections((mlp.gate_proj, mlp.up_proj), fuse)
        self.gate_up_split = [mlp.gate_proj.out_features, mlp.up_proj.out_features]
        self.down_weight, self.down_bias = mlp.down_proj.weight.detach(), _bias(mlp.down_proj)
        self.norm1 = norm_of(layer.input_layernorm)
        self.norm2 = norm_of(layer.post_attention_layernorm)
        self.head_dim, self.scaling, self.layer_idx = attn.head_dim, attn.scaling, attn.layer_idx
        self.rotate = sys.modules[type(attn).__module__].apply_rotary_pos_emb

    def __call__(self, hidden, attention_mask, position_embeddings, cache) -> torch.Tensor:
        """hidden [b, s, H]; attention_mask None (causal) or additive [b, 1, s, past + s];
        position_embeddings (cos, sin) [b, s, head_dim]; cache: a KV cache holding this
        layer's ``layer_idx``. Returns [b, s, H]."""
        b, s, _ = hidden.shape
        q, k, v = (
            t.view(b, s, -1, self.head_dim).transpose(1, 2)
            for t in _project(rms_norm(hidden, self.norm1), self.qkv, self.qkv_split)
        )
        q, k = self.rotate(q, k, *position_embeddings)
        k, v = cache.update(k, v, self.layer_idx)
        attn = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=attention_mask,
            is_causal=attention_mask is None and s > 1,
            scale=self.scaling,
            enable_gqa=q.shape[1] != k.shape[1],
        )
        attn = attn.transpose(1, 2).reshape(b, s, -1)
        hidden = hidden + F.linear(attn, self.o_weight, self.o_bias)
        gate, up = _project(rms_norm(hidden, self.norm2), self.gate_up, self.gate_up_split)
        return hidden + F.linear(F.silu(gate) * up, self.down_weight, self.down_bias)
