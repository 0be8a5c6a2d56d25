"""The target's decode step and tree pass without the Hugging Face module stack.

After the prefill, every target call of a generation runs the text model on 1 (a decode step)
to ~25 (a tree pass) rows. For a small text model the Hugging Face stack around the arithmetic
- the model forward (mask construction, output dataclasses), a dozen module calls per layer,
the kwargs plumbing - costs about as much as the arithmetic itself. :class:`LeanTextModel`
runs the same computation in plain tensor calls: the model's own rotary module for cos/sin,
then per layer :class:`hivis.lean_layer.LeanDecoderLayer` (unfused: it reads the layer's own
weight tensors, nothing is copied), then the final RMSNorm. The attention mask is what hivis
passes anyway: None for one row (it attends to the whole cache), the additive tree mask
otherwise.

Served: text models whose forward is exactly embeddings -> rotary -> layers -> norm with
layers that ``lean_layer_for`` supports (Llama, Qwen2 without sliding windows): the text models
of LLaVA, LLaVA-NeXT, Idefics3 and SmolVLM. Not served (:func:`lean_text_model_for` returns
None and the adapter keeps the HF modules): Qwen2-VL / Qwen2.5-VL (M-RoPE text models) and
anything else. Tested equal to the HF forward (logits within float tolerance, greedy tokens
identical) on every family it serves.
"""

from __future__ import annotations

import torch

from hivis.lean_layer import LeanDecoderLayer, lean_layer_for, norm_of, rms_norm

SUPPORTED_TEXT_MODELS = ("LlamaModel", "Qwen2Model")


class LeanTextModel:
    """An inference-only forward of a supported HF text model (module docstring)."""

    def __init__(self, language_model, layers: list[LeanDecoderLayer]):
        self.rotary = language_model.rotary_emb
        self.layers = layers
        self.norm = norm_of(language_model.norm)

    def __call__(
        self,
        embeds: torch.Tensor,
        positions: torch.Tensor,
        mask: torch.Tensor | None,
        cache,
    ) -> torch.Tensor:
        """embeds [1, n, H] input embeddings; positions [1, n] long; mask None (n = 1: attend
        to every cached row) or additive [1, 1, n, past + n]; cache: the target's KV cache
        (each layer appends n rows). Returns the last-layer hidden states [1, n, H] (final
        norm applied), as ``language_model(...).last_hidden_state``."""
        rope = self.rotary(embeds, positions)
        hidden = embeds
        for layer in self.layers:
            hidden = layer(hidden, mask, rope, cache)
        return rms_norm(hidden, self.norm)


def lean_text_model_for(language_model) -> LeanTextModel | None:
    """A :class:`LeanTextModel` over ``language_model``'s own weights, or None when its kind
    is not served (module docstring)."""
    if type(language_model).__name__ not in SUPPORTED_TEXT_MODELS:
        return None
    config = language_model.config
    if getattr(config, "use_sliding_window", False) or len(language_model.layers) != int(
        config.num_hidden_layers
    ):
        return None
    layers = [lean_layer_for(layer, fuse=False) for layer in language_model.layers]
    if any(layer is None for layer in layers):
        return None
    return LeanTextModel(language_model, layers)
