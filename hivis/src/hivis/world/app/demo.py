"""``hivis demo``: the shipped world models answer held-out scenes, with and without HiViS.

It loads the shipped tiny LLaVA target and its HiViS drafter (``hivis/world/assets``, built by
``make world``), takes test-split scenes (never seen in training) and asks, for each, a
description, a reasoning question and a counting question. Every question is answered by the
target alone (autoregressive) and by HiViS speculative decoding, interleaved ``reps`` times;
the table shows the answer, whether it is right (equal to the world's reference), whether the
HiViS output is identical to the target's own, the acceptance length (bonus token included),
the speedup (median target-alone time / median HiViS time, whole generation) and the
drafter's prefill as a share of the target's. A PNG shows the scenes with answers and metrics.
When the target's tokenizer was trained with the long-form questions it also asks the first
scene for a report (100-300 tokens), whose "right" column is the share of its facts stated
right (:mod:`hivis.world.data.facts`); otherwise it says why it does not.

Without the shipped models it says how to build them and runs the on-the-fly demo
(:mod:`hivis.world.app.demo_onthefly`: a random-weight model and a drafter trained in seconds).
"""

from __future__ import annotations

import statistics
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

from hivis.world.app.bench import WORLD_TREE, BenchConfig, Method, run_method
from hivis.world.data.facts import fact_score
from hivis.world.data.tasks import TaskType
from hivis.world.data.tokenizer import NO_LONG_FORM, expresses_long_form
from hivis.world.drafters.shipped import (
    AssetsMissing,
    DrafterKind,
    TestCase,
    load_world,
    test_cases,
)

DEMO_TASKS = (TaskType.DESCRIBE, TaskType.REASONING, TaskType.COUNT_COLOUR)


@dataclass
class DemoRow:
    """One held-out question: the HiViS answer and its measurements."""

    case: TestCase
    answer: str
    correct: bool
    identical: bool
    acceptance_length: float
    speedup: float
    prefill_ratio: float
    facts: float | None = None  # long-form: share of the reference's facts stated right

    @property
    def right(self) -> str:
        if self.facts is not None:
            return f"{100 * self.facts:.0f}%"
        return "yes" if self.correct else "no"


def compare(world, case: TestCase, reps: int, max_new_tokens: int) -> DemoRow:
    """Target alone vs HiViS on one question, ``reps`` interleaved rounds after a warm-up."""
    cfg = BenchConfig(reps=reps, max_new_tokens=max_new_tokens, tree=WORLD_TREE)
    methods = (Method.AUTOREGRESSIVE, Method.HIVIS)
    times = {m: [] for m in methods}
    results = {}
    for rep in range(reps + 1):
        for method in methods if rep % 2 else methods[::-1]:
            results[method] = run_method(world, method, case, cfg)
            if rep:  # round 0 is the warm-up
                times[method].append(results[method].metrics.total_s)
    fast, slow = results[Method.HIVIS], results[Method.AUTOREGRESSIVE]
    answer = fast.text.strip()
    facts = fact_score(answer, case.reference).accuracy if case.task.long_form else None
    return DemoRow(
        case=case,
        answer=answer,
        correct=answer == case.reference,
        facts=facts,
        identical=fast.token_ids == slow.token_ids,
        acceptance_length=fast.metrics.acceptance_length,
        speedup=statistics.median(times[Method.AUTOREGRESSIVE])
        / statistics.median(times[Method.HIVIS]),
        prefill_ratio=fast.metrics.drafter_prefill_ratio,
    )


def format_table(rows: list[DemoRow]) -> str:
    lines = [
        "scene  task          | right | identical | accept. length | speedup | drafter prefill",
        "---------------------|-------|-----------|----------------|---------|----------------",
    ]
    for r in rows:
        scene = r.case.uid.rsplit("-", 1)[-1].lstrip("0") or "0"
        lines.append(
            f"{scene:6s} {r.case.task.value:13s} | {r.right:5s} | "
            f"{'yes' if r.identical else 'NO':9s} | {r.acceptance_length:14.2f} | "
            f"{r.speedup:6.2f}x | {100 * r.prefill_ratio:13.1f} %"
        )
    return "\n".join(lines)


def _panel_text(row: DemoRow) -> str:
    printable = "".join(ch if ch.isprintable() else "?" for ch in row.answer)
    short = textwrap.shorten(printable, 320, placeholder=" ...")  # a report: 100-300 tokens
    answer = textwrap.fill(short, 64, subsequent_indent="   ")
    return (
        f"Q: {row.case.question}\nA: {answer}\n"
        f"identical to target: {'yes' if row.identical else 'NO'}   right: "
        f"{row.right}\naccept. length {row.acceptance_length:.2f}   "
        f"speedup {row.speedup:.2f}x   drafter prefill {100 * row.prefill_ratio:.1f} %"
    )


def plot(rows: list[DemoRow], path: Path, note: str) -> Path:
    """Scenes (one row each) with their questions, answers and metrics."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenes = list(dict.fromkeys(r.case.uid for r in rows))
    fig, axes = plt.subplots(
        len(scenes),
        2,
        figsize=(11, 3.3 * len(scenes)),
        squeeze=False,
        gridspec_kw={"width_ratios": [1, 3.2]},
    )
    for (image_ax, text_ax), uid in zip(axes, scenes, strict=True):
        mine = [r for r in rows if r.case.uid == uid]
        image_ax.imshow(mine[0].case.image)
        image_ax.set_title(uid, fontsize=8)
        image_ax.set_axis_off()
        text_ax.set_axis_off()
        text_ax.text(
            0.0,
            1.0,
            "\n\n".join(_panel_text(r) for r in mine),
            va="top",
            fontsize=7.2,
            family="monospace",
            transform=text_ax.transAxes,
        )
    fig.suptitle(f"hivis demo: shipped tiny LLaVA, target alone vs HiViS ({note})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def run_demo(
    out: Path | None = None,
    scenes: int = 3,
    reps: int = 3,
    max_new_tokens: int = 96,
    assets: Path | None = None,
    log=print,
) -> list[DemoRow]:
    """Answer ``scenes`` test scenes (describe / reasoning / counting); table + ``demo.png``.

    Raises :class:`~hivis.world.drafters.shipped.AssetsMissing` when the shipped models are absent.
    """
    out = Path(out) if out else Path.cwd() / "hivis-demo"
    start = time.perf_counter()
    world = load_world(assets, kinds=(DrafterKind.HIVIS,))
    out.mkdir(parents=True, exist_ok=True)
    target = world.target.model
    log(
        f"target: shipped tiny LLaVA, {sum(p.numel() for p in target.parameters()) / 1e6:.1f} M "
        f"parameters, 256 visual tokens per image; HiViS drafter (1 layer), tree "
        f"{WORLD_TREE.total_tokens} nodes / depth {WORLD_TREE.depth} / top-{WORLD_TREE.top_k} / "
        f"floor {WORLD_TREE.min_prob}"
    )
    cases = test_cases(scenes, DEMO_TASKS)
    if expresses_long_form(world.target.tokenizer):
        cases.insert(len(DEMO_TASKS), test_cases(1, (TaskType.REPORT,), long_form=True)[0])
    else:
        log(f"no long-form answer in this demo: {NO_LONG_FORM}")
    rows = []
    for case in cases:
        rows.append(compare(world, case, reps, max_new_tokens))
        log(f"[{case.uid}] {case.question}\n    -> {rows[-1].answer}")
    log(format_table(rows))
    log(
        f"identical to the target's own output: {sum(r.identical for r in rows)}/{len(rows)}; "
        f"right: {sum(r.correct for r in rows)}/{len(rows)}"
    )
    note = f"{reps} interleaved reps, medians, {time.strftime('%Y-%m-%d')}"
    log(f"figure: {plot(rows, out / 'demo.png', note)}")
    log(f"demo wall time: {time.perf_counter() - start:.1f} s")
    return rows


def run(out, quick: bool, assets: Path | None = None, log=print) -> int:
    """The ``hivis demo`` command: the world demo, or the fallback without shipped models."""
    try:
        if quick:
            rows = run_demo(out, scenes=1, reps=1, assets=assets, log=log)
        else:
            rows = run_demo(out, assets=assets, log=log)
    except AssetsMissing as err:
        log(f"hivis demo: {err}")
        log("running the on-the-fly demo instead (random-weight model, drafter trained now)")
        from hivis.world.app.demo_onthefly import run_onthefly_demo

        if quick:
            rows = run_onthefly_demo(out, n_train=8, steps=(4, 2), n_test=2, max_new_tokens=8)
        else:
            rows = run_onthefly_demo(out)
    return 0 if all(row.identical for row in rows) else 1
