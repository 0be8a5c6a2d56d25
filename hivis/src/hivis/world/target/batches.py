"""Training batches of the world's target: scenes rendered, their questions (plus extra
question-conditioned ones) packed with the look-up targets, and the patch labels of the
auxiliary heads."""

from __future__ import annotations

import numpy as np
import torch

from hivis.world.data.dataset import Split, make_sample
from hivis.world.data.scenes import WorldConfig, render_scene
from hivis.world.data.tasks import colour_of, count_colour, count_shape
from hivis.world.target.aux_heads import aux_labels
from hivis.world.target.lookup import answer_span_tokens, referent_tokens
from hivis.world.target.packing import PackedBatch, pack_batch

EXTRA_QUESTION_MAKERS = (count_colour, count_shape, colour_of)
BALANCEABLE = (count_colour, count_shape)


def _with_extra_questions(
    sample, extra: int, seed: int, index: int, balanced: bool = False
) -> list:
    """The sample's tasks plus ``extra`` more questions of the kinds that need a
    question-conditioned look at the image (the hardest skill): counting by colour, by shape,
    the colour of a named object, in turn (a colour question the scene does not allow is
    skipped). An extra question costs ~20 tokens against the ~260 of the shared image prefix.
    With ``balanced`` the counting questions ask about a colour / shape whose count is drawn
    uniformly from the scene's distinct counts (``tasks._pick_balanced``): in natural questions
    "one" is the answer to 64 % of colour counts, a prior a model can lean on instead of
    looking."""
    rng = np.random.default_rng([seed, 99, index])
    makers = [EXTRA_QUESTION_MAKERS[k % 3] for k in range(extra)]
    made = [
        maker(sample.scene, rng, balanced=True)
        if balanced and maker in BALANCEABLE
        else maker(sample.scene, rng)
        for maker in makers
    ]
    return list(sample.tasks) + [task for task in made if task is not None]


def make_batch(
    split: Split,
    start: int,
    count: int,
    seed: int,
    world: WorldConfig,
    processor,
    num_visual: int,
    extra_questions: int = 0,
    balanced_extra: bool = False,
    lookup: bool = False,
    count_all_on_class_token: bool = False,
    long_form: bool = False,
    long_form_lookup: bool = False,
) -> tuple[PackedBatch, dict[str, torch.Tensor]]:
    """Packed batch of scenes [start, start + count) of ``split`` and their patch labels
    (each ``[count, num_visual]``; ``"counts"``: ``[count, len(COUNT_KEYS)]``); with
    ``lookup`` the batch carries ``lookup_keys`` (the visual tokens of each question's
    referents, ``hivis.world.target.lookup``; ``count_all_on_class_token``: "how many
    objects?" looks at the class token); ``long_form``: the scenes' long-form questions too;
    ``long_form_lookup`` (with ``lookup``): their pieces about particular objects (an object's
    sentences, a count, a relation) look at those objects (``Task.answer_referents``)."""
    samples = [make_sample(seed, split, i, world, long_form) for i in range(start, start + count)]
    items = [
        (
            render_scene(s.scene),
            _with_extra_questions(s, extra_questions, seed, start + i, balanced_extra),
        )
        for i, s in enumerate(samples)
    ]
    referents = spans = None
    if lookup:
        class_token = num_visual > world.grid**2
        scenes_tasks = [(s.scene, tasks) for s, (_, tasks) in zip(samples, items, strict=True)]
        referents = [
            referent_tokens(scene, tasks, world.patch_size, class_token, count_all_on_class_token)
            for scene, tasks in scenes_tasks
        ]
        if long_form_lookup:
            spans = [
                answer_span_tokens(scene, tasks, world.patch_size, class_token)
                for scene, tasks in scenes_tasks
            ]
    batch = pack_batch(items, processor, num_visual, referents, spans)
    return batch, aux_labels(samples, world.patch_size)


def make_vision_batch(
    split: Split, start: int, count: int, seed: int, world: WorldConfig, processor
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Pixel values ``[count, 3, H, W]`` of scenes [start, start + count) and their patch
    labels, as in ``make_batch`` (no text)."""
    samples = [make_sample(seed, split, i, world) for i in range(start, start + count)]
    images = [render_scene(s.scene) for s in samples]
    pixels = processor.image_processor(images, return_tensors="pt")["pixel_values"]
    return pixels, aux_labels(samples, world.patch_size)
