"""An inference-only forward of a Llama-style decoder layer for the drafter.

A drafter step runs one decoder layer on a handful of rows, so the Hugging Face module stack
(about a dozen module calls, separate q/k/v and gate/up projections) costs more than the
arithmetic. :class:`LeanDecoderLayer` does the same computation - RMSNorm, rotary attention
over the KV cache, gated SiLU MLP - from the layer's current weights with fused q/k/v and
gate/up projections, in plain tensor calls. It is built once per generation (the fused
projections are copies of the weights of that moment; the others are shared) and only for
layer kinds whose arithmetic it reproduces (:func:`lean_layer_for` returns None otherwise and
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


def lean_layer_for(layer) -> LeanDecoderLayer | None:
    """A :class:`LeanDecoderLayer` copy of ``layer``, or None if its kind is not supported."""
    if type(layer).__name__ not in SUPPORTED_LAYERS:
        return None
    attn, mlp = layer.self_attn, layer.mlp
    if getattr(attn, "sliding_window", None) is not None:
        return None
    if not isinstance(mlp.act_fn, torch.nn.SiLU) and type(mlp.act_fn).__name__ != "SiLUActivation":
        return None
    return LeanDecoderLayer(layer)


class LeanDecoderLayer:
    """Same arithmetic as a supported HF decoder layer in eval mode (see module docstring)."""

    def __init__(self, layer):
        attn, mlp = layer.self_attn, layer.mlp
        projections = (attn.q_proj, attn.k_proj, attn.v_proj)
        self.qkv_weight = torch.cat([p.weight for p in projections]).detach()
        self.qkv_bias = _bias(*projections)
        self.qkv_split = [p.out_features for p in projections]
        self.o_weight, self.o_bias = attn.o_proj.weight.detach(), _bias(attn.o_proj)
        self.gate_up_weight = torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight]).detach()
        self.gate_up_bias = _bias(mlp.gate_proj, mlp.up_proj)
        self.down_weight, self.down_bias = mlp.down_proj.weight.detach(), _bias(mlp.down_proj)
        self.norm1 = (layer.input_layernorm.weight.detach(), layer.input_layernorm.variance_epsilon)
        self.norm2 = (
            layer.post_attention_layernorm.weight.detach(),
            layer.post_attention_layernorm.variance_epsilon,
        )
        self.head_dim, self.scaling, self.layer_idx = attn.head_dim, attn.scaling, attn.layer_idx
        self.rotate = sys.modules[type(attn).__module__].apply_rotary_pos_emb

    @staticmethod
    def _rms_norm(x: torch.Tensor, norm) -> torch.Tensor:
        weight, eps = norm
        x32 = x.to(torch.float32)
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
        return weight * x32.to(x.dtype)

    def __call__(self, hidden, attention_mask, position_embeddings, cache) -> torch.Tensor:
        """hidden [b, s, H]; attention_mask None (causal) or additive [b, 1, s, past + s];
        position_embeddings (cos, sin) [b, s, head_dim]; cache: the drafter's KV cache.
        Returns [b, s, H]."""
        b, s, _ = hidden.shape
        qkv = F.linear(self._rms_norm(hidden, self.norm1), self.qkv_weight, self.qkv_bias)
        q, k, v = (
            t.view(b, s, -1, self.head_dim).transpose(1, 2) for t in qkv.split(self.qkv_split, -1)
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
        gate, up = F.linear(
            self._rms_norm(hidden, self.norm2), self.gate_up_weight, self.gate_up_bias
        ).chunk(2, dim=-1)
        return hidden + F.linear(F.silu(gate) * up, self.down_weight, self.down_bias)
