"""The auxiliary heads of the world target's training (not part of the saved target).

Linear heads on the projected visual tokens predict, for each patch, the colour, shape, size and
image region of the object it holds (or none) and how many objects share its colour and its
shape; from the class token, the scene's counts (all objects, per colour, per shape) and the
facts about its uniquely named objects (``scenes.scene_facts``). With word-tied heads the
colour, shape and size heads score a patch by its cosine with the text embeddings of the
class words. See ``train`` for how the losses are weighted and scheduled.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from hivis.world.data.scenes import (
    ALL_PATCH_LABELS,
    COLOURS,
    COUNT_KEYS,
    FACT_SLOTS,
    OBJECT_COUNT_LABELS,
    PATCH_LABELS,
    SHAPES,
    SIZES,
    patch_labels,
    scene_counts,
    scene_facts,
)
from hivis.world.target.model import TargetConfig

COUNT_CLASSES = 9  # 0..8 objects (WorldConfig allows at most 8)


class AuxHead(torch.nn.Module):
    """Linear heads on the projected visual tokens ``[B, N, hidden]``.

    Per patch (the last ``num_patches`` tokens): logits ``[B, num_patches, classes]`` for each
    key of PATCH_LABELS and OBJECT_COUNT_LABELS. From the class token (the first token) when
    the target keeps it, else from the mean of the patch tokens: ``"counts"``
    ``[B, len(COUNT_KEYS), COUNT_CLASSES]`` and for each key of FACT_SLOTS
    ``[B, slots, classes]``.
    """

    def __init__(
        self,
        hidden: int,
        num_patches: int,
        embeddings: torch.nn.Embedding | None = None,
        word_ids: dict[str, list[int]] | None = None,
    ) -> None:
        super().__init__()
        self.num_patches = num_patches
        self.patch = torch.nn.Linear(hidden, sum(PATCH_LABELS.values()))
        self.counts = torch.nn.Linear(hidden, len(COUNT_KEYS) * COUNT_CLASSES)
        # Created last, so the heads above start from the same random draws with or without
        # the optional targets (a run without them is the same run as before they existed).
        self.object_counts = torch.nn.Linear(hidden, sum(OBJECT_COUNT_LABELS.values()))
        self.facts = torch.nn.Linear(hidden, sum(n * c for n, c in FACT_SLOTS.values()))
        self.word_ids = word_ids or {}
        # A list, so the target's embedding is neither a submodule nor part of the state dict.
        self._embeddings = [embeddings]
        if self.word_ids:
            if embeddings is None:
                raise ValueError("word-tied heads need the target's input embeddings")
            self.word_scale = torch.nn.Parameter(torch.tensor(10.0))

    def _tie_to_words(self, key: str, logits: torch.Tensor, patches: torch.Tensor):
        """Replace the logits of classes 1.. of ``key`` (class 0, no object, keeps the
        Linear's) by ``word_scale`` x the cosine between each patch token and the text
        embedding of the class's word (" red", " circle", ...). The projected visual tokens
        then point along the words' embeddings, which both move: "attend to the red patches"
        becomes one similarity match for every colour instead of a pairing learnt per colour.
        logits ``[B, P, classes]``, patches ``[B, P, hidden]``."""
        words = self._embeddings[0].weight[self.word_ids[key]]  # [classes - 1, hidden]
        cosine = F.normalize(patches, dim=-1) @ F.normalize(words, dim=-1).T
        return torch.cat([logits[..., :1], self.word_scale * cosine], dim=-1)

    def forward(self, visual: torch.Tensor) -> dict[str, torch.Tensor]:
        patches = visual[:, -self.num_patches :]
        has_class_token = visual.shape[1] > self.num_patches
        summary = visual[:, 0] if has_class_token else patches.mean(1)
        parts = self.patch(patches).split(list(PATCH_LABELS.values()), -1)
        parts += self.object_counts(patches).split(list(OBJECT_COUNT_LABELS.values()), -1)
        out = dict(zip(ALL_PATCH_LABELS, parts, strict=True))
        for key in self.word_ids:
            out[key] = self._tie_to_words(key, out[key], patches)
        out["counts"] = self.counts(summary).unflatten(-1, (len(COUNT_KEYS), COUNT_CLASSES))
        facts = self.facts(summary).split([n * c for n, c in FACT_SLOTS.values()], -1)
        for (key, shape), logits in zip(FACT_SLOTS.items(), facts, strict=True):
            out[key] = logits.unflatten(-1, shape)
        return out


TIED_WORDS = {"colour": COLOURS, "shape": SHAPES, "size": SIZES}


def attribute_word_ids(tokenizer) -> dict[str, list[int]]:
    """For each key of TIED_WORDS, the token id of each class's word with its leading space
    (" red", " circle", " small"), in class order; each must be one token."""
    ids = {}
    for key, values in TIED_WORDS.items():
        ids[key] = []
        for value in values:
            tokens = tokenizer(" " + value.value, add_special_tokens=False)["input_ids"]
            if len(tokens) != 1:
                raise ValueError(f"word {value.value!r} is {len(tokens)} tokens, need one")
            ids[key].append(tokens[0])
    return ids


def aux_head_for(target: TargetConfig, model=None, tokenizer=None) -> AuxHead:
    """The run's auxiliary heads; given the model and tokenizer, the colour, shape and size
    heads are tied to the words' text embeddings (``TargetTrainConfig.word_tied_heads``)."""
    if model is None:
        return AuxHead(target.text_hidden, target.num_patches)
    return AuxHead(
        target.text_hidden,
        target.num_patches,
        model.get_input_embeddings(),
        attribute_word_ids(tokenizer),
    )


def aux_labels(samples, patch_size: int) -> dict[str, torch.Tensor]:
    """Per scene of ``samples``: every key of ALL_PATCH_LABELS ``[B, num_patches]``, the scene
    counts ``"counts"`` ``[B, len(COUNT_KEYS)]`` and each kind of fact ``[B, slots]``."""
    labels = [patch_labels(s.scene, patch_size) for s in samples]
    aux = {
        k: torch.from_numpy(np.stack([lab[k].reshape(-1) for lab in labels]))
        for k in ALL_PATCH_LABELS
    }
    aux["counts"] = torch.from_numpy(np.stack([scene_counts(s.scene) for s in samples]))
    facts = [scene_facts(s.scene) for s in samples]
    for key in FACT_SLOTS:
        aux[key] = torch.from_numpy(np.stack([f[key] for f in facts]))
    return aux


def visual_tokens(model, pixel_values: torch.Tensor) -> torch.Tensor:
    """Projected visual tokens ``[B, num_visual, text_hidden]`` (what the text model reads)."""
    out = model.model.get_image_features(
        pixel_values=pixel_values,
        vision_feature_layer=model.config.vision_feature_layer,
        vision_feature_select_strategy=model.config.vision_feature_select_strategy,
    )
    return torch.stack(list(out.pooler_output))


def aux_losses(
    preds: dict[str, torch.Tensor],
    aux: dict[str, torch.Tensor],
    facts: bool = False,
    object_counts: bool = False,
) -> torch.Tensor:
    """Sum over the keys of PATCH_LABELS of the per-patch cross-entropy averaged over all
    patches plus that averaged over the patches that hold an object (a few of hundreds: without
    the second term "no object" would dominate), plus the cross-entropies of the scene counts
    (``aux["counts"]`` ``[B, len(COUNT_KEYS)]``) and, with ``facts``, of each kind of fact
    (``[B, slots]``); with ``object_counts`` the patch terms include OBJECT_COUNT_LABELS."""
    occupied = aux["colour"].flatten() > 0
    total = F.cross_entropy(preds["counts"].flatten(0, 1), aux["counts"].flatten())
    for key in FACT_SLOTS if facts else ():
        total = total + F.cross_entropy(preds[key].flatten(0, 1), aux[key].flatten())
    for key in (*PATCH_LABELS, *(OBJECT_COUNT_LABELS if object_counts else ())):
        per_patch = F.cross_entropy(preds[key].flatten(0, 1), aux[key].flatten(), reduction="none")
        total = total + per_patch.mean() + per_patch[occupied].sum() / occupied.sum().clamp(min=1)
    return total


def head_of_run(cfg, model, tokenizer) -> AuxHead:
    """The auxiliary heads of a train-target run (``cfg``: a
    :class:`~hivis.world.target.config.TargetTrainConfig`); word-tied heads need the run's
    model and tokenizer."""
    if cfg.word_tied_heads:
        return aux_head_for(cfg.target, model, tokenizer)
    return aux_head_for(cfg.target)
