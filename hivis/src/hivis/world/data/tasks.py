"""Questions and answers about a scene, with varied phrasings.

Every answer is a deterministic function of the scene (the phrasing of the question is drawn
from the rng), so the model can only answer right by reading the image.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from hivis.world.data.scenes import COLOURS, Colour, Scene, SceneObject, Shape, region_of

NUMBER_WORDS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight")
PLURAL = {Shape.CIRCLE: "circles", Shape.SQUARE: "squares", Shape.TRIANGLE: "triangles"}
MIN_OFFSET = 8.0  # pixels between two centres before "left of" / "above" is asked about


class TaskType(Enum):
    DESCRIBE = "describe"
    COUNT_ALL = "count_all"
    COUNT_COLOUR = "count_colour"
    COUNT_SHAPE = "count_shape"
    COLOUR_OF = "colour_of"
    SHAPE_OF = "shape_of"
    POSITION_OF = "position_of"
    RELATION = "relation"
    REASONING = "reasoning"
    # Long-form (opt-in, ``hivis.world.data.long_form``): 100-300 tokens per answer.
    REPORT = "report"
    STEP_BY_STEP = "step_by_step"

    @property
    def long_form(self) -> bool:
        return self in (TaskType.REPORT, TaskType.STEP_BY_STEP)


@dataclass(frozen=True)
class Task:
    """One question and its answer. ``referents``: indices into ``scene.objects`` of the objects
    the question asks about (the ones to look at to answer it: every red object for "how many
    red objects?", the square for "what colour is the square?"); empty when the question names
    no object or none is there. Training can use them to supervise where the text model
    looks (``hivis.world.target.lookup``); they are not part of the text.

    ``answer_referents``: for answers that go through the objects one at a time (the long-form
    ones), ``(start, end, objects)`` spans: answer characters ``[start, end)`` are about the
    objects ``objects`` (indices into ``scene.objects``); there they replace ``referents``."""

    task_type: TaskType
    question: str
    answer: str
    referents: tuple[int, ...] = field(default=(), compare=False)
    answer_referents: tuple[tuple[int, int, tuple[int, ...]], ...] = field(
        default=(), compare=False
    )


def position_phrase(obj: SceneObject, image_size: int) -> str:
    """Where the object's centre lies in a 3 x 3 division of the image."""
    row, col = divmod(region_of(obj, image_size), 3)
    vertical = ("top", "", "bottom")[row]
    horizontal = ("left", "", "right")[col]
    if vertical and horizontal:
        return f"at the {vertical} {horizontal}"
    if vertical:
        return f"at the {vertical}"
    if horizontal:
        return f"on the {horizontal}"
    return "in the center"


def reading_order(scene: Scene) -> list[SceneObject]:
    """Objects sorted top band first, then left to right (the order descriptions use)."""
    band = scene.image_size / 3
    return sorted(scene.objects, key=lambda o: (min(int(o.y / band), 2), o.x, o.y))


def count_phrase(n: int, noun_singular: str, noun_plural: str) -> str:
    """``"There are three red objects"`` / ``"There is one circle"`` / ``"There are no ..."``."""
    if n == 1:
        return f"There is one {noun_singular}"
    return f"There are {NUMBER_WORDS[n]} {noun_plural}"


def _pick(rng: np.random.Generator, options: list):
    return options[int(rng.integers(len(options)))]


def describe(scene: Scene, rng: np.random.Generator) -> Task:
    questions = [
        "Describe the image in detail.",
        "What do you see in this picture?",
        "Give a detailed description of the scene.",
        "Describe every object in the image.",
        "What is in this image? Describe it.",
    ]
    parts = [f"a {o.phrase()} {position_phrase(o, scene.image_size)}" for o in reading_order(scene)]
    listing = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    head = count_phrase(len(parts), "object", "objects")
    answer = f"{head} on a {scene.background.value} background: {listing}."
    return Task(TaskType.DESCRIBE, _pick(rng, questions), answer)


def count_all(scene: Scene, rng: np.random.Generator) -> Task:
    questions = [
        "How many objects are there?",
        "How many objects are in the image?",
        "Count the objects in the picture.",
        "What is the number of objects?",
    ]
    answer = count_phrase(len(scene.objects), "object", "objects") + "."
    everything = tuple(range(len(scene.objects)))
    return Task(TaskType.COUNT_ALL, _pick(rng, questions), answer, everything)


def _indices(scene: Scene, chosen: Callable[[SceneObject], bool]) -> tuple[int, ...]:
    return tuple(i for i, o in enumerate(scene.objects) if chosen(o))


def _colour_counts(scene: Scene) -> dict[Colour, int]:
    return {c: sum(o.colour is c for o in scene.objects) for c in COLOURS}


def _pick_colour(scene: Scene, rng: np.random.Generator) -> Colour:
    """A colour present in the scene 70 % of the time, otherwise any colour."""
    present = sorted({o.colour for o in scene.objects}, key=COLOURS.index)
    if rng.random() < 0.7:
        return _pick(rng, present)
    return _pick(rng, list(COLOURS))


def _pick_balanced(counts: dict, rng: np.random.Generator):
    """A key of ``counts`` whose count is drawn uniformly from the distinct counts: the answer
    ("no", "one", "two", ...) is then equally likely whatever the scene, so predicting the
    usual answer ("one") stops paying and only reading the image does."""
    values = sorted(set(counts.values()))
    wanted = _pick(rng, values)
    return _pick(rng, [key for key, n in counts.items() if n == wanted])


def count_colour(scene: Scene, rng: np.random.Generator, balanced: bool = False) -> Task:
    """How many objects of one colour; the colour is present 70 % of the time, or with
    ``balanced`` (training practice) chosen by ``_pick_balanced``."""
    pick = _pick_balanced(_colour_counts(scene), rng) if balanced else _pick_colour(scene, rng)
    colour = pick.value
    questions = [
        f"How many {colour} objects are there?",
        f"How many {colour} things are in the image?",
        f"Count the {colour} objects.",
        f"What is the number of {colour} objects?",
    ]
    referents = _indices(scene, lambda o: o.colour is pick)
    answer = count_phrase(len(referents), f"{colour} object", f"{colour} objects") + "."
    return Task(TaskType.COUNT_COLOUR, _pick(rng, questions), answer, referents)


def count_shape(scene: Scene, rng: np.random.Generator, balanced: bool = False) -> Task:
    """How many objects of one shape; the shape is present 70 % of the time, or with
    ``balanced`` chosen by ``_pick_balanced``."""
    present = sorted({o.shape for o in scene.objects}, key=list(Shape).index)
    if balanced:
        shape = _pick_balanced({s: sum(o.shape is s for o in scene.objects) for s in Shape}, rng)
    else:
        shape = _pick(rng, present) if rng.random() < 0.7 else _pick(rng, list(Shape))
    plural = PLURAL[shape]
    questions = [
        f"How many {plural} are there?",
        f"How many {plural} are in the image?",
        f"Count the {plural}.",
    ]
    referents = _indices(scene, lambda o: o.shape is shape)
    answer = count_phrase(len(referents), shape.value, plural) + "."
    return Task(TaskType.COUNT_SHAPE, _pick(rng, questions), answer, referents)


def _unique(scene: Scene, key: Callable[[SceneObject], tuple]) -> list[SceneObject]:
    """Objects whose ``key`` no other object of the scene shares."""
    keys = [key(o) for o in scene.objects]
    return [o for o, k in zip(scene.objects, keys, strict=True) if keys.count(k) == 1]


def colour_of(scene: Scene, rng: np.random.Generator) -> Task | None:
    by_shape = _unique(scene, lambda o: (o.shape,))
    by_size_shape = _unique(scene, lambda o: (o.size, o.shape))
    if by_shape and (not by_size_shape or rng.random() < 0.5):
        obj = _pick(rng, by_shape)
        name = obj.shape.value
    elif by_size_shape:
        obj = _pick(rng, by_size_shape)
        name = f"{obj.size.value} {obj.shape.value}"
    else:
        return None
    questions = [f"What colour is the {name}?", f"Which colour does the {name} have?"]
    answer = f"The {name} is {obj.colour.value}."
    return Task(TaskType.COLOUR_OF, _pick(rng, questions), answer, (scene.objects.index(obj),))


def shape_of(scene: Scene, rng: np.random.Generator) -> Task | None:
    candidates = _unique(scene, lambda o: (o.colour,))
    if not candidates:
        return None
    obj = _pick(rng, candidates)
    c = obj.colour.value
    questions = [f"What shape is the {c} object?", f"What kind of shape is the {c} one?"]
    answer = f"The {c} object is a {obj.shape.value}."
    return Task(TaskType.SHAPE_OF, _pick(rng, questions), answer, (scene.objects.index(obj),))


def position_of(scene: Scene, rng: np.random.Generator) -> Task | None:
    candidates = _unique(scene, lambda o: (o.colour, o.shape))
    if not candidates:
        return None
    obj = _pick(rng, candidates)
    name = f"{obj.colour.value} {obj.shape.value}"
    questions = [f"Where is the {name}?", f"Where is the {name} located?"]
    where = position_phrase(obj, scene.image_size)
    answer = f"The {name} is {where}."
    return Task(TaskType.POSITION_OF, _pick(rng, questions), answer, (scene.objects.index(obj),))


def relation(scene: Scene, rng: np.random.Generator) -> Task | None:
    """A left/right or above/below question about two uniquely named objects."""
    named = _unique(scene, lambda o: (o.colour, o.shape))
    pairs = [(a, b) for a in named for b in named if a is not b]
    horizontal = [(a, b) for a, b in pairs if abs(a.x - b.x) >= MIN_OFFSET]
    vertical = [(a, b) for a, b in pairs if abs(a.y - b.y) >= MIN_OFFSET]
    use_horizontal = bool(horizontal) and (not vertical or rng.random() < 0.5)
    if not (horizontal or vertical):
        return None
    a, b = _pick(rng, horizontal if use_horizontal else vertical)
    na, nb = f"{a.colour.value} {a.shape.value}", f"{b.colour.value} {b.shape.value}"
    if use_horizontal:
        asked, other = _pick(
            rng, [("to the left of", "to the right of"), ("to the right of", "to the left of")]
        )
        truth = "to the left of" if a.x < b.x else "to the right of"
    else:
        asked, other = _pick(rng, [("above", "below"), ("below", "above")])
        truth = "above" if a.y < b.y else "below"
    question = f"Is the {na} {asked} the {nb}?"
    verdict = "Yes" if truth == asked else "No"
    return Task(TaskType.RELATION, question, f"{verdict}, the {na} is {truth} the {nb}.")


def _compare_colours(scene: Scene, rng: np.random.Generator) -> Task:
    c1, c2 = (COLOURS[i] for i in rng.choice(len(COLOURS), size=2, replace=False))
    if rng.random() < 0.7:  # prefer colours that are in the scene
        present = sorted({o.colour for o in scene.objects}, key=COLOURS.index)
        c1 = _pick(rng, present)
        c2 = _pick(rng, [c for c in COLOURS if c is not c1])
    counts = _colour_counts(scene)
    n1, n2 = counts[c1], counts[c2]
    question = f"Are there more {c1.value} objects than {c2.value} objects?"
    first = count_phrase(n1, f"{c1.value} object", f"{c1.value} objects")
    second = f"{NUMBER_WORDS[n2]} {c2.value} object{'s' if n2 != 1 else ''}"
    if n1 > n2:
        verdict = f"yes, there are more {c1.value} objects"
    elif n1 < n2:
        verdict = f"no, there are fewer {c1.value} objects"
    else:
        verdict = "no, there are equally many"
    answer = f"{first} and {second}, so {verdict}."
    return Task(TaskType.REASONING, question, answer)


def _remove_colour(scene: Scene, rng: np.random.Generator) -> Task:
    colour = _pick_colour(scene, rng)
    total = len(scene.objects)
    removed = _colour_counts(scene)[colour]
    question = f"If every {colour.value} object were removed, how many objects would be left?"
    head = count_phrase(total, "object", "objects")
    if removed == 0:
        of_them = "none of them is"
    else:
        of_them = f"{NUMBER_WORDS[removed]} of them {'is' if removed == 1 else 'are'}"
    left = total - removed
    rest = f"{NUMBER_WORDS[left]} object{'s' if left != 1 else ''} would be left"
    answer = f"{head} and {of_them} {colour.value}, so {rest}."
    return Task(TaskType.REASONING, question, answer)


def reasoning(scene: Scene, rng: np.random.Generator) -> Task:
    return (_compare_colours if rng.random() < 0.5 else _remove_colour)(scene, rng)


TASK_BUILDERS: dict[TaskType, Callable[[Scene, np.random.Generator], Task | None]] = {
    TaskType.DESCRIBE: describe,
    TaskType.COUNT_ALL: count_all,
    TaskType.COUNT_COLOUR: count_colour,
    TaskType.COUNT_SHAPE: count_shape,
    TaskType.COLOUR_OF: colour_of,
    TaskType.SHAPE_OF: shape_of,
    TaskType.POSITION_OF: position_of,
    TaskType.RELATION: relation,
    TaskType.REASONING: reasoning,
}


def make_tasks(scene: Scene, rng: np.random.Generator) -> list[Task]:
    """One task of every type that the scene allows (types needing a unique object may be
    missing), in TaskType order."""
    tasks = [build(scene, rng) for build in TASK_BUILDERS.values()]
    return [t for t in tasks if t is not None]
