"""Fact scoring of long-form answers: the facts an answer states, not its exact wording.

:func:`stated_facts` reads the facts a text states, each under a key:

* ``"objects"``: the number of objects ("There are five objects", "the last of the five
  objects", "In total there are five objects");
* ``"colour red"`` ... : the number of objects of a colour ("two red objects");
* ``"shape circle"`` ...: the number of objects of a shape ("one circle", "no triangles");
* ``"size small"``, ``"size large"``: the number of objects of a size ("three small objects");
* ``"object 2 size"``, ``"object 2 colour"``, ``"object 2 shape"``, ``"object 2 position"``:
  the attributes of the second object in reading order ("Object two is a small blue square in
  the center.").

Running counts ("the red count is now two") and relations are not facts here. A key may be
stated several times; its value is the set of stated values.

:func:`fact_score` scores an answer against the reference answer of the same question: every
fact the reference states (one value per key) counts once, and is right when the answer
states that key with that value and no other. A reference's facts are the scene's truth
(tested against the scene itself, ``scene_fact_values``), so the score is the fraction of
the scene's facts, among those the question asks for, that the answer gets right: a missing,
wrong or contradicted fact is wrong; wording and order do not matter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hivis.world.data.scenes import COLOURS, SHAPES, SIZES, Scene
from hivis.world.data.tasks import NUMBER_WORDS, PLURAL, position_phrase, reading_order

_NUMBER = "|".join(NUMBER_WORDS)
_COLOUR = "|".join(c.value for c in COLOURS)
_SHAPE = "|".join(s.value for s in SHAPES)
_SIZE = "|".join(z.value for z in SIZES)
_SHAPE_NOUNS = {s.value: s.value for s in SHAPES} | {p: s.value for s, p in PLURAL.items()}
_POSITION = r"at the (?:top|bottom)(?: left| right)?|on the (?:left|right)|in the center"

_PATTERNS = {
    "objects": re.compile(rf"\b({_NUMBER}) objects?\b", re.IGNORECASE),
    "colour": re.compile(rf"\b({_NUMBER}) ({_COLOUR}) objects?\b", re.IGNORECASE),
    "size": re.compile(rf"\b({_NUMBER}) ({_SIZE}) objects?\b", re.IGNORECASE),
    "shape": re.compile(rf"\b({_NUMBER}) ({'|'.join(_SHAPE_NOUNS)})\b", re.IGNORECASE),
    "object": re.compile(
        rf"\bobject ({_NUMBER}) is an? ({_SIZE}) ({_COLOUR}) ({_SHAPE}) ({_POSITION})\b",
        re.IGNORECASE,
    ),
}


def _number(word: str) -> int:
    return NUMBER_WORDS.index(word.lower())


def stated_facts(text: str) -> dict[str, set]:
    """Every fact ``text`` states (see the module docstring): key -> set of stated values
    (ints for counts, strings for attributes)."""
    facts: dict[str, set] = {}

    def state(key: str, value) -> None:
        facts.setdefault(key, set()).add(value)

    for m in _PATTERNS["objects"].finditer(text):
        state("objects", _number(m.group(1)))
    for kind in ("colour", "size"):
        for m in _PATTERNS[kind].finditer(text):
            state(f"{kind} {m.group(2).lower()}", _number(m.group(1)))
    for m in _PATTERNS["shape"].finditer(text):
        state(f"shape {_SHAPE_NOUNS[m.group(2).lower()]}", _number(m.group(1)))
    for m in _PATTERNS["object"].finditer(text):
        k = _number(m.group(1))
        for name, value in zip(
            ("size", "colour", "shape", "position"), m.groups()[1:], strict=True
        ):
            state(f"object {k} {name}", value.lower())
    return facts


def scene_fact_values(scene: Scene) -> dict[str, object]:
    """The truth of every key :func:`stated_facts` knows, for ``scene``."""
    objs = scene.objects
    truth: dict[str, object] = {"objects": len(objs)}
    truth |= {f"colour {c.value}": sum(o.colour is c for o in objs) for c in COLOURS}
    truth |= {f"shape {s.value}": sum(o.shape is s for o in objs) for s in SHAPES}
    truth |= {f"size {z.value}": sum(o.size is z for o in objs) for z in SIZES}
    for k, obj in enumerate(reading_order(scene), 1):
        truth[f"object {k} size"] = obj.size.value
        truth[f"object {k} colour"] = obj.colour.value
        truth[f"object {k} shape"] = obj.shape.value
        truth[f"object {k} position"] = position_phrase(obj, scene.image_size)
    return truth


@dataclass(frozen=True)
class FactScore:
    """``correct`` of ``total`` reference facts stated right."""

    correct: int
    total: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else float("nan")

    def __add__(self, other: FactScore) -> FactScore:
        return FactScore(self.correct + other.correct, self.total + other.total)


def _fact_checks(answer: str, reference: str) -> list[tuple[str, bool]]:
    """(key, stated right) of every fact of the reference (module docstring)."""
    expected = stated_facts(reference)
    if any(len(values) != 1 for values in expected.values()):
        raise ValueError("the reference contradicts itself: " + repr(expected))
    stated = stated_facts(answer)
    return [(key, stated.get(key) == values) for key, values in expected.items()]


def fact_score(answer: str, reference: str) -> FactScore:
    """How many of the reference's facts ``answer`` states right (module docstring)."""
    checks = _fact_checks(answer, reference)
    return FactScore(sum(ok for _, ok in checks), len(checks))


FACT_KINDS = (
    "objects",
    "colour count",
    "shape count",
    "size count",
    "object size",
    "object colour",
    "object shape",
    "object position",
)  # then the objects' places, "object #1", "object #2", ...


def fact_kinds(key: str) -> tuple[str, ...]:
    """The groups a fact key is reported in: its kind (``"objects"``, ``"colour count"``,
    ``"shape count"``, ``"size count"``, ``"object colour"``, ...) and, for an object's
    attribute, the object's place in reading order (``"object #2"``)."""
    parts = key.split()
    if parts[0] == "objects":
        return ("objects",)
    if parts[0] == "object":
        return (f"object {parts[2]}", f"object #{parts[1]}")
    return (f"{parts[0]} count",)


def fact_scores_by_kind(answer: str, reference: str) -> dict[str, FactScore]:
    """:func:`fact_score` split by the groups of :func:`fact_kinds` (an object's attribute
    counts in two groups: its kind and the object's place)."""
    scores: dict[str, FactScore] = {}
    for key, ok in _fact_checks(answer, reference):
        for kind in fact_kinds(key):
            scores[kind] = scores.get(kind, FactScore(0, 0)) + FactScore(int(ok), 1)
    return scores


def distinct_ngram_fraction(texts: list[str], n: int = 4) -> float:
    """Distinct word ``n``-grams over all word ``n``-grams of ``texts`` (each text on its own;
    words split at whitespace); 0.0 when there is none. A repetitive, looping text scores
    low."""
    grams = [
        tuple(words[i : i + n])
        for words in (text.split() for text in texts)
        for i in range(len(words) - n + 1)
    ]
    return len(set(grams)) / len(grams) if grams else 0.0
