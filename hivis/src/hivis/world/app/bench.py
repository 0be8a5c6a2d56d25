"""``hivis bench``: the shipped world's methods side by side on held-out test scenes.

Methods (all on the shipped target, batch 1, greedy unless said otherwise):

* ``autoregressive``: the target alone with its KV cache (:func:`hivis.autoregressive`);
* ``hf-generate``: Hugging Face's own greedy ``generate`` (an external baseline: the
  autoregressive row is not a straw man when the two run at the same speed);
* ``assisted``: Hugging Face assisted generation with prompt lookup (an external peer);
* ``eagle``: the EAGLE-style drafter (it also gets the visual rows);
* ``text-only``: the ablation drafter that gets no target hidden states;
* ``hivis``: the HiViS drafter (text rows fused with the target's hidden states).

For each test question every method runs ``reps`` times, interleaved (the order rotates from
one repetition to the next); a method's time on a question is the median of its repetitions.
The summaries and their definitions: :mod:`hivis.world.app.bench_report`.

Long-form questions (``report``, ``step_by_step``: :mod:`hivis.world.data.long_form`) are the
headline when the target's tokenizer was trained with them (``BenchConfig.long_form`` None:
decided by :func:`~hivis.world.data.tokenizer.expresses_long_form`); the shipped target's was
not, and the report then says so and leaves the ``long_form_*`` fields null. On long-form
questions autoregressive also runs once at T = 1 (seeded), for ``long_form_speedup_t1``.

With ``prefix_cache`` every method but the external ones (HF ``generate``, which keeps no
cache between calls) asks a scene's questions in order through one :class:`hivis.PrefixCache` per
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
from hivis.world.app.bench_report import summarise
from hivis.world.data.long_form import LONG_FORM_MAX_NEW_TOKENS
from hivis.world.data.tasks import TaskType
from hivis.world.data.tokenizer import NO_LONG_FORM, expresses_long_form
from hivis.world.drafters.shipped import DrafterKind, TestCase, WorldModels, load_world, test_cases

# Chosen by ``hivis bench --tune-tree`` on the shipped world target's long answers (see
# BENCHMARKS.md, session 11): a deep, narrow tree with a confidence floor.
WORLD_TREE = TreeConfig(total_tokens=16, depth=8, top_k=2, min_prob=0.1)


class Method(Enum):
    AUTOREGRESSIVE = "autoregressive"
    HF_GENERATE = "hf-generate"
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

    @property
    def external(self) -> bool:
        """Hugging Face's ``generate``: no phase timings, acceptance or prefix cache."""
        return self in (Method.HF_GENERATE, Method.ASSISTED)


@dataclass(frozen=True)
class BenchConfig:
    """What ``hivis bench`` runs. ``tasks`` None = every task type of each scene;
    ``long_form`` None = the long-form questions too when the target's tokenizer knows them;
    they get ``long_form_max_new_tokens``."""

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
    long_form: bool | None = None
    long_form_max_new_tokens: int = LONG_FORM_MAX_NEW_TOKENS
    lean_target: bool = True  # False: the target's steps through the HF modules

    def __post_init__(self) -> None:
        counts = ("scenes", "reps", "max_new_tokens", "long_form_max_new_tokens", "threads")
        for name in (*counts, "prompt_lookup_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if Method.AUTOREGRESSIVE not in self.methods:
            raise ValueError("the methods must include autoregressive (speedups are relative)")
        if self.prefix_cache and any(m.external for m in self.methods):
            raise ValueError(
                "hf-generate and assisted (HF generate) keep no prefix cache between calls; "
                "leave them out of a prefix-cache bench"
            )


def run_method(world: WorldModels, method: Method, case: TestCase, cfg: BenchConfig, **kw):
    """One generation of ``case`` by ``method``; returns a GenerationResult. ``kw`` goes to
    ``hivis.generate`` / ``hivis.autoregressive`` (temperature, seed, prefix_cache)."""
    import hivis
    from hivis.hf import hf_generate

    images = [case.image]
    n = cfg.long_form_max_new_tokens if case.task.long_form else cfg.max_new_tokens
    if method is Method.AUTOREGRESSIVE:
        return hivis.autoregressive(world.target, images, case.prompt, max_new_tokens=n, **kw)
    if method is Method.HF_GENERATE:
        return hf_generate(world.target, images, case.prompt, n)
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
            if method.drafter is not None or (
                method is Method.AUTOREGRESSIVE and case.task.long_form
            ):
                seed = cfg.seed * 100_003 + index
                runs.sampled[method] = run_method(
                    world, method, case, cfg, temperature=1.0, seed=seed, **caches.for_run(method)
                )
    return runs


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


def long_form_cases(cfg: BenchConfig, tokenizer) -> tuple[bool, str | None]:
    """Whether the long-form questions run, and if not why (None when they do). Asking for
    them (``long_form`` True or a long-form task) with a target that cannot express them is
    an error."""
    asked = cfg.long_form or any(t.long_form for t in cfg.tasks or ())
    if cfg.long_form is False:
        return False, "left out by the bench configuration"
    if expresses_long_form(tokenizer):
        return True, None
    if asked:
        raise ValueError(f"long-form questions asked for, but {NO_LONG_FORM}")
    return False, NO_LONG_FORM


def _long_form_info(runs: list[CaseRuns], note: str | None) -> dict:
    """The report's ``long_form`` entry: which tasks ran, how many questions, how long."""
    long = [r for r in runs if r.case.task.long_form]
    tokens = [len(r.greedy[Method.AUTOREGRESSIVE][0].token_ids) for r in long]
    if not long and note is None:
        note = "no long-form task among the tasks asked"
    return {
        "tasks": sorted({r.case.task.value for r in long}),
        "questions": len(long),
        "mean_new_tokens": statistics.mean(tokens) if tokens else None,
        "note": note,
    }


def _rate_of(entries: list[dict], method: Method) -> float | None:
    return next((m["tokens_per_s"] for m in entries if m["method"] == method.value), None)


def run_bench(cfg: BenchConfig, assets: Path | None = None, progress: bool = True) -> dict:
    """Load the shipped models, measure every method on the test questions; the JSON report."""
    from tqdm.auto import tqdm

    torch.set_num_threads(cfg.threads)
    kinds = tuple(m.drafter for m in cfg.methods if m.drafter is not None)
    world = load_world(assets, kinds, cfg.lean_target)
    long_form, note = long_form_cases(cfg, world.target.tokenizer)
    cases = test_cases(cfg.scenes, cfg.tasks, cfg.seed, cfg.start, long_form)
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
    methods = [summarise(m, runs, Method.AUTOREGRESSIVE) for m in cfg.methods]
    return {
        "methods": methods,
        "autoregressive_tokens_per_s": _rate_of(methods, Method.AUTOREGRESSIVE),
        "hf_generate_tokens_per_s": _rate_of(methods, Method.HF_GENERATE),
        "long_form": _long_form_info(runs, note),
        "config": config,
        "tree": asdict(cfg.tree),
        "split": "test",
        "questions": len(cases),
        "target": world.manifest.get("source_target"),
        "wall_s": round(time.perf_counter() - started, 1),
        "machine": info,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


TUNE_KEYS = (
    "speedup",
    "decode_speedup",
    "acceptance_length",
    "long_form_speedup",
    "long_form_speedup_t1",
    "identical_fraction",
)


def tune_tree(trees: list[TreeConfig], cfg: BenchConfig, assets: Path | None = None) -> list[dict]:
    """Speedup of the HiViS drafter over autoregressive for each tree (same questions; the
    long-form ones at T = 0 and, unless ``cfg.sampling_acceptance`` is off, T = 1)."""
    from dataclasses import replace

    results = []
    for tree in trees:
        methods = (Method.AUTOREGRESSIVE, Method.HIVIS)
        report = run_bench(replace(cfg, tree=tree, methods=methods), assets, progress=False)
        hivis = report["methods"][1]
        results.append({"tree": asdict(tree), **{k: hivis[k] for k in TUNE_KEYS}})
    return results


def write_json(report: dict, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1))
    return path
