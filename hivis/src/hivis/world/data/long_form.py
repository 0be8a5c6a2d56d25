"""Long-form questions about a scene: a detailed report and step-by-step counting.

Both answers run 100-300 tokens on most scenes (fewer on one-object scenes) and are, like every
world answer, a deterministic function of the scene and of the question asked (the question's
wording, drawn from the rng, picks the report's opening line; the step-by-step question's colour
and shape are drawn from the rng and named in it):

* ``report``: an opening line, the number of objects and the background, every object in
  reading order with its size, colour, shape and position ("Object two is a small blue square
  in the center."), the counts per colour (all six), per shape and per size, the left/right and
  above/below relation of each object to the next, and the total again;
* ``step_by_step``: "how many red objects and how many circles?", answered by going through
  the objects one by one, each named with its attributes and followed by the two running
  counts, then the totals and their comparison.

They are opt-in (:func:`hivis.world.data.dataset.make_sample` with ``long_form=True``) and drawn
from a random stream of their own (``[seed, split, index, LONG_FORM_STREAM]``), so the short
questions of a scene, and every pipeline built on them, stay exactly as they were. The facts
their answers state are scored by :mod:`hivis.world.data.facts`.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np

from hivis.world.data.scenes import COLOURS, SHAPES, SIZES, Scene, SceneObject
from hivis.world.data.tasks import (
    MIN_OFFSET,
    NUMBER_WORDS,
    PLURAL,
    Task,
    TaskType,
    _indices,
    _pick,
    _pick_colour,
    position_phrase,
    reading_order,
)

LONG_FORM_STREAM = 7  # last entry of the long-form questions' rng seed
# Room for the longest answers (six-object step-by-step counts: ~290 tokens) and EOS.
LONG_FORM_MAX_NEW_TOKENS = 320

# (question, opening line of the answer): the opening line follows the wording asked for.
REPORT_QUESTIONS = (
    ("Write a detailed report about the image.", "Here is a detailed report of the image."),
    ("Give a full report of everything in the picture.", "Here is a full report of the picture."),
    (
        "List every object with its colour, shape, size and position, then count them.",
        "Here is every object, then the counts.",
    ),
    (
        "Describe each object in detail, then count the objects by colour and by shape.",
        "Here is each object in detail, then the counts.",
    ),
    ("Make a complete inventory of the scene.", "Here is a complete inventory of the scene."),
)


def objects_phrase(n: int) -> str:
    """``"three objects"`` / ``"one object"`` / ``"no objects"``."""
    return f"{NUMBER_WORDS[n]} object{'' if n == 1 else 's'}"


def _count_noun(n: int, singular: str, plural: str) -> str:
    return f"{NUMBER_WORDS[n]} {singular if n == 1 else plural}"


# A piece of an answer: its text and the indices (into ``scene.objects``) of the objects it is
# about; empty: none in particular. A sentence is a list of fragments.
Fragment = tuple[str, tuple[int, ...]]


def _about(sentence: str, objects: tuple[int, ...] = ()) -> list[Fragment]:
    """A sentence of one fragment."""
    return [(sentence, objects)]


def _listing(prefix: str, parts: list[Fragment]) -> list[Fragment]:
    """The sentence ``"{prefix}a, b and c."``, each part a fragment of its own."""
    fragments = [(prefix, ())]
    for k, part in enumerate(parts):
        if k:
            fragments.append((" and " if k == len(parts) - 1 else ", ", ()))
        fragments.append(part)
    return [*fragments, (".", ())]


def object_sentence(k: int, obj: SceneObject, image_size: int) -> str:
    """``"Object two is a small blue square in the center."`` (k counts from 1)."""
    return f"Object {NUMBER_WORDS[k]} is a {obj.phrase()} {position_phrase(obj, image_size)}."


def relation_sentence(k: int, a: SceneObject, b: SceneObject) -> str:
    """Where object k (``a``) lies relative to object k + 1 (``b``): left/right when their
    centres differ by at least MIN_OFFSET across, above/below when they do so vertically
    (objects never share a patch cell, so at least one holds)."""
    first, second = NUMBER_WORDS[k], NUMBER_WORDS[k + 1]
    across = abs(a.x - b.x) >= MIN_OFFSET
    along = abs(a.y - b.y) >= MIN_OFFSET
    horizontal = "to the left of" if a.x < b.x else "to the right of"
    vertical = "above" if a.y < b.y else "below"
    if across and along:
        return f"Object {first} is {horizontal} object {second} and {vertical} it."
    return f"Object {first} is {horizontal if across else vertical} object {second}."


def _counted(scene: Scene, n_of, singular: str, plural: str) -> Fragment:
    """``"two red objects"``, about the objects it counts: those for which ``n_of`` holds."""
    objects = _indices(scene, n_of)
    return _count_noun(len(objects), singular, plural), objects


def _counts_sentences(scene: Scene) -> list[list[Fragment]]:
    colours = [
        _counted(scene, lambda o, c=c: o.colour is c, f"{c.value} object", f"{c.value} objects")
        for c in COLOURS
    ]
    shapes = [_counted(scene, lambda o, s=s: o.shape is s, s.value, PLURAL[s]) for s in SHAPES]
    sizes = [
        _counted(scene, lambda o, z=z: o.size is z, f"{z.value} object", f"{z.value} objects")
        for z in SIZES
    ]
    return [
        _listing("By colour: ", colours),
        _listing("By shape: ", shapes),
        _listing("By size: ", sizes),
    ]


def _joined(sentences: list[list[Fragment]]) -> tuple[str, tuple]:
    """(the sentences joined by spaces, the ``Task.answer_referents`` spans: one per fragment
    about objects)."""
    text, spans = "", []
    for fragments in sentences:
        text += " " if text else ""
        for piece, objects in fragments:
            if objects:
                spans.append((len(text), len(text) + len(piece), objects))
            text += piece
    return text, tuple(spans)


def _reading_order_indices(scene: Scene) -> list[int]:
    """Indices into ``scene.objects`` in reading order."""
    index = {id(obj): i for i, obj in enumerate(scene.objects)}
    return [index[id(obj)] for obj in reading_order(scene)]


def report(scene: Scene, rng: np.random.Generator) -> Task:
    """The detailed report (see the module docstring). No referents for the whole answer
    (every object is looked at in turn): each object sentence refers to its object, each count
    ("two red objects") to the objects it counts, each relation sentence to its two
    (``Task.answer_referents``)."""
    question, opening = _pick(rng, list(REPORT_QUESTIONS))
    order = _reading_order_indices(scene)
    objects = [scene.objects[i] for i in order]
    n = len(objects)
    verb = "is" if n == 1 else "are"
    sentences = [
        _about(opening),
        _about(f"There {verb} {objects_phrase(n)} on a {scene.background.value} background."),
        *(
            _about(object_sentence(k, o, scene.image_size), (i,))
            for k, (i, o) in enumerate(zip(order, objects, strict=True), 1)
        ),
        *_counts_sentences(scene),
    ]
    if n == 1:
        sentences.append(_about("There is only one object, so there are no relations."))
    sentences += [
        _about(relation_sentence(k, a, b), pair)
        for k, ((a, b), pair) in enumerate(zip(pairwise(objects), pairwise(order), strict=True), 1)
    ]
    sentences.append(_about(f"In total there {verb} {objects_phrase(n)}."))
    answer, spans = _joined(sentences)
    return Task(TaskType.REPORT, question, answer, answer_referents=spans)


def _step_questions(colour: str, plural: str) -> list[str]:
    return [
        f"How many {colour} objects and how many {plural} are there? Think step by step.",
        f"Count the {colour} objects and the {plural} step by step.",
        f"Go through the objects one by one and count the {colour} ones and the {plural}.",
        f"Step by step, how many objects are {colour} and how many are {plural}?",
    ]


def _running_count(name: str, count: int, grew: bool) -> str:
    """``"the red count is now two"`` / ``"the circle count stays at zero"``."""
    number = NUMBER_WORDS[count] if count else "zero"
    return f"the {name} count {'is now' if grew else 'stays at'} {number}"


def _comparison(colour: str, n_colour: int, plural: str, n_shape: int) -> str:
    if n_colour > n_shape:
        return f"so there are more {colour} objects than {plural}"
    if n_colour < n_shape:
        return f"so there are fewer {colour} objects than {plural}"
    return f"so there are as many {colour} objects as {plural}"


def step_by_step(scene: Scene, rng: np.random.Generator) -> Task:
    """Counting one colour and one shape, object by object (see the module docstring). The
    colour and shape are in the scene 70 % of the time each. As in the report, each object's
    two sentences refer to it, and the totals to the objects they count
    (``Task.answer_referents``)."""
    colour = _pick_colour(scene, rng)
    present = sorted({o.shape for o in scene.objects}, key=SHAPES.index)
    shape = _pick(rng, present) if rng.random() < 0.7 else _pick(rng, list(SHAPES))
    c, s, plural = colour.value, shape.value, PLURAL[shape]
    order = _reading_order_indices(scene)
    sentences = [
        _about(
            "I look at the objects one by one, from the top left to the bottom right, on a "
            f"{scene.background.value} background."
        )
    ]
    n_colour = n_shape = 0
    for k, i in enumerate(order, 1):
        obj = scene.objects[i]
        is_colour, is_shape = obj.colour is colour, obj.shape is shape
        n_colour, n_shape = n_colour + is_colour, n_shape + is_shape
        verdict = (
            f"It is {'' if is_colour else 'not '}{c} and it is {'' if is_shape else 'not '}a {s}"
        )
        counts = (
            f"{_running_count(c, n_colour, is_colour)} and {_running_count(s, n_shape, is_shape)}"
        )
        sentences += [
            _about(object_sentence(k, obj, scene.image_size), (i,)),
            _about(f"{verdict}, so {counts}.", (i,)),
        ]
    colour_total = _counted(scene, lambda o: o.colour is colour, f"{c} object", f"{c} objects")
    shape_total = _counted(scene, lambda o: o.shape is shape, s, plural)
    comparison = _comparison(c, n_colour, plural, n_shape)
    sentences += [
        _about(f"That was the last of the {objects_phrase(len(order))}."),
        [("In all: ", ()), colour_total, (" and ", ()), shape_total, (f", {comparison}.", ())],
    ]
    question = _pick(rng, _step_questions(c, plural))
    answer, spans = _joined(sentences)
    return Task(TaskType.STEP_BY_STEP, question, answer, answer_referents=spans)


def long_form_tasks(scene: Scene, rng: np.random.Generator) -> list[Task]:
    """The scene's long-form questions: one report, one step-by-step count."""
    return [report(scene, rng), step_by_step(scene, rng)]


def long_form_vocabulary(scenes: int = 40) -> list[str]:
    """Texts holding every word of the long-form questions and answers: all question wordings
    (every colour and shape), the report openings, and the long-form answers of the first
    ``scenes`` training scenes of seed 0 (which use every number, position and relation)."""
    from hivis.world.data.dataset import Split, make_sample

    texts = [question for question, _ in REPORT_QUESTIONS]
    texts += [" " + opening for _, opening in REPORT_QUESTIONS]
    texts += [q for c in COLOURS for s in SHAPES for q in _step_questions(c.value, PLURAL[s])]
    for index in range(scenes):
        sample = make_sample(0, Split.TRAIN, index, long_form=True)
        texts += [" " + t.answer for t in sample.tasks if t.task_type.long_form]
    return texts
