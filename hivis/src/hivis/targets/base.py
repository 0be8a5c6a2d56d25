"""The one implementation of :class:`hivis.protocols.TargetModel`: Hugging Face VLMs.

The adapter never forks or patches model code: a tree is verified by calling the model's own
inner module (``model.model``) with a 4-D additive attention mask, explicit position ids (3-D
M-RoPE ids for Qwen2-VL / Qwen2.5-VL) and a ``DynamicCache`` that hivis owns; the LM head is
applied by hivis to the last-layer hidden states it also needs for the drafter. Nothing is
written into the user's model object. Decode steps and tree passes of the text models that
:mod:`hivis.targets.lean` serves run through its lean forward instead of the HF modules (the
same arithmetic on the same weights; ``lean=False`` keeps the HF modules everywhere).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.cache_utils import DynamicCache

from hivis.kv_cache import full_attention_cache, keep_rows
from hivis.targets.families import MROPE_FAMILIES, Family
from hivis.targets.kwargs import cache_kwargs
from hivis.targets.lean import LeanTextModel, lean_text_model_for


@dataclass(frozen=True)
class PreparedPrompt:
    """A tokenized prompt with its images.

    input_ids: [1, L] token ids, visual placeholders already expanded.
    vision_inputs: family-specific image tensors (pixel values, grids, sizes).
    visual_mask: [L] bool, True where the model substitutes image features.
    positions: [R, L] long target position ids, R = 3 for M-RoPE families else 1.
    next_position: position id of the first generated token.
    """

    input_ids: torch.Tensor
    vision_inputs: dict
    visual_mask: torch.Tensor
    positions: torch.Tensor
    next_position: int

    @property
    def length(self) -> int:
        return int(self.input_ids.shape[1])


def additive_tree_mask(
    ancestor_mask: torch.Tensor, prefix_len: int, dtype: torch.dtype
) -> torch.Tensor:
    """4-D additive mask for ``n`` new query tokens after ``prefix_len`` always-visible keys.

    ancestor_mask: [n, c] bool, True where query i may attend to key prefix_len + j (its
    ancestors and itself; c = n for a tree). Returns [1, 1, n, prefix_len + c]: 0 where
    attention is allowed (all of the prefix, and the ancestors), the dtype's most negative
    value elsewhere.
    """
    n, c = ancestor_mask.shape
    mask = torch.zeros((1, 1, n, prefix_len + c), dtype=dtype, device=ancestor_mask.device)
    mask[0, 0, :, prefix_len:].masked_fill_(~ancestor_mask, torch.finfo(dtype).min)
    return mask


class HFTarget:
    """A Hugging Face image-text-to-text model as a :class:`~hivis.protocols.TargetModel`.

    Built by :func:`hivis.targets.load_target`; ``preparer`` turns (images, prompt) into model
    inputs for the family (see :mod:`hivis.targets.inputs`). ``processor`` is None when the
    family's processor could not be built and hivis's fallback expansion is used. ``lean``:
    decode steps and tree passes through :mod:`hivis.targets.lean` where the text model is
    served (``self.lean`` is then not None).
    """

    def __init__(
        self,
        model,
        tokenizer,
        preparer,
        family: Family,
        processor=None,
        image_processor=None,
        lean: bool = True,
    ):
        attn = model.config._attn_implementation
        if attn not in ("eager", "sdpa"):
            raise ValueError(
                f"attention implementation {attn!r} cannot take a tree mask; load the model with "
                "attn_implementation='sdpa' or 'eager'"
            )
        device_map = getattr(model, "hf_device_map", None) or {}
        devices = sorted({str(d) for d in device_map.values()})
        if len(devices) > 1:
            raise ValueError(
                f"hivis needs the whole model on one device; its device_map spreads it over "
                f"{devices} (load it with device_map='cuda:0', 'cpu', or none)"
            )
        self.model = model
        self.tokenizer = tokenizer
        self.processor = processor
        self.image_processor = image_processor
        self.preparer = preparer
        self.family = family
        self.inner = model.model
        self.lm_head = model.get_output_embeddings()
        self.embed_tokens = model.get_input_embeddings()
        self.text_config = model.config.get_text_config(decoder=True)
        self.hidden_size = int(self.text_config.hidden_size)
        self.vocab_size = int(self.embed_tokens.num_embeddings)
        self.language_model = _language_model(self.inner)
        served = None if self.mrope else lean_text_model_for(self.language_model)
        self.lean: LeanTextModel | None = served if lean else None
        # The embedding, not the head: a dynamic-int8 target's head has no float weight.
        self.dtype = self.embed_tokens.weight.dtype
        self.device = self.embed_tokens.weight.device

    def with_lean(self, lean: bool) -> HFTarget:
        """The same model, tokenizer and inputs with the lean forward on or off (to compare
        the two paths; the model object is shared, not copied)."""
        return HFTarget(
            self.model,
            self.tokenizer,
            self.preparer,
            self.family,
            self.processor,
            self.image_processor,
            lean=lean,
        )

    @property
    def mrope(self) -> bool:
        return self.family in MROPE_FAMILIES

    def prepare(self, images: list, prompt: str) -> PreparedPrompt:
        """Tokenize ``prompt`` with ``images``; validation happens in the preparer."""
        return self.preparer(self, images, prompt)

    def new_cache(self) -> DynamicCache:
        """An empty KV cache of in-place growing full-attention layers."""
        return full_attention_cache(self.model.config)

    def native_positions(self, positions: torch.Tensor) -> torch.Tensor:
        """[R, n] positions -> the model's layout ([3, 1, n] for M-RoPE, [1, n] otherwise)."""
        return positions[:, None, :] if self.mrope else positions

    def prefill(
        self, prompt: PreparedPrompt, cache: DynamicCache
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the prompt; returns (logits [1, V] for the next token, hidden [1, L, H])."""
        out = self.inner(
            input_ids=prompt.input_ids.to(self.device),
            position_ids=self.native_positions(prompt.positions.to(self.device)),
            use_cache=True,
            **prompt.vision_inputs,
            **cache_kwargs(self.inner, cache),
        )
        hidden = out.last_hidden_state
        return self.lm_head(hidden[:, -1]), hidden

    def prefill_from(
        self, prompt: PreparedPrompt, start: int, cache: DynamicCache
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run prompt tokens ``start:`` on a ``cache`` that holds the prompt's first ``start``
        rows (see :mod:`hivis.prefix`). Every image must lie before ``start``: the rest is
        text, run through the text model with the prompt's own positions. Returns (logits
        ``[1, V]`` for the next token, hidden ``[1, L - start, H]``)."""
        if cache.get_seq_length() != start or not 0 < start < prompt.length:
            raise ValueError(
                f"prefill_from needs 0 < start < {prompt.length} and a cache of start rows; "
                f"got start {start}, cache of {cache.get_seq_length()}"
            )
        if bool(prompt.visual_mask[start:].any()):
            raise ValueError("prefill_from: an image lies after the reused prefix")
        out = self.language_model(
            inputs_embeds=self.embed_tokens(prompt.input_ids[:, start:].to(self.device)),
            position_ids=self.native_positions(prompt.positions[:, start:].to(self.device)),
            use_cache=True,
            **cache_kwargs(self.language_model, cache),
        )
        hidden = out.last_hidden_state
        return self.lm_head(hidden[:, -1]), hidden

    def forward_tree(
        self,
        tokens: torch.Tensor,
        depths: torch.Tensor,
        ancestor_mask: torch.Tensor,
        root_position: int,
        cache: DynamicCache,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Score a draft tree in one forward pass, appending its keys/values to ``cache``.

        tokens: [n] token ids (node 0 is the root, the last committed token).
        depths: [n] long depth of each node (root 0); position = root_position + depth.
        ancestor_mask: [n, n] bool, node i attends to node j iff j is i or an ancestor of i.
        Returns (logits [n, V], hidden [n, H]).
        """
        prefix_len = cache.get_seq_length()
        tokens, depths = tokens.to(self.device), depths.to(self.device)
        ancestor_mask = ancestor_mask.to(self.device)
        positions = (depths + root_position)[None, :]
        # A lone root needs no mask: plain causal attention over the cache is the same thing.
        n = ancestor_mask.shape[0]
        mask = None if n == 1 else additive_tree_mask(ancestor_mask, prefix_len, self.dtype)
        hidden = self._text_rows(tokens[None, :], positions, mask, cache)[0]
        return self.lm_head(hidden), hidden

    def decode_one(self, token: int, position: int, cache: DynamicCache) -> torch.Tensor:
        """Plain one-token decode step (the autoregressive baseline). Returns logits [V]."""
        ids = torch.tensor([[token]], device=self.device)
        positions = torch.tensor([[position]], device=self.device)
        # [1, H] rows, not [H]: a dynamic-int8 head takes 2-D inputs only.
        return self.lm_head(self._text_rows(ids, positions, None, cache)[0, -1:])[0]

    def _text_rows(
        self, ids: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor | None, cache
    ) -> torch.Tensor:
        """The text model on new rows after ``cache`` (which it extends): ids [1, n], positions
        [1, n], mask None (causal) or additive [1, 1, n, past + n]. Through the lean forward
        where served, else the HF text model. Returns last-layer hidden states [1, n, H]."""
        embeds = self.embed_tokens(ids)
        if self.lean is not None:
            return self.lean(embeds, positions, mask, cache)
        if self.mrope:
            positions = positions.expand(3, -1)
        out = self.language_model(
            inputs_embeds=embeds,
            attention_mask=mask,
            position_ids=self.native_positions(positions),
            use_cache=True,
            **cache_kwargs(self.language_model, cache),
        )
        return out.last_hidden_state

    def keep_path(self, cache: DynamicCache, prefix_len: int, kept: torch.Tensor) -> None:
        """Keep cache rows ``prefix_len + kept`` (in order) after the first ``prefix_len``.

        kept: [m] long indices of accepted tree nodes (root first). Rows are compacted in
        place and the cache is cut to ``prefix_len + m``; nothing is re-allocated.
        """
        keep_rows(cache, prefix_len, kept)


def _language_model(inner):
    for name in ("language_model", "text_model"):
        module = getattr(inner, name, None)
        if module is not None:
            return module
    raise ValueError(f"cannot find the text model inside {type(inner).__name__}")
