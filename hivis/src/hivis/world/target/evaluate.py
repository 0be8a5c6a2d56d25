"""Held-out greedy exact match of the target, per task type.

Two ways to compute the same metric:

- ``teacher_forced``: one packed forward pass per batch of scenes; an answer counts as exact
  iff the reference token is the argmax at every answer position (EOS included), which is
  exactly the condition for greedy decoding to reproduce it. Fast, used for large test sets.
- ``generate``: the model's own ``generate`` (greedy, KV cache) from the single-question prompt;
  the decoded continuation (special tokens skipped, surrounding spaces stripped) must equal the
  reference answer. The end-to-end check.

With ``long_form`` the scenes' long-form questions are asked too, and their generated answers
are also scored by the facts they state (:func:`hivis.world.data.facts.fact_score`:
``TaskScore.facts``; by kind, ``TaskScore.fact_kinds``: counts, each object attribute, each
object's place in reading order); in teacher-forced mode those answers are generated for that
purpose.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from enum import Enum

import torch

from hivis.world.data.dataset import Split, iter_samples, make_sample
from hivis.world.data.facts import FACT_KINDS, FactScore, fact_scores_by_kind
from hivis.world.data.long_form import LONG_FORM_MAX_NEW_TOKENS
from hivis.world.data.scenes import WorldConfig, render_scene
from hivis.world.data.tasks import NUMBER_WORDS
from hivis.world.data.tokenizer import prompt_text
from hivis.world.target.packing import pack_batch, segment_exact_match


class EvalMode(Enum):
    TEACHER_FORCED = "teacher-forced"
    GENERATE = "generate"


@dataclass(frozen=True)
class TaskScore:
    """Exact match (``correct`` of ``total``) and, for long-form tasks, the facts stated, in
    all and by kind (``facts.fact_kinds``: which facts the answers get wrong)."""

    correct: int
    total: int
    facts: FactScore | None = None
    fact_kinds: dict[str, FactScore] | None = None

    @property
    def exact_match(self) -> float:
        return self.correct / self.total if self.total else float("nan")

    @property
    def fact_accuracy(self) -> float | None:
        return None if self.facts is None else self.facts.accuracy


def _world_of(model) -> WorldConfig:
    vision = model.config.vision_config
    return WorldConfig(vision.image_size, vision.patch_size)


def _tally(pairs, facts: dict | None = None) -> dict[str, TaskScore]:
    """Scores from (task name, exact) pairs and the long-form tasks' (fact score, by kind)
    by name."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for task_name, ok in pairs:
        counts[task_name][0] += int(ok)
        counts[task_name][1] += 1
    facts = facts or {}
    return {
        name: TaskScore(c, t, *facts.get(name, (None, None)))
        for name, (c, t) in sorted(counts.items())
    }


class Breakdown(Enum):
    """How ``teacher-forced`` scores may be split beyond the task type."""

    OBJECTS = "objects"  # number of objects in the scene
    ANSWER = "answer"  # the number word of the reference answer ("no", "one", ...), or "-"


def breakdown_key(breakdown: Breakdown | None, task, scene) -> str:
    """The sub-group of ``task`` on ``scene``: "" when not broken down."""
    if breakdown is Breakdown.OBJECTS:
        return f"{len(scene.objects)} objects"
    if breakdown is Breakdown.ANSWER:
        words = [w for w in task.answer.rstrip(".").split() if w in NUMBER_WORDS]
        return f"answer {words[0]}" if words else "answer -"
    return ""


@torch.no_grad()
def evaluate_teacher_forced(
    model,
    processor,
    split: Split,
    scenes: int,
    seed: int = 0,
    batch_size: int = 16,
    breakdown: Breakdown | None = None,
    long_form: bool = False,
) -> dict[str, TaskScore]:
    """Exact match per task type over ``scenes`` scenes of ``split`` (all their tasks); with
    ``breakdown`` per task type and sub-group (keys ``"task / group"``); with ``long_form``
    the long-form tasks too, with their fact scores (from generated answers)."""
    model.eval()
    world = _world_of(model)
    num_visual = model.config.image_seq_length
    pairs = []
    for start in range(0, scenes, batch_size):
        count = min(batch_size, scenes - start)
        samples = [
            make_sample(seed, split, i, world, long_form) for i in range(start, start + count)
        ]
        batch = pack_batch(
            [(render_scene(s.scene), list(s.tasks)) for s in samples], processor, num_visual
        )
        logits = batch.forward(model).logits
        exact = segment_exact_match(logits, batch)
        groups = [breakdown_key(breakdown, t, s.scene) for s in samples for t in s.tasks]
        for task_type, group, ok in zip(batch.segment_tasks, groups, exact, strict=True):
            pairs.append((f"{task_type.value} / {group}" if group else task_type.value, bool(ok)))
    if not long_form:
        return _tally(pairs)
    items = _items(model, split, scenes, seed, long_form=True)
    generated = _generated_scores(
        [(i, t) for i, t in items if t.task_type.long_form], model, processor, batch_size
    )
    return _tally(pairs, _fact_tally(generated))


@torch.no_grad()
def generate_answers(model, processor, images, questions, max_new_tokens: int = 96) -> list[str]:
    """Greedy answers, one prompt per (image, question), batched with left padding."""
    inputs = processor(
        images=list(images),
        text=[prompt_text(q) for q in questions],
        padding=True,
        return_tensors="pt",
    )
    out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    new_tokens = out[:, inputs["input_ids"].shape[1] :]
    texts = processor.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
    return [t.strip() for t in texts]


def _items(model, split: Split, scenes: int, seed: int, long_form: bool) -> list:
    """(image, task) of every question of the scenes, short ones first (so that a batch of
    ``generate`` holds answers of similar lengths)."""
    items = [
        (render_scene(s.scene), task)
        for s in iter_samples(seed, split, scenes, _world_of(model), long_form=long_form)
        for task in s.tasks
    ]
    return sorted(items, key=lambda item: item[1].task_type.long_form)


def _generated_scores(items, model, processor, batch_size: int) -> list:
    """(task, exact, fact scores by kind or None) of each (image, task) of ``items``, by
    ``generate``."""
    scored = []
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        long_form = any(t.task_type.long_form for _, t in chunk)
        answers = generate_answers(
            model,
            processor,
            [i for i, _ in chunk],
            [t.question for _, t in chunk],
            LONG_FORM_MAX_NEW_TOKENS if long_form else 96,
        )
        scored += [
            (
                t,
                a == t.answer,
                fact_scores_by_kind(a, t.answer) if t.task_type.long_form else None,
            )
            for (_, t), a in zip(chunk, answers, strict=True)
        ]
    return scored


def _fact_tally(scored) -> dict[str, tuple[FactScore, dict[str, FactScore]]]:
    """Per long-form task name: (its facts in all, by kind), summed over its answers."""
    kinds: dict[str, dict[str, FactScore]] = {}
    for task, _, by_kind in scored:
        if by_kind is not None:
            mine = kinds.setdefault(task.task_type.value, {})
            for kind, score in by_kind.items():
                mine[kind] = mine.get(kind, FactScore(0, 0)) + score
    return {
        name: (_all_facts(by_kind), dict(sorted(by_kind.items())))
        for name, by_kind in kinds.items()
    }


def _all_facts(by_kind: dict[str, FactScore]) -> FactScore:
    """Every fact once: the kinds of ``FACT_KINDS``, not an object's place (``"object #k"``)."""
    return sum((s for kind, s in by_kind.items() if kind in FACT_KINDS), FactScore(0, 0))


def evaluate_generate(
    model,
    processor,
    split: Split,
    scenes: int,
    seed: int = 0,
    batch_size: int = 16,
    long_form: bool = False,
) -> dict[str, TaskScore]:
    """Exact match per task type with ``generate``; with ``long_form`` the long-form tasks
    too, with their fact scores."""
    model.eval()
    scored = _generated_scores(
        _items(model, split, scenes, seed, long_form), model, processor, batch_size
    )
    pairs = [(task.task_type.value, ok) for task, ok, _ in scored]
    return _tally(pairs, _fact_tally(scored))


def evaluate(
    model,
    processor,
    mode: EvalMode,
    split: Split,
    scenes: int,
    seed: int = 0,
    batch_size: int = 16,
    breakdown: Breakdown | None = None,
    long_form: bool = False,
) -> dict[str, TaskScore]:
    """Scores per task type in ``mode`` (module docstring)."""
    if scenes <= 0:
        raise ValueError(f"scenes must be > 0, got {scenes}")
    if breakdown is not None and mode is not EvalMode.TEACHER_FORCED:
        raise ValueError("a breakdown is computed in teacher-forced mode only")
    if mode is EvalMode.TEACHER_FORCED:
        return evaluate_teacher_forced(
            model, processor, split, scenes, seed, batch_size, breakdown, long_form
        )
    return evaluate_generate(model, processor, split, scenes, seed, batch_size, long_form)


def format_scores(scores: dict[str, TaskScore]) -> str:
    """One line per task: exact match, number of questions, and the fact accuracy of the
    long-form tasks' generated answers."""
    width = max([14, *(len(name) for name in scores)])
    facts_head = f" {'facts':>7}" if any(s.facts is not None for s in scores.values()) else ""
    lines = [f"{'task':<{width}} {'exact':>7} {'n':>6}{facts_head}"]
    for name, score in scores.items():
        facts = "" if score.facts is None else f" {100 * score.fact_accuracy:6.1f}%"
        lines.append(f"{name:<{width}} {100 * score.exact_match:6.1f}% {score.total:6d}{facts}")
    return "\n".join(lines + _fact_kind_lines(scores))


def _fact_kind_lines(scores: dict[str, TaskScore]) -> list[str]:
    """The long-form facts stated right by kind, one column per long-form task."""
    tasks = {name: s.fact_kinds for name, s in scores.items() if s.fact_kinds}
    if not tasks:
        return []
    kinds = sorted(
        {kind for by_kind in tasks.values() for kind in by_kind},
        key=lambda kind: (FACT_KINDS.index(kind), "") if kind in FACT_KINDS else (99, kind),
    )
    lines = ["", f"{'facts by kind':<16}" + "".join(f" {name:>14}" for name in tasks)]
    for kind in kinds:
        cells = [
            f"{100 * by_kind[kind].accuracy:5.1f}% of {by_kind[kind].total:4d}"
            if kind in by_kind
            else "-"
            for by_kind in tasks.values()
        ]
        lines.append(f"{kind:<16}" + "".join(f" {cell:>14}" for cell in cells))
    return lines
