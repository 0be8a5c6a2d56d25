"""``hivis bench``'s report: per-method summaries of the measured runs, and their tables.

Definitions (per method, over all questions unless said otherwise):

* ``speedup`` = sum of autoregressive median times / sum of the method's median times (whole
  generation, prefill included; ``decode_speedup`` leaves the prefill out);
* ``tokens_per_s`` = generated tokens / sum of median times;
* ``acceptance_length`` = tokens committed per target forward, bonus token included, at T = 0
  (``acceptance_length_t1``: the same at T = 1, one seeded run per question);
* ``drafter_prefill_ratio`` = mean over questions of drafter prefill rows / target prefill
  tokens;
* ``identical_fraction`` = fraction of questions whose output token ids equal the target's own
  greedy output (the autoregressive run);
* ``reused_prefix_fraction`` = prompt tokens taken from a prefix cache / all prompt tokens
  (0 without ``prefix_cache``);
* ``draft_ms_per_step``, ``verify_ms_per_step``, ``prefill_ms``: where the time goes (see
  ``_step_costs``);
* ``prefill_share`` = fraction of the method's time spent in the target's prefill (the same
  work for every method): autoregressive's value p bounds every speedup at 1 / p, reached only
  if decoding cost nothing (:func:`speedup_ceiling`);
* on the long-form questions only (null when none ran): ``long_form_speedup`` (as
  ``speedup``), ``long_form_speedup_t1`` (tokens per second of the method's seeded T = 1 runs
  over those of autoregressive's: sampled answers differ in length, so rates are compared),
  ``long_form_fact_accuracy`` (:func:`hivis.world.data.facts.fact_score` of the method's
  greedy answers against the references, facts pooled);
* ``distinct_4gram_ratio``: the distinct-4 fraction (distinct word 4-grams / all word 4-grams,
  :func:`hivis.world.data.facts.distinct_ngram_fraction`) of the method's greedy answers over
  that of the reference answers, on the headline questions (the long-form ones when they ran,
  else all): 1.0 = as varied as the references, lower = more repetitive (a looping answer).
"""

from __future__ import annotations

import statistics

from hivis.world.data.facts import FactScore, distinct_ngram_fraction, fact_score


def _acceptance(results: list) -> float:
    steps = sum(r.metrics.verify_steps for r in results)
    return sum(r.metrics.committed_in_steps for r in results) / steps if steps else 0.0


def _speedup(runs: list, method, base) -> float | None:
    """Sum of ``base``'s median times over ``method``'s on ``runs`` (None without runs)."""
    if not runs:
        return None
    return sum(r.median_s(base) for r in runs) / sum(r.median_s(method) for r in runs)


def summarise(method, runs: list, base) -> dict:
    """The JSON entry of ``method`` (definitions in the module docstring); ``base`` is the
    autoregressive method."""
    spent = sum(r.median_s(method) for r in runs)
    tokens = sum(len(r.greedy[method][0].token_ids) for r in runs)
    first = [r.greedy[method][0] for r in runs]
    phases = not method.external  # HF reports no prefill time or acceptance
    entry = {
        "method": method.value,
        "acceptance_length": _acceptance(first) if phases else None,
        "tokens_per_s": tokens / spent,
        "speedup": _speedup(runs, method, base),
        "drafter_prefill_ratio": None,
        "identical_fraction": sum(r.identical(method) for r in runs) / len(runs),
        "decode_speedup": None,
        "acceptance_length_t1": None,
        "questions": len(runs),
        "new_tokens": tokens,
        "reused_prefix_fraction": sum(r.metrics.reused_prefix_length for r in first)
        / sum(r.metrics.target_prefill_length for r in first)
        if phases
        else 0.0,
    }
    if phases:
        decode_spent = sum(r.median_s(method, True) for r in runs)
        entry["decode_speedup"] = sum(r.median_s(base, True) for r in runs) / decode_spent
        entry["prefill_share"] = 1.0 - decode_spent / spent
        entry.update(_step_costs(runs, method))
    if method.drafter is not None:
        entry["drafter_prefill_ratio"] = statistics.mean(
            r.metrics.drafter_prefill_ratio for r in first
        )
        if all(method in r.sampled for r in runs):
            entry["acceptance_length_t1"] = _acceptance([r.sampled[method] for r in runs])
    entry.update(_long_form(method, runs, base))
    entry["by_task"] = _by_task(method, runs, base)
    return entry


def _long_form(method, runs: list, base) -> dict:
    """The long-form fields of ``method`` (None where no long-form question ran)."""
    long = [r for r in runs if r.case.task.long_form]
    headline = long or runs
    references = [r.case.reference for r in headline]
    answers = [r.greedy[method][0].text.strip() for r in headline]
    out = {
        "long_form_speedup": _speedup(long, method, base),
        "long_form_speedup_t1": None,
        "long_form_fact_accuracy": None,
        "distinct_4gram_ratio": distinct_ngram_fraction(answers, 4)
        / (distinct_ngram_fraction(references, 4) or 1.0),
    }
    if long:
        facts = FactScore(0, 0)
        for run, answer in zip(long, answers, strict=True):
            facts += fact_score(answer, run.case.reference)
        out["long_form_fact_accuracy"] = facts.accuracy
    if long and all(method in r.sampled and base in r.sampled for r in long):
        out["long_form_speedup_t1"] = _rate([r.sampled[method] for r in long]) / _rate(
            [r.sampled[base] for r in long]
        )
    return out


def _rate(results: list) -> float:
    """Tokens per second over ``results``."""
    return sum(len(r.token_ids) for r in results) / sum(r.metrics.total_s for r in results)


def _step_costs(runs: list, method) -> dict:
    """Mean milliseconds per target forward after the prefill, over every greedy run:
    ``draft_ms_per_step`` (the drafter's calls and tree building), ``verify_ms_per_step``
    (the target's tree pass or decode step, verification, cache compaction); and
    ``prefill_ms``, the mean target prefill per question."""
    results = [r for case in runs for r in case.greedy[method]]
    steps = sum(r.metrics.verify_steps for r in results) or 1
    return {
        "draft_ms_per_step": 1e3 * sum(r.metrics.draft_s for r in results) / steps,
        "verify_ms_per_step": 1e3 * sum(r.metrics.verify_s for r in results) / steps,
        "prefill_ms": 1e3 * statistics.mean(r.metrics.prefill_s for r in results),
    }


def _by_task(method, runs: list, base) -> dict:
    out = {}
    for task in sorted({r.case.task for r in runs}, key=lambda t: t.value):
        subset = [r for r in runs if r.case.task is task]
        first = [r.greedy[method][0] for r in subset]
        sampled = [r.sampled[method] for r in subset if method in r.sampled]
        out[task.value] = {
            "questions": len(subset),
            "mean_new_tokens": statistics.mean(len(f.token_ids) for f in first),
            "speedup": _speedup(subset, method, base),
            "acceptance_length": None if method.external else _acceptance(first),
            "acceptance_length_t1": _acceptance(sampled) if method.drafter and sampled else None,
        }
    return out


def speedup_ceiling(report: dict) -> float | None:
    """1 / autoregressive's prefill share: the whole-generation speedup of a method whose
    decoding took no time (every method pays the same prefill)."""
    for m in report["methods"]:
        if m["method"] == "autoregressive" and m.get("prefill_share"):
            return 1.0 / m["prefill_share"]
    return None


def _fmt(value, pattern: str, scale: float = 1.0) -> str:
    return "-" if value is None else pattern.format(scale * value)


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def format_table(report: dict) -> str:
    """Markdown table of the methods."""
    header = "method, acceptance T=0, acceptance T=1, tokens/s, speedup, decode speedup, "
    header += "drafter prefill, identical"
    rows = [
        [
            m["method"],
            _fmt(m["acceptance_length"], "{:.2f}"),
            _fmt(m["acceptance_length_t1"], "{:.2f}"),
            f"{m['tokens_per_s']:.1f}",
            f"{m['speedup']:.2f}x",
            _fmt(m["decode_speedup"], "{:.2f}x"),
            _fmt(m["drafter_prefill_ratio"], "{:.1f} %", 100),
            f"{m['identical_fraction']:.3f}",
        ]
        for m in report["methods"]
    ]
    return _markdown(header.split(", "), rows)


def format_long_form(report: dict) -> str:
    """The headline: the long-form questions' table, or why they did not run."""
    info = report["long_form"]
    if not info["questions"]:
        return f"long-form questions: not run ({info['note']}); the long_form_* fields are null"
    header = "method, speedup T=0, speedup T=1, fact accuracy, distinct 4-grams vs references"
    rows = [
        [
            m["method"],
            _fmt(m["long_form_speedup"], "{:.2f}x"),
            _fmt(m["long_form_speedup_t1"], "{:.2f}x"),
            _fmt(m["long_form_fact_accuracy"], "{:.1f} %", 100),
            f"{m['distinct_4gram_ratio']:.2f}",
        ]
        for m in report["methods"]
    ]
    title = (
        f"long-form questions ({', '.join(info['tasks'])}: {info['questions']} questions, "
        f"{info['mean_new_tokens']:.0f} new tokens on average):"
    )
    return title + "\n" + _markdown(header.split(", "), rows)


def format_step_costs(report: dict) -> str:
    """One line per hivis-engine method: prefill, then milliseconds per target forward."""
    lines = ["time per question and per target forward after the prefill (means):"]
    for m in report["methods"]:
        if "verify_ms_per_step" in m:
            lines.append(
                f"  {m['method']:<15} prefill {m['prefill_ms']:6.1f} ms | per step: draft "
                f"{m['draft_ms_per_step']:.2f} ms + verify {m['verify_ms_per_step']:.2f} ms"
            )
    return "\n".join(lines)


def format_by_task(report: dict) -> str:
    """Markdown table: per task type, mean answer length and each method's speedup
    (acceptance length at T = 0 and T = 1 in parentheses)."""
    methods = [m for m in report["methods"] if m["method"] != "autoregressive"]
    rows = []
    for task, first in report["methods"][0]["by_task"].items():
        cells = [task, str(first["questions"]), f"{first['mean_new_tokens']:.1f}"]
        for m in methods:
            t = m["by_task"][task]
            acc = [_fmt(t[k], "{:.2f}") for k in ("acceptance_length", "acceptance_length_t1")]
            acc = "" if acc == ["-", "-"] else f" ({' / '.join(acc)})"
            cells.append(f"{t['speedup']:.2f}x{acc}")
        rows.append(cells)
    header = ["task", "questions", "mean new tokens"] + [m["method"] for m in methods]
    return _markdown(header, rows)
