"""``hivis bench`` with long-form questions, on tiny random-weight world models whose tokenizer
was trained with them (the shipped target's was not)."""

from __future__ import annotations

import json

import pytest
from tiny_world import TINY_WORLD_TARGET

from hivis.world.app.bench import BenchConfig, Method, run_bench
from hivis.world.app.bench_report import format_by_task, format_long_form
from hivis.world.data.facts import distinct_ngram_fraction, fact_score
from hivis.world.data.tasks import TaskType
from hivis.world.drafters.shipped import DrafterKind, test_cases


@pytest.fixture(scope="module")
def long_form_assets(tmp_path_factory):
    """Assets of a random-weight tiny target with a long-form tokenizer and an untrained
    HiViS drafter."""
    from hivis.drafter import HiViSDrafter
    from hivis.targets import load_target
    from hivis.world.data.tokenizer import train_tokenizer
    from hivis.world.target.model import build_target, save_target

    root = tmp_path_factory.mktemp("long-form-assets")
    model, processor = build_target(TINY_WORLD_TARGET, train_tokenizer(640, 200, long_form=True))
    save_target(model, processor, root / "target")
    target = load_target(root / "target")
    HiViSDrafter(target, num_steps=3).save(root / "drafters" / DrafterKind.HIVIS.value)
    (root / "manifest.json").write_text(json.dumps({"source_target": "tiny random"}))
    return root


def test_bench_reports_long_form_fields_as_defined(long_form_assets):
    methods = (Method.AUTOREGRESSIVE, Method.HF_GENERATE, Method.HIVIS)
    cfg = BenchConfig(
        scenes=1, tasks=(TaskType.COUNT_ALL, TaskType.REPORT), methods=methods, reps=1
    )
    report = run_bench(cfg, long_form_assets, progress=False)
    by = {m["method"]: m for m in report["methods"]}
    assert report["questions"] == 2 and report["long_form"]["tasks"] == ["report"]
    assert report["long_form"]["note"] is None and report["long_form"]["questions"] == 1
    cases = test_cases(1, (TaskType.REPORT,), long_form=True)
    for entry in by.values():
        assert entry["identical_fraction"] == 1.0  # HF generate and hivis: the target's own
        assert entry["long_form_speedup"] > 0.0
        assert 0.0 <= entry["long_form_fact_accuracy"] <= 1.0
    assert by["autoregressive"]["long_form_speedup"] == pytest.approx(1.0)
    assert by["hivis"]["long_form_speedup_t1"] > 0.0
    assert by["hf-generate"]["long_form_speedup_t1"] is None  # no T = 1 run for HF
    # Lossless methods state the same facts, scored against the world's reference.
    accuracy = {m["long_form_fact_accuracy"] for m in by.values()}
    assert len(accuracy) == 1
    assert report["long_form"]["mean_new_tokens"] >= 1
    assert cases[0].reference.startswith("Here is")
    text = format_long_form(report)
    assert "| hivis |" in text and "report" in text
    assert "| report | 1 |" in format_by_task(report)
    assert report["hf_generate_tokens_per_s"] > 0 and report["autoregressive_tokens_per_s"] > 0


def test_fact_accuracy_and_distinct_ngrams_of_hand_made_answers():
    reference = test_cases(1, (TaskType.REPORT,), long_form=True)[0].reference
    assert fact_score(reference, reference).accuracy == 1.0
    assert distinct_ngram_fraction(["a b c d a b c d"], 4) == pytest.approx(4 / 5)
    assert distinct_ngram_fraction(["a b c", "d e f g"], 4) == 1.0  # n-grams stay in a text
    assert distinct_ngram_fraction(["a b c"], 4) == 0.0
    looping = " ".join(["Object one is a small red circle."] * 10)
    assert distinct_ngram_fraction([looping], 4) < 0.2 < distinct_ngram_fraction([reference], 4)


def test_demo_shows_one_long_form_answer_when_the_target_can(long_form_assets, tmp_path):
    from hivis.world.app.demo import run_demo

    lines: list[str] = []
    rows = run_demo(tmp_path, scenes=1, reps=1, assets=long_form_assets, log=lines.append)
    assert [r.case.task for r in rows].count(TaskType.REPORT) == 1
    report_row = next(r for r in rows if r.case.task is TaskType.REPORT)
    assert report_row.identical and report_row.right.endswith("%")
    assert report_row.facts == fact_score(report_row.answer, report_row.case.reference).accuracy
    assert not any("no long-form answer" in line for line in lines)
