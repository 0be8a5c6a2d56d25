"""``hivis bench``: the shipped world's methods side by side on held-out test scenes.

Methods (all on the shipped target, batch 1, greedy unless said otherwise):

* ``autoregressive``: the target alone with its KV cache (:func:`hivis.autoregressive`);
* ``assisted``: Hugging Face assisted generation with prompt lookup (an external peer);
* ``eagle``: the EAGLE-style drafter (it also gets the visual rows);
* ``text-only``: the ablation drafter that gets no target hidden states;
* ``hivis``: the HiViS drafter (text rows fused with the target's hidden states).

For each test question every method runs ``reps`` times, interleaved (the order rotates from
one repetition to the next); a method's time on a question is the median of its repetitions.
Definitions (per method, over all questions):

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
  if decoding cost nothing (:func:`speedup_ceiling`).

With ``prefix_cache`` every method but ``assisted`` (HF ``generate``, which keeps no cache
between calls) asks a scene's questions in order through one :class:`hivis.PrefixCache` per
method, as a chat about an image would: the scene's first question prefills the whole prompt
(the cache is cleared before each of its runs), the later ones only their question tokens.
Autoregressive uses the cache too, so the speedups compare like with like.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path

import torch

from hivis.tree import TreeConfig
from hivis.world.data.tasks import TaskType
from hivis.world.drafters.shipped import DrafterKind, TestCase, WorldModels, load_world, test_cases

# Chosen by ``hivis bench --tune-tree`` on the shipped world target (see BENCHMARKS.md).
WORLD_TREE = TreeConfig(total_tokens=24, depth=6, top_k=4)


class Method(Enum):
    AUTOREGRESSIVE = "autoregressive"
    ASSISTED = "assisted"
    EAGLE = "eagle"
    TEXT_ONLY = "text-only"
    HIVIS = "hivis"

    @property
    def drafter(self) -> DrafterKind | None:
        return {
            Method.EAGLE: DrafterKind.EAGLE,
            Method.TEXT_ONLY: DrafterKind.TEXT_ONLY,
            Method.HIVIS: DrafterKind.HIVIS,
        }.get(self)


@dataclass(frozen=True)
class BenchConfig:
    """What ``hivis bench`` runs. ``tasks`` None = every task type of each scene."""

    scenes: int = 20
    start: int = 0
    tasks: tuple[TaskType, ...] | None = None
    methods: tuple[Method, ...] = tuple(Method)
    reps: int = 3
    max_new_tokens: int = 96
    tree: TreeConfig = WORLD_TREE
    sampling_acceptance: bool = True
    prompt_lookup_tokens: int = 4
    threads: int = 2  # both cores (measured faster for every method)
    seed: int = 0
    prefix_cache: bool = False

    def __post_init__(self) -> None:
        for name in ("scenes", "reps", "max_new_tokens", "threads", "prompt_lookup_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if Method.AUTOREGRESSIVE not in self.methods:
            raise ValueError("the methods must include autoregressive (speedups are relative)")
        if self.prefix_cache and Method.ASSISTED in self.methods:
            raise ValueError(
                "assisted (HF generate) keeps no prefix cache between calls; leave it out of "
                "a prefix-cache bench"
            )


def run_method(world: WorldModels, method: Method, case: TestCase, cfg: BenchConfig, **kw):
    """One generation of ``case`` by ``method``; returns a GenerationResult. ``kw`` goes to
    ``hivis.generate`` / ``hivis.autoregressive`` (temperature, seed, prefix_cache)."""
    import hivis
    from hivis.hf import hf_generate

    images, n = [case.image], cfg.max_new_tokens
    if method is Method.AUTOREGRESSIVE:
        return hivis.autoregressive(world.target, images, case.prompt, max_new_tokens=n, **kw)
    if method is Method.ASSISTED:
        return hf_generate(world.target, images, case.prompt, n, cfg.prompt_lookup_tokens)
    drafter = world.drafters[method.drafter]
    return hivis.generate(
        world.target, drafter, images, case.prompt, max_new_tokens=n, tree=cfg.tree, **kw
    )


@dataclass
class CaseRuns:
    """All runs of one question: greedy repetitions per method, one T = 1 run per method."""

    case: TestCase
    greedy: dict[Method, list] = field(default_factory=dict)
    sampled: dict[Method, object] = field(default_factory=dict)

    def median_s(self, method: Method, decode: bool = False) -> float:
        runs = self.greedy[method]
        return statistics.median(
            r.metrics.total_s - (r.metrics.prefill_s if decode else 0.0) for r in runs
        )

    def identical(self, method: Method) -> bool:
        reference = self.greedy[Method.AUTOREGRESSIVE][0].token_ids
        return self.greedy[method][0].token_ids == reference


class PrefixCaches:
    """One :class:`hivis.PrefixCache` per method for a prefix-cache bench (else none):
    ``for_run`` hands a method its cache, emptied first when the case opens a new scene, so
    every run of a scene's first question prefills the whole prompt."""

    def __init__(self, cfg: BenchConfig):
        from hivis.prefix import PrefixCache

        self.caches = {m: PrefixCache() for m in cfg.methods} if cfg.prefix_cache else {}
        self.scene: str | None = None
        self.new_scene = False

    def open(self, case: TestCase) -> None:
        self.new_scene = case.uid != self.scene
        self.scene = case.uid

    def for_run(self, method: Method) -> dict:
        if method not in self.caches:
            return {}
        if self.new_scene:
            self.caches[method].clear()
        return {"prefix_cache": self.caches[method]}


def measure_case(
    world: WorldModels, case: TestCase, cfg: BenchConfig, index: int, caches: PrefixCaches
) -> CaseRuns:
    """Warm up, then ``reps`` interleaved rounds over the methods (rotating their order)."""
    runs = CaseRuns(case, {m: [] for m in cfg.methods})
    caches.open(case)
    for method in cfg.methods:  # warm-up: first-call allocations stay out of the timings
        run_method(world, method, case, cfg, **caches.for_run(method))
    for rep in range(cfg.reps):
        shift = (index + rep) % len(cfg.methods)
        for method in cfg.methods[shift:] + cfg.methods[:shift]:
            runs.greedy[method].append(
                run_method(world, method, case, cfg, **caches.for_run(method))
            )
    if cfg.sampling_acceptance:
        for method in cfg.methods:
            if method.drafter is not None:
                seed = cfg.seed * 100_003 + index
                runs.sampled[method] = run_method(
                    world, method, case, cfg, temperature=1.0, seed=seed, **caches.for_run(method)
                )
    return runs


def _acceptance(results: list) -> float:
    steps = sum(r.metrics.verify_steps for r in results)
    return sum(r.metrics.committed_in_steps for r in results) / steps if steps else 0.0


def summarise(method: Method, runs: list[CaseRuns]) -> dict:
    """The JSON entry of one method (definitions in the module docstring)."""
    base = sum(r.median_s(Method.AUTOREGRESSIVE) for r in runs)
    spent = sum(r.median_s(method) for r in runs)
    tokens = sum(len(r.greedy[method][0].token_ids) for r in runs)
    first = [r.greedy[method][0] for r in runs]
    timed_phases = method is not Method.ASSISTED  # HF reports no prefill time or acceptance
    entry = {
        "method": method.value,
        "acceptance_length": _acceptance(first) if timed_phases else None,
        "tokens_per_s": tokens / spent,
        "speedup": base / spent,
        "drafter_prefill_ratio": None,
        "identical_fraction": sum(r.identical(method) for r in runs) / len(runs),
        "decode_speedup": None,
        "acceptance_length_t1": None,
        "questions": len(runs),
        "new_tokens": tokens,
        "reused_prefix_fraction": sum(r.metrics.reused_prefix_length for r in first)
        / sum(r.metrics.target_prefill_length for r in first)
        if timed_phases
        else 0.0,
    }
    if timed_phases:
        decode_base = sum(r.median_s(Method.AUTOREGRESSIVE, decode=True) for r in runs)
        decode_spent = sum(r.median_s(method, True) for r in runs)
        entry["decode_speedup"] = decode_base / decode_spent
        entry["prefill_share"] = 1.0 - decode_spent / spent
        entry.update(_step_costs(runs, method))
    if method.drafter is not None:
        entry["drafter_prefill_ratio"] = statistics.mean(
            r.metrics.drafter_prefill_ratio for r in first
        )
        if all(method in r.sampled for r in runs):
            entry["acceptance_length_t1"] = _acceptance([r.sampled[method] for r in runs])
    entry["by_task"] = _by_task(method, runs)
    return entry


def _step_costs(runs: list[CaseRuns], method: Method) -> dict:
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


def _by_task(method: Method, runs: list[CaseRuns]) -> dict:
    out = {}
    for task in sorted({r.case.task for r in runs}, key=lambda t: t.value):
        subset = [r for r in runs if r.case.task is task]
        base = sum(r.median_s(Method.AUTOREGRESSIVE) for r in subset)
        first = [r.greedy[method][0] for r in subset]
        out[task.value] = {
            "questions": len(subset),
            "mean_new_tokens": statistics.mean(len(f.token_ids) for f in first),
            "speedup": base / sum(r.median_s(method) for r in subset),
            "acceptance_length": _acceptance(first) if method is not Method.ASSISTED else None,
        }
    return out


def machine() -> dict:
    import transformers

    return {
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "torch_threads": torch.get_num_threads(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def run_bench(cfg: BenchConfig, assets: Path | None = None, progress: bool = True) -> dict:
    """Load the shipped models, measure every method on the test questions; the JSON report."""
    from tqdm.auto import tqdm

    torch.set_num_threads(cfg.threads)
    kinds = tuple(m.drafter for m in cfg.methods if m.drafter is not None)
    world = load_world(assets, kinds)
    cases = test_cases(cfg.scenes, cfg.tasks, cfg.seed, cfg.start)
    load_before = os.getloadavg()
    started = time.perf_counter()
    caches = PrefixCaches(cfg)
    runs = [
        measure_case(world, case, cfg, i, caches)
        for i, case in enumerate(tqdm(cases, desc="bench", disable=not progress))
    ]
    config = asdict(cfg)
    config["tasks"] = None if cfg.tasks is None else [t.value for t in cfg.tasks]
    config["methods"] = [m.value for m in cfg.methods]
    config["tree"] = asdict(cfg.tree)
    info = machine()
    info["load_average_start"] = [round(x, 2) for x in load_before]
    return {
        "methods": [summarise(m, runs) for m in cfg.methods],
        "config": config,
        "tree": asdict(cfg.tree),
        "split": "test",
        "questions": len(cases),
        "target": world.manifest.get("source_target"),
        "wall_s": round(time.perf_counter() - started, 1),
        "machine": info,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def speedup_ceiling(report: dict) -> float | None:
    """1 / autoregressive's prefill share: the whole-generation speedup of a method whose
    decoding took no time (every method pays the same prefill)."""
    for m in report["methods"]:
        if m["method"] == Method.AUTOREGRESSIVE.value and m.get("prefill_share"):
            return 1.0 / m["prefill_share"]
    return None


def _fmt(value, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)


def format_table(report: dict) -> str:
    """Markdown table of the methods."""
    lines = [
        "| method | acceptance T=0 | acceptance T=1 | tokens/s | speedup | decode speedup "
        "| drafter prefill | identical |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in report["methods"]:
        prefill = m["drafter_prefill_ratio"]
        prefill = None if prefill is None else 100 * prefill
        lines.append(
            f"| {m['method']} | {_fmt(m['acceptance_length'], '{:.2f}')} "
            f"| {_fmt(m['acceptance_length_t1'], '{:.2f}')} | {m['tokens_per_s']:.1f} "
            f"| {m['speedup']:.2f}x | {_fmt(m['decode_speedup'], '{:.2f}x')} "
            f"| {_fmt(prefill, '{:.1f} %')} "
            f"| {m['identical_fraction']:.3f} |"
        )
    return "\n".join(lines)


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
    (acceptance length in parentheses)."""
    methods = [m for m in report["methods"] if m["method"] != Method.AUTOREGRESSIVE.value]
    tasks = list(report["methods"][0]["by_task"])
    lines = [
        "| task | questions | mean new tokens | " + " | ".join(m["method"] for m in methods) + " |",
        "|---|---|---|" + "---|" * len(methods),
    ]
    for task in tasks:
        first = report["methods"][0]["by_task"][task]
        cells = []
        for m in methods:
            t = m["by_task"][task]
            acc = "" if t["acceptance_length"] is None else f" ({t['acceptance_length']:.2f})"
            cells.append(f"{t['speedup']:.2f}x{acc}")
        lines.append(
            f"| {task} | {first['questions']} | {first['mean_new_tokens']:.1f} | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines)


def tune_tree(trees: list[TreeConfig], cfg: BenchConfig, assets: Path | None = None) -> list[dict]:
    """Speedup of the HiViS drafter over autoregressive for each tree (same questions)."""
    from dataclasses import replace

    results = []
    for tree in trees:
        report = run_bench(
            replace(
                cfg,
                tree=tree,
                methods=(Method.AUTOREGRESSIVE, Method.HIVIS),
                sampling_acceptance=False,
            ),
            assets,
            progress=False,
        )
        hivis = report["methods"][1]
        results.append(
            {
                "tree": asdict(tree),
                **{
                    k: hivis[k]
                    for k in (
                        "speedup",
                        "decode_speedup",
                        "acceptance_length",
                        "identical_fraction",
                    )
                },
            }
        )
    return results


def write_json(report: dict, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1))
    return path
