"""Start a deeper target from a trained one (``world train-target --init-from DIR``).

Training a 24-layer target from scratch costs ~5x the shipped 8-layer recipe per step
(BENCHMARKS.md). Growing skips most of it: the new model starts out computing exactly what the
source computes, and training only has to teach it what is new (the long-form answers).

- Vision tower, projector, final norm: copied (same shapes required).
- Token rows (embedding and LM head): the tokenizer must extend the source's
  (``world tokenizer --extend SOURCE``: every source token keeps its id); rows of source tokens
  are copied, a new token's embedding row is the mean of the rows of the source tokens that
  spell it, and its LM-head row is zero (it starts with logit 0).
- Text layers (block expansion): with ``r = new_layers / source_layers`` (an integer), source
  layer ``i`` becomes layer ``r * i + r - 1``; the ``r - 1`` layers before it are copies of it
  whose output projections (attention ``o_proj``, MLP ``down_proj``) are zero, so they add
  nothing to the residual stream until training moves them. The source's look-up layer
  ``S // 2 - 1`` lands on the new default ``N // 2 - 1``.
- Training (LLaMA-Pro style): the source's own layers, its projector and the embedding rows
  of its tokens stay frozen (what the source layers read is unchanged); the new layers, the
  new tokens' embedding rows, the LM head and the final norm learn. Measured: training every
  layer at once undid the source's short answers (train exact match 0.70 -> 0.22 in 9 steps
  at lr 2e-4) while the loss of the new long-form answers was large.
"""

from __future__ import annotations

from pathlib import Path

import torch

ZEROED = ("self_attn.o_proj.weight", "mlp.down_proj.weight")


def layer_sources(source_layers: int, new_layers: int) -> list[tuple[int, bool]]:
    """For each new text layer: (source layer copied, whether it is the source layer itself;
    the others start as identities)."""
    if new_layers % source_layers:
        raise ValueError(
            f"--text-layers {new_layers} must be a multiple of the source's {source_layers} "
            f"text layers to grow it"
        )
    ratio = new_layers // source_layers
    return [(k // ratio, k % ratio == ratio - 1) for k in range(new_layers)]


def load_source(source_dir: Path):
    """(source model, its tokenizer) of a saved target directory."""
    from transformers import AutoTokenizer, LlavaForConditionalGeneration

    source_dir = Path(source_dir)
    if not (source_dir / "config.json").is_file():
        raise FileNotFoundError(f"--init-from {source_dir}: no saved target there (config.json)")
    model = LlavaForConditionalGeneration.from_pretrained(source_dir, dtype=torch.float32)
    return model.eval(), AutoTokenizer.from_pretrained(source_dir)


def check_growable(model, tokenizer, source, source_tokenizer) -> None:
    """Raise ValueError (before any training) unless ``model`` can start from ``source``."""
    new_text, old_text = model.config.text_config, source.config.text_config
    for name in ("hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads"):
        if getattr(new_text, name) != getattr(old_text, name):
            raise ValueError(
                f"cannot grow: text {name} is {getattr(new_text, name)} here and "
                f"{getattr(old_text, name)} in the source (use the source's)"
            )
    shape = ("hidden_size", "intermediate_size", "num_hidden_layers", "image_size", "patch_size")
    new_vision, old_vision = model.config.vision_config, source.config.vision_config
    if any(getattr(new_vision, name) != getattr(old_vision, name) for name in shape):
        raise ValueError("cannot grow: the vision tower's shape differs from the source's")
    layer_sources(old_text.num_hidden_layers, new_text.num_hidden_layers)
    vocab = tokenizer.get_vocab()
    moved = [t for t, i in source_tokenizer.get_vocab().items() if vocab.get(t) != i]
    if moved:
        raise ValueError(
            f"cannot grow: the tokenizer does not extend the source's ({len(moved)} source tokens "
            f"missing or renumbered, e.g. {moved[0]!r}); make it with `world tokenizer "
            f"--long-form --extend SOURCE_DIR`"
        )


@torch.no_grad()
def grow_target(model, tokenizer, source_dir: Path) -> None:
    """Overwrite ``model``'s weights (built for ``tokenizer``) with the source's, grown as the
    module docstring says."""
    source, source_tokenizer = load_source(source_dir)
    check_growable(model, tokenizer, source, source_tokenizer)
    inner, old = model.model, source.model
    inner.vision_tower.load_state_dict(old.vision_tower.state_dict())
    inner.multi_modal_projector.load_state_dict(old.multi_modal_projector.state_dict())
    inner.multi_modal_projector.requires_grad_(False)
    inner.language_model.norm.load_state_dict(old.language_model.norm.state_dict())
    _grow_token_rows(model, source, tokenizer, source_tokenizer)
    old_layers = old.language_model.layers
    sources = layer_sources(len(old_layers), len(inner.language_model.layers))
    for layer, (index, itself) in zip(inner.language_model.layers, sources, strict=True):
        layer.load_state_dict(old_layers[index].state_dict())
        layer.requires_grad_(not itself)
        if not itself:
            for name in ZEROED:
                layer.get_parameter(name).zero_()


def _grow_token_rows(model, source, tokenizer, source_tokenizer) -> None:
    """Embedding and LM-head rows: copied for source tokens; a new token's embedding is the
    mean of its spelling's rows under the source tokenizer, its LM-head row zero."""
    embed, old_embed = model.get_input_embeddings().weight, source.get_input_embeddings().weight
    head, old_head = model.lm_head.weight, source.lm_head.weight
    known = old_embed.shape[0]
    embed[:known] = old_embed
    embed.register_hook(lambda grad: torch.cat([torch.zeros_like(grad[:known]), grad[known:]]))
    head[:known] = old_head
    head[known:] = 0.0
    for token, index in tokenizer.get_vocab().items():
        if index >= known:
            text = tokenizer.convert_tokens_to_string([token])
            pieces = source_tokenizer(text, add_special_tokens=False)["input_ids"]
            embed[index] = old_embed[pieces].mean(dim=0)
