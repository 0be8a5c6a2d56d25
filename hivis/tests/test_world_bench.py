"""``hivis bench`` on the shipped world: the JSON schema, losslessness, and the definitions."""

from __future__ import annotations

import json

import pytest

from hivis.cli import main
from hivis.world.app.bench import BenchConfig, Method, run_bench
from hivis.world.app.bench_report import (
    format_by_task,
    format_long_form,
    format_step_costs,
    format_table,
    speedup_ceiling,
)
from hivis.world.data.tasks import TaskType

KEYS = {
    "method",
    "acceptance_length",
    "tokens_per_s",
    "speedup",
    "drafter_prefill_ratio",
    "identical_fraction",
    "long_form_speedup",
    "long_form_speedup_t1",
    "long_form_fact_accuracy",
    "distinct_4gram_ratio",
}


@pytest.fixture(scope="module")
def report():
    cfg = BenchConfig(scenes=1, tasks=(TaskType.DESCRIBE, TaskType.COUNT_ALL), reps=1)
    return run_bench(cfg, progress=False)


def test_bench_report_schema_and_lossless(report):
    assert [m["method"] for m in report["methods"]] == [m.value for m in Method]
    assert report["questions"] == 2
    assert {"config", "tree", "machine", "date"} <= set(report)
    for entry in report["methods"]:
        assert KEYS <= set(entry)
        assert entry["tokens_per_s"] > 0 and entry["speedup"] > 0
        if entry["method"] != "assisted":  # HF prompt lookup is an external peer
            assert entry["identical_fraction"] == 1.0
        # The tasks asked (describe, count_all) hold no long-form question: none ran.
        assert entry["long_form_speedup"] is None and entry["long_form_fact_accuracy"] is None
        assert entry["distinct_4gram_ratio"] > 0.0
    json.dumps(report)  # serialisable as is
    assert report["long_form"]["questions"] == 0
    assert "no long-form task" in report["long_form"]["note"]
    assert "not run" in format_long_form(report) and "null" in format_long_form(report)
    by = {m["method"]: m for m in report["methods"]}
    assert report["hf_generate_tokens_per_s"] == by["hf-generate"]["tokens_per_s"]
    assert report["autoregressive_tokens_per_s"] == by["autoregressive"]["tokens_per_s"]


def test_bench_definitions(report):
    by = {m["method"]: m for m in report["methods"]}
    ar = by["autoregressive"]
    assert ar["speedup"] == pytest.approx(1.0)
    assert ar["acceptance_length"] == pytest.approx(1.0)
    assert ar["drafter_prefill_ratio"] is None
    for name in ("hivis", "text-only", "eagle"):
        entry = by[name]
        assert entry["acceptance_length"] >= 1.0
        assert entry["acceptance_length_t1"] >= 1.0
        # tokens/s and speedup come from the same times: both ratios agree.
        ratio = entry["tokens_per_s"] / ar["tokens_per_s"]
        assert ratio == pytest.approx(entry["speedup"], rel=1e-9)
        assert 0.0 < entry["prefill_share"] < 1.0
    assert 0.0 < ar["prefill_share"] < 1.0
    assert speedup_ceiling(report) == pytest.approx(1.0 / ar["prefill_share"])
    assert by["hivis"]["drafter_prefill_ratio"] < 0.1
    assert by["eagle"]["drafter_prefill_ratio"] > 0.95
    assert "| hivis |" in format_table(report)
    assert "| describe | 1 |" in format_by_task(report)
    # Autoregressive drafts nothing; every method verifies and prefills.
    assert ar["draft_ms_per_step"] == 0.0
    for entry in (ar, by["hivis"], by["eagle"], by["text-only"]):
        assert entry["verify_ms_per_step"] > 0.0 and entry["prefill_ms"] > 0.0
    for name in ("hivis", "text-only", "eagle"):
        assert by[name]["draft_ms_per_step"] > 0.0
    assert format_step_costs(report).count(" per step: ") == 4  # HF's rows have no phases
    assert by["hf-generate"]["acceptance_length"] is None
    assert by["hf-generate"]["by_task"]["describe"]["acceptance_length"] is None
    assert by["hivis"]["by_task"]["describe"]["acceptance_length_t1"] >= 1.0


def test_bench_cli_writes_json(tmp_path, capsys):
    path = tmp_path / "bench.json"
    args = ["bench", "--scenes", "1", "--task", "count_all", "--reps", "1", "--no-sampling"]
    assert main([*args, "--method", "hivis", "--json", str(path)]) == 0
    data = json.loads(path.read_text())
    assert [m["method"] for m in data["methods"]] == ["autoregressive", "hivis"]
    assert data["methods"][1]["identical_fraction"] == 1.0
    out = capsys.readouterr().out
    assert "| hivis |" in out and "no method can exceed" in out
    assert "long-form questions: not run" in out


def test_bench_rejects_bad_config():
    with pytest.raises(ValueError, match="reps"):
        BenchConfig(reps=0)
    with pytest.raises(ValueError, match="autoregressive"):
        BenchConfig(methods=(Method.HIVIS,))


def test_bench_prefix_cache_prefills_each_image_once_and_stays_lossless():
    import hivis
    from hivis.world.drafters.shipped import load_world, test_cases

    tasks = (TaskType.COUNT_ALL, TaskType.COUNT_COLOUR)
    cfg = BenchConfig(
        scenes=2,
        tasks=tasks,
        methods=(Method.AUTOREGRESSIVE, Method.HIVIS),
        reps=1,
        sampling_acceptance=False,
        prefix_cache=True,
    )
    report = run_bench(cfg, progress=False)
    by = {m["method"]: m for m in report["methods"]}
    assert report["questions"] == 4
    # Of each scene's two questions the second reuses all but its question tokens.
    for entry in by.values():
        assert 0.4 < entry["reused_prefix_fraction"] < 0.5
    assert by["hivis"]["identical_fraction"] == 1.0
    # The prefix-cached reference is the target's own cold greedy output.
    world = load_world(None, ())
    cache = hivis.PrefixCache()
    for case in test_cases(2, tasks):
        cold = hivis.autoregressive(world.target, [case.image], case.prompt, 96)
        warm = hivis.autoregressive(world.target, [case.image], case.prompt, 96, prefix_cache=cache)
        assert warm.token_ids == cold.token_ids
    assert cache.hits == 2 and cache.misses == 2
    with pytest.raises(ValueError, match="assisted"):
        BenchConfig(prefix_cache=True)
    with pytest.raises(ValueError, match="hf-generate"):
        BenchConfig(prefix_cache=True, methods=(Method.AUTOREGRESSIVE, Method.HF_GENERATE))


def test_bench_refuses_long_form_questions_the_target_cannot_express(world_tokenizer_dir):
    from transformers import AutoTokenizer

    from hivis.world.app.bench import long_form_cases

    short_only = AutoTokenizer.from_pretrained(world_tokenizer_dir)  # no long-form words
    asked = BenchConfig(scenes=1, tasks=(TaskType.REPORT,), reps=1)
    with pytest.raises(ValueError, match="long-form questions asked for"):
        long_form_cases(asked, short_only)
    assert long_form_cases(BenchConfig(scenes=1, reps=1), short_only)[0] is False


def test_bench_cli_options_reach_the_config():
    import argparse

    from hivis.world.app.cli import _bench_config, add_bench_command

    parser = argparse.ArgumentParser()
    add_bench_command(parser.add_subparsers())
    cfg = _bench_config(parser.parse_args(["bench", "--hf-target-steps", "--no-long-form"]))
    assert cfg.lean_target is False and cfg.long_form is False
    cfg = _bench_config(parser.parse_args(["bench", "--prefix-cache"]))
    assert cfg.lean_target is True and cfg.long_form is None
    assert not any(m.external for m in cfg.methods)


def test_tune_tree_reports_long_form_speedups_per_tree(tmp_path, capsys, monkeypatch):
    """``--tune-tree`` runs every tree of the grid on the same questions: the long-form ones at
    T = 0 and T = 1, printed as a table and written to JSON."""
    from hivis.tree import TreeConfig
    from hivis.world.app import cli as world_cli

    trees = [TreeConfig(6, 6, 1), TreeConfig(12, 6, 2)]
    monkeypatch.setattr(world_cli, "TUNING_TREES", trees)
    path = tmp_path / "tune.json"
    args = ["bench", "--tune-tree", "--scenes", "1", "--task", "report", "--reps", "1"]
    assert main([*args, "--json", str(path)]) == 0
    data = json.loads(path.read_text())
    assert data["config"]["tasks"] == ["report"]
    rows = data["tune_tree"]
    assert [r["tree"]["total_tokens"] for r in rows] == [6, 12]
    for row in rows:
        assert row["long_form_speedup"] > 0 and row["long_form_speedup_t1"] > 0
        assert row["identical_fraction"] == 1.0
    out = capsys.readouterr().out
    assert "long-form T=1" in out and out.count("x |") >= 2
