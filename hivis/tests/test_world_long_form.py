"""Long-form world tasks (report, step by step) and the fact scorer."""

import statistics

import numpy as np
import pytest
import torch
from test_world_data import _three_objects

from hivis.world.data.dataset import Split, iter_samples, make_sample
from hivis.world.data.facts import (
    FactScore,
    fact_score,
    fact_scores_by_kind,
    scene_fact_values,
    stated_facts,
)
from hivis.world.data.long_form import (
    LONG_FORM_MAX_NEW_TOKENS,
    REPORT_QUESTIONS,
    report,
    step_by_step,
)
from hivis.world.data.scenes import WorldConfig
from hivis.world.data.tasks import TaskType
from hivis.world.data.tokenizer import expresses_long_form, one_token_per_word, train_tokenizer

THREE_OBJECTS_REPORT = (
    "There are three objects on a gray background. "
    "Object one is a large red triangle at the top left. "
    "Object two is a small red square in the center. "
    "Object three is a small blue circle at the bottom right. "
    "By colour: two red objects, no green objects, one blue object, no yellow objects, "
    "no purple objects and no orange objects. "
    "By shape: one circle, one square and one triangle. "
    "By size: two small objects and one large object. "
    "Object one is to the left of object two and above it. "
    "Object two is to the left of object three and above it. "
    "In total there are three objects."
)


@pytest.fixture(scope="module")
def long_form_tokenizer():
    return train_tokenizer(vocab_size=640, scenes=200, long_form=True)


def test_long_form_is_opt_in_and_leaves_the_short_questions_unchanged():
    for index in range(30):
        short = make_sample(0, Split.VALIDATION, index)
        long = make_sample(0, Split.VALIDATION, index, long_form=True)
        assert long.scene == short.scene
        assert long.tasks[: len(short.tasks)] == short.tasks
        assert [t.task_type for t in long.tasks[len(short.tasks) :]] == [
            TaskType.REPORT,
            TaskType.STEP_BY_STEP,
        ]
        assert not any(t.task_type.long_form for t in short.tasks)
        assert make_sample(0, Split.VALIDATION, index, long_form=True) == long  # deterministic


def test_report_of_a_hand_built_scene():
    task = report(_three_objects(), np.random.default_rng(0))
    opening = dict(REPORT_QUESTIONS)[task.question]
    assert task.answer == f"{opening} {THREE_OBJECTS_REPORT}"
    assert task.referents == ()


def test_step_by_step_of_a_hand_built_scene():
    seen = set()
    for seed in range(40):
        task = step_by_step(_three_objects(), np.random.default_rng(seed))
        if "red" in task.question and "squares" in task.question:
            seen.add(task.question)
            assert task.answer == (
                "I look at the objects one by one, from the top left to the bottom right, on a "
                "gray background. Object one is a large red triangle at the top left. It is red "
                "and it is not a square, so the red count is now one and the square count stays "
                "at zero. Object two is a small red square in the center. It is red and it is a "
                "square, so the red count is now two and the square count is now one. Object "
                "three is a small blue circle at the bottom right. It is not red and it is not a "
                "square, so the red count stays at two and the square count stays at one. That "
                "was the last of the three objects. In all: two red objects and one square, so "
                "there are more red objects than squares."
            )
    assert seen  # the draw asked about red and squares at least once


def test_long_form_questions_vary_and_answers_depend_on_the_scene():
    questions: dict[TaskType, set[str]] = {TaskType.REPORT: set(), TaskType.STEP_BY_STEP: set()}
    answers: dict[TaskType, set[str]] = {TaskType.REPORT: set(), TaskType.STEP_BY_STEP: set()}
    for sample in iter_samples(0, Split.TRAIN, 200, long_form=True):
        for task in sample.tasks[-2:]:
            questions[task.task_type].add(task.question)
            answers[task.task_type].add(task.answer)
    assert len(questions[TaskType.REPORT]) == len(REPORT_QUESTIONS)
    assert len(questions[TaskType.STEP_BY_STEP]) >= 40  # 4 wordings x 6 colours x 3 shapes
    assert all(len(a) >= 190 for a in answers.values())  # (nearly) one per scene


def test_reference_facts_are_the_scene_truth():
    for sample in iter_samples(0, Split.TEST, 200, long_form=True):
        truth = scene_fact_values(sample.scene)
        rep, steps = sample.tasks[-2:]
        stated = {k: v for k, v in stated_facts(rep.answer).items()}
        assert stated == {k: {v} for k, v in truth.items()}  # the report states every fact
        stated = stated_facts(steps.answer)
        assert all(stated[k] == {truth[k]} for k in stated)
        n = len(sample.scene.objects)
        assert len(stated) == 1 + 2 + 4 * n  # objects, the colour, the shape, 4 per object


def test_fact_score_of_hand_made_answers():
    reference = f"Here is a full report of the picture. {THREE_OBJECTS_REPORT}"
    total = 1 + 6 + 3 + 2 + 4 * 3
    assert fact_score(reference, reference) == FactScore(total, total)
    # Facts, not wording: reordered sentences, other connecting words.
    sentences = THREE_OBJECTS_REPORT.split(". ")
    assert fact_score(". ".join(reversed(sentences)), reference) == FactScore(total, total)
    # One object's colour wrong: that object's colour fact and nothing else.
    wrong = reference.replace("small blue circle", "small green circle")
    assert fact_score(wrong, reference) == FactScore(total - 1, total)
    # A contradiction counts as wrong: the total stated twice, differently.
    contradicted = reference.replace("In total there are three", "In total there are four")
    assert fact_score(contradicted, reference) == FactScore(total - 1, total)
    # Missing facts are wrong: no counts by colour.
    cut = reference.replace(
        "By colour: two red objects, no green objects, one blue object, no yellow objects, "
        "no purple objects and no orange objects. ",
        "",
    )
    assert fact_score(cut, reference) == FactScore(total - 6, total)
    assert fact_score("", reference) == FactScore(0, total)
    assert fact_score(reference, reference).accuracy == 1.0


def test_fact_scores_by_kind_say_which_facts_are_wrong():
    reference = f"Here is a full report of the picture. {THREE_OBJECTS_REPORT}"
    # The third object (the circle) described as green; the shape counts left out.
    wrong = reference.replace("small blue circle", "small green circle").replace(
        "By shape: one circle, one square and one triangle. ", ""
    )
    kinds = fact_scores_by_kind(wrong, reference)
    assert kinds == {
        "objects": FactScore(1, 1),
        "colour count": FactScore(6, 6),
        "shape count": FactScore(0, 3),
        "size count": FactScore(2, 2),
        "object size": FactScore(3, 3),
        "object colour": FactScore(2, 3),
        "object shape": FactScore(3, 3),
        "object position": FactScore(3, 3),
        "object #1": FactScore(4, 4),
        "object #2": FactScore(4, 4),
        "object #3": FactScore(3, 4),
    }
    attributes = [s for kind, s in kinds.items() if "#" not in kind]
    assert sum(attributes, FactScore(0, 0)) == fact_score(wrong, reference)


def test_long_form_answers_run_100_to_300_tokens(long_form_tokenizer):
    lengths: dict[TaskType, list[int]] = {TaskType.REPORT: [], TaskType.STEP_BY_STEP: []}
    for sample in iter_samples(0, Split.TEST, 150, long_form=True):
        for task in sample.tasks[-2:]:
            ids = long_form_tokenizer(" " + task.answer + "</s>", add_special_tokens=False)
            lengths[task.task_type].append(len(ids["input_ids"]))
    for values in lengths.values():
        assert 100 <= statistics.mean(values) <= 300
        assert max(values) < LONG_FORM_MAX_NEW_TOKENS
        assert sum(100 <= n <= 300 for n in values) >= 0.8 * len(values)  # not 1-object scenes


def test_only_a_long_form_tokenizer_expresses_long_form(long_form_tokenizer, world_tokenizer_dir):
    from transformers import AutoTokenizer

    short = AutoTokenizer.from_pretrained(world_tokenizer_dir)
    assert expresses_long_form(long_form_tokenizer)
    assert not expresses_long_form(short)
    for sample in iter_samples(3, Split.TEST, 30, long_form=True):
        for task in sample.tasks:
            assert one_token_per_word(long_form_tokenizer, " " + task.answer)
            assert one_token_per_word(long_form_tokenizer, task.question)
            if not task.task_type.long_form:
                assert one_token_per_word(short, " " + task.answer)


def test_count_words_of_step_by_step_are_not_facts():
    """Running counts ("the red count is now two") state no fact; the totals do."""
    facts = stated_facts("the red count is now two and the circle count stays at zero.")
    assert facts == {}
    facts = stated_facts("In all: two red objects and no circles.")
    assert facts == {"colour red": {2}, "shape circle": {0}}


def test_long_form_training_batches_and_tokenizer_check(
    long_form_tokenizer, world_tokenizer_dir, tmp_path
):
    from tiny_world import TINY_WORLD_SCENES, TINY_WORLD_TARGET

    from hivis.world.target.batches import make_batch
    from hivis.world.target.config import TargetTrainConfig
    from hivis.world.target.model import build_target
    from hivis.world.target.train import train_target

    _, processor = build_target(TINY_WORLD_TARGET, long_form_tokenizer, seed=0)
    args = (Split.TRAIN, 0, 2, 0, TINY_WORLD_SCENES, processor, 37)
    short, _ = make_batch(*args, lookup=True)
    long, _ = make_batch(*args, lookup=True, long_form=True)
    added = [t for t in long.segment_tasks if t not in short.segment_tasks]
    assert added == [TaskType.REPORT, TaskType.STEP_BY_STEP] * 2
    assert long.lookup_keys.sum() == short.lookup_keys.sum()  # long-form: no look-up target
    cfg = TargetTrainConfig(
        out_dir=tmp_path,
        tokenizer_dir=world_tokenizer_dir,
        long_form=True,
        target=TINY_WORLD_TARGET,
    )
    with pytest.raises(ValueError, match="world tokenizer --long-form"):
        train_target(cfg)


def test_eval_target_scores_the_facts_of_long_form_answers(long_form_tokenizer):
    from tiny_world import TINY_WORLD_TARGET

    from hivis.world.target.evaluate import EvalMode, evaluate, format_scores
    from hivis.world.target.model import build_target

    model, processor = build_target(TINY_WORLD_TARGET, long_form_tokenizer, seed=0)
    scores = evaluate(model.eval(), processor, EvalMode.GENERATE, Split.TEST, 2, long_form=True)
    world = WorldConfig(96, 16)  # what evaluate reads off the tiny target's vision config
    samples = list(iter_samples(0, Split.TEST, 2, world, long_form=True))
    for task_type in (TaskType.REPORT, TaskType.STEP_BY_STEP):
        score = scores[task_type.value]
        references = [t.answer for s in samples for t in s.tasks if t.task_type is task_type]
        assert score.total == 2 and score.facts.total == sum(
            len(stated_facts(r)) for r in references
        )
        assert 0.0 <= score.fact_accuracy <= 1.0
    assert scores["count_all"].facts is None and scores["count_all"].fact_kinds is None
    kinds = scores["report"].fact_kinds
    assert sum((s for k, s in kinds.items() if "#" not in k), FactScore(0, 0)) == (
        scores["report"].facts
    )
    assert (
        kinds["object #1"].total
        == sum(1 for s in samples for t in s.tasks if t.task_type is TaskType.REPORT) * 4
    )
    table = format_scores(scores)
    assert "report" in table and "facts by kind" in table and "object colour" in table
    teacher = evaluate(model, processor, EvalMode.TEACHER_FORCED, Split.TEST, 2, long_form=True)
    assert teacher["report"].facts == scores["report"].facts  # the same greedy answers


def test_train_target_cli_expresses_a_deep_long_form_target(world_tokenizer_dir, tmp_path):
    import argparse

    from hivis.world.cli import _target_train_config, add_world_commands

    parser = argparse.ArgumentParser()
    add_world_commands(parser.add_subparsers())
    args = ["world", "train-target", "--out", str(tmp_path), "--tokenizer"]
    args += [str(world_tokenizer_dir), "--text-layers", "24", "--text-intermediate", "256"]
    cfg = _target_train_config(parser.parse_args([*args, "--long-form"]))
    assert cfg.long_form and cfg.target.text_layers == 24 and cfg.target.text_intermediate == 256
    assert cfg.lookup_layer_index == 11  # the middle of the deeper text model
    assert not _target_train_config(parser.parse_args(args)).long_form  # off by default
    cfg = _target_train_config(parser.parse_args([*args, "--long-form", "--long-form-lookup"]))
    assert (
        cfg.long_form_lookup and not _target_train_config(parser.parse_args(args)).long_form_lookup
    )


def test_long_form_sentences_refer_to_the_objects_they_describe():
    scene = _three_objects()  # reading order: the triangle (1), the square (2), the circle (0)
    task = report(scene, np.random.default_rng(0))
    spans = [(task.answer[a:b], objects) for a, b, objects in task.answer_referents]
    assert spans == [
        ("Object one is a large red triangle at the top left.", (1,)),
        ("Object two is a small red square in the center.", (2,)),
        ("Object three is a small blue circle at the bottom right.", (0,)),
        ("two red objects", (1, 2)),  # a count looks at the objects it counts
        ("one blue object", (0,)),
        ("one circle", (0,)),
        ("one square", (2,)),
        ("one triangle", (1,)),
        ("two small objects", (0, 2)),
        ("one large object", (1,)),
        ("Object one is to the left of object two and above it.", (1, 2)),
        ("Object two is to the left of object three and above it.", (2, 0)),
    ]
    task = step_by_step(scene, np.random.default_rng(0))
    spans = [(task.answer[a:b], objects) for a, b, objects in task.answer_referents]
    assert "blue objects and how many circles" in task.question
    assert [objects for _, objects in spans] == [(1,), (1,), (2,), (2,), (0,), (0,), (0,), (0,)]
    assert spans[4][0] == "Object three is a small blue circle at the bottom right."
    assert spans[5][0].startswith("It is ") and spans[5][0].endswith(".")
    assert [text for text, _ in spans[6:]] == ["one blue object", "one circle"]  # the totals
    assert task.referents == ()


def _looked_at_runs(batch, row: int, segment: int, tokenizer, offset: int) -> list:
    """(decoded label tokens, visual tokens looked at) of each run of consecutive answer
    positions of ``segment`` that look at the same non-empty set of visual tokens."""
    runs = []
    for t in (batch.segment_ids[row] == segment).nonzero()[:, 0].tolist():
        keys = tuple(k - offset for k in batch.lookup_keys[row, t].nonzero()[:, 0].tolist())
        label = batch.labels[row, t].item()
        if runs and runs[-1][1] == keys:
            runs[-1][0].append(label)
        else:
            runs.append(([label], keys))
    return [(tokenizer.decode(ids).strip(), keys) for ids, keys in runs if keys]


def _expected_runs(scene, task, grid: int) -> list:
    """The answer's ``answer_referents`` spans, consecutive spans about the same objects
    merged, with the objects' visual tokens (class token first, then row-major patches), sorted."""
    merged = []
    for start, end, objects in task.answer_referents:
        if merged and merged[-1][2] == objects and merged[-1][1] + 1 == start:
            merged[-1][1] = end
        else:
            merged.append([start, end, objects])
    cells = [(int(o.y // 16), int(o.x // 16)) for o in scene.objects]
    return [
        (task.answer[a:b], tuple(sorted(1 + cells[i][0] * grid + cells[i][1] for i in objects)))
        for a, b, objects in merged
    ]


def test_long_form_lookup_points_each_sentence_at_its_object(
    long_form_tokenizer, world_tokenizer_dir, tmp_path
):
    from tiny_world import TINY_WORLD_SCENES, TINY_WORLD_TARGET

    from hivis.world.target.batches import make_batch
    from hivis.world.target.config import TargetTrainConfig
    from hivis.world.target.model import build_target

    _, processor = build_target(TINY_WORLD_TARGET, long_form_tokenizer, seed=0)
    args = (Split.TRAIN, 0, 3, 0, TINY_WORLD_SCENES, processor, 37)
    plain, _ = make_batch(*args, lookup=True, long_form=True)
    batch, _ = make_batch(*args, lookup=True, long_form=True, long_form_lookup=True)
    image_id = long_form_tokenizer.convert_tokens_to_ids("<image>")
    segment = 0
    for row in range(3):
        sample = make_sample(0, Split.TRAIN, row, TINY_WORLD_SCENES, long_form=True)
        offset = int((batch.input_ids[row] == image_id).nonzero()[0, 0])
        for task in sample.tasks:
            positions = batch.segment_ids[row] == segment
            if task.task_type.long_form:
                runs = _looked_at_runs(batch, row, segment, long_form_tokenizer, offset)
                assert runs == _expected_runs(sample.scene, task, TINY_WORLD_SCENES.grid)
                n = len(sample.scene.objects)
                assert len(runs) >= (2 * n - 1 if task.task_type is TaskType.REPORT else n)
            else:  # the short questions look where they did
                assert torch.equal(
                    batch.lookup_keys[row, positions], plain.lookup_keys[row, positions]
                )
            segment += 1
    assert segment == len(batch.segment_tasks)
    with pytest.raises(ValueError, match="needs long_form"):
        TargetTrainConfig(
            out_dir=tmp_path,
            tokenizer_dir=world_tokenizer_dir,
            long_form_lookup=True,
            target=TINY_WORLD_TARGET,
        )


def test_long_form_lookup_without_long_form_is_refused_by_the_cli(
    world_tokenizer_dir, tmp_path, capsys
):
    from hivis.cli import main as hivis_cli

    out = tmp_path / "run"
    argv = ["world", "train-target", "--out", str(out), "--tokenizer", str(world_tokenizer_dir)]
    assert hivis_cli([*argv, "--long-form-lookup"]) == 2
    assert "needs long_form (--long-form)" in capsys.readouterr().err and not out.exists()
