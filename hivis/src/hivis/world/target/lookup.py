"""Look-up supervision: teach one attention head of the text model where to look.

"How many red objects?" is answered by looking at the red objects' visual tokens, whose
vision features already say how many objects share their colour (the auxiliary heads of
``train`` teach that). The missing skill in the CPU budget was the question-conditioned look-up
itself: the text model never learnt to put its attention on the named objects. This loss gives
that skill a direct signal. For every answer position t of a question with referents (the
objects it asks about, ``Task.referents``; in a long-form answer, which goes through the
objects in turn, the objects of the piece of the answer - an object's sentences, a count,
a relation - that position t's next token belongs to, ``Task.answer_referents``), head ``h``
of text layer ``l`` should put its attention mass on the referents' visual tokens:

    loss = mean over supervised (b, t) of  -log( sum_{s in referents(b, t)} A[b, h, t, s] )

with ``A = softmax(q k^T / sqrt(d))`` under the batch's own attention mask and RoPE applied
as the layer applies it. Questions with no referent (nothing of the asked colour is there)
are not supervised. The head's queries and keys are captured by forward hooks on the layer's
``q_proj`` and ``k_proj`` (removed on exit), so the model is untouched and the rest of its
forward runs as usual; only the supervised queries are scored, a few hundred per batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

from hivis.world.data.scenes import Scene, cell_of
from hivis.world.data.tasks import Task, TaskType


def referent_tokens(
    scene: Scene,
    tasks: list[Task],
    patch_size: int,
    class_token: bool,
    count_all_on_class_token: bool = False,
) -> list[tuple[int, ...]]:
    """Per task, the indices among the image's visual tokens (class token first when kept,
    then the patches row-major) of the patches holding its referents.

    With ``count_all_on_class_token`` (and the class token kept), "how many objects?" looks at
    the class token instead of every object: the total is a property of the whole scene, which
    the vision tower is trained to write into the class token, while no single object patch
    holds it (the head's average over five object patches does not say "five")."""
    if count_all_on_class_token and not class_token:
        raise ValueError("count_all_on_class_token needs the class token among the visual tokens")
    tokens = []
    for task in tasks:
        if count_all_on_class_token and task.task_type is TaskType.COUNT_ALL:
            tokens.append((0,))
            continue
        tokens.append(_object_tokens(scene, task.referents, patch_size, class_token))
    return tokens


def answer_span_tokens(
    scene: Scene, tasks: list[Task], patch_size: int, class_token: bool
) -> list[tuple[tuple[int, int, tuple[int, ...]], ...]]:
    """Per task, its ``answer_referents`` spans with the objects replaced by the indices of
    their visual tokens (as in ``referent_tokens``): answer characters ``[start, end)`` should
    look there. Empty for answers about no object in particular."""
    return [
        tuple(
            (start, end, _object_tokens(scene, objects, patch_size, class_token))
            for start, end, objects in task.answer_referents
        )
        for task in tasks
    ]


def _object_tokens(
    scene: Scene, objects: tuple[int, ...], patch_size: int, class_token: bool
) -> tuple[int, ...]:
    """Indices among the visual tokens of the patches holding ``scene.objects[i]`` for each i
    of ``objects``."""
    grid = scene.image_size // patch_size
    cells = [cell_of(scene.objects[i], patch_size) for i in objects]
    return tuple(int(class_token) + row * grid + col for row, col in cells)


def text_layers(model) -> torch.nn.ModuleList:
    return model.model.language_model.layers


@contextmanager
def captured_query_key(model, layer: int) -> Iterator[dict[str, torch.Tensor]]:
    """Within the block, the returned dict receives ``"q"`` and ``"k"``: the outputs
    ``[B, T, heads * head_dim]`` of text layer ``layer``'s q_proj and k_proj (before RoPE)
    of each forward."""
    layers = text_layers(model)
    if not 0 <= layer < len(layers):
        raise ValueError(f"look-up layer {layer} out of range: the text model has {len(layers)}")
    attention = layers[layer].self_attn
    captured: dict[str, torch.Tensor] = {}

    def keep(name):
        def hook(_module, _inputs, output):
            captured[name] = output

        return hook

    handles = [
        attention.q_proj.register_forward_hook(keep("q")),
        attention.k_proj.register_forward_hook(keep("k")),
    ]
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def lookup_loss(
    model,
    captured: dict[str, torch.Tensor],
    position_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    lookup_keys: torch.Tensor,
    head: int,
) -> torch.Tensor:
    """The loss of the module docstring (0 when nothing is supervised).

    captured: q, k ``[B, T, heads * head_dim]`` from ``captured_query_key``; position_ids
    ``[B, T]``; attention_mask ``[B, 1, T, T]`` bool (True = may attend); lookup_keys
    ``[B, T, T]`` bool (``PackedBatch.lookup_keys``)."""
    config = model.config.text_config
    heads = config.num_attention_heads
    if not 0 <= head < config.num_key_value_heads:
        raise ValueError(f"look-up head {head} out of range: {config.num_key_value_heads} heads")
    batch_index, query_index = lookup_keys.any(-1).nonzero(as_tuple=True)
    if batch_index.numel() == 0:
        return captured["q"].sum() * 0.0
    head_dim = captured["q"].shape[-1] // heads
    q = captured["q"].unflatten(-1, (heads, head_dim))[..., head, :]  # [B, T, d]
    k = captured["k"].unflatten(-1, (-1, head_dim))[..., head, :]
    cos, sin = model.model.language_model.rotary_emb(q, position_ids)
    q, k = apply_rotary_pos_emb(q[:, None], k[:, None], cos, sin)
    q = q[:, 0, ...][batch_index, query_index]  # [N, d]
    scores = torch.einsum("nd,nsd->ns", q, k[:, 0][batch_index]) * head_dim**-0.5
    allowed = attention_mask[batch_index, 0, query_index]  # [N, T]
    log_probs = scores.masked_fill(~allowed, float("-inf")).log_softmax(-1)
    # Referents are visual tokens of the prefix, which every answer position may attend to,
    # so each supervised row has at least one wanted, allowed key.
    wanted = lookup_keys[batch_index, query_index] & allowed
    return -log_probs.masked_fill(~wanted, float("-inf")).logsumexp(-1).mean()
