"""``hivis demo`` and ``hivis bench``: registered on the ``hivis`` parser by :mod:`hivis.cli`."""

from __future__ import annotations

import argparse

from hivis.cli import parse_chain, parse_tree
from hivis.tree import TreeConfig

# Tree settings compared by ``hivis bench --tune-tree`` (total nodes, depth, top-k, floor).
# A confident drafter saturates shallow trees (acceptance near depth + 1), so deep chains and
# narrow deep trees are in; a higher floor stops expanding (and saves drafter calls) where the
# drafter is unsure.
TUNING_TREES = [
    TreeConfig(6, 6, 1),
    TreeConfig(10, 10, 1),
    TreeConfig(10, 10, 1, min_prob=0.2),
    TreeConfig(16, 8, 2),
    TreeConfig(16, 8, 2, min_prob=0.1),
    TreeConfig(12, 6, 2),
    TreeConfig(16, 7, 3),
    TreeConfig(24, 6, 4),
    TreeConfig(24, 8, 3, min_prob=0.1),
    TreeConfig(24, 8, 4),
    TreeConfig(32, 8, 4),
    TreeConfig(32, 10, 4, min_prob=0.1),
    TreeConfig(40, 10, 4, min_prob=0.05),
]


def add_demo_command(subparsers) -> None:
    """Register ``hivis demo``."""
    cmd = subparsers.add_parser(
        "demo", help="the shipped world models answer held-out scenes (CPU, offline)"
    )
    cmd.add_argument("--out", default="hivis-demo", help="folder for demo.png")
    cmd.add_argument("--quick", action="store_true", help="one scene, one repetition")
    cmd.add_argument("--assets", help="shipped-models directory (default: the package's)")
    cmd.set_defaults(handler=_run_demo)


def _run_demo(args) -> int:
    from hivis.world.app.demo import run

    return run(args.out, args.quick, args.assets)


def add_bench_command(subparsers) -> None:
    """Register ``hivis bench``."""
    from hivis.world.app.bench import BenchConfig, Method
    from hivis.world.data.tasks import TaskType

    d = BenchConfig.__dataclass_fields__
    cmd = subparsers.add_parser(
        "bench", help="all methods on held-out test scenes of the shipped world"
    )
    cmd.add_argument("--json", help="write the report to this JSON file")
    cmd.add_argument("--scenes", type=int, default=d["scenes"].default, help="test scenes")
    cmd.add_argument("--start", type=int, default=0, help="first test scene index")
    cmd.add_argument("--task", action="append", choices=[t.value for t in TaskType])
    cmd.add_argument("--method", action="append", choices=[m.value for m in Method])
    cmd.add_argument("--reps", type=int, default=d["reps"].default)
    cmd.add_argument("--max-new-tokens", type=int, default=d["max_new_tokens"].default)
    shape = cmd.add_mutually_exclusive_group()
    shape.add_argument("--tree", type=parse_tree, help="TOTAL,DEPTH,TOPK for the drafters")
    shape.add_argument("--chain", type=parse_chain, help="chain drafting of this depth")
    cmd.add_argument("--no-sampling", action="store_true", help="skip the T = 1 acceptance")
    cmd.add_argument(
        "--prefix-cache",
        action="store_true",
        help="ask each scene's questions in order through a prefix cache per method (the "
        "image is prefilled once per scene); hf-generate and assisted are left out",
    )
    cmd.add_argument(
        "--long-form",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the long-form questions too (default: when the target's tokenizer knows them)",
    )
    cmd.add_argument(
        "--hf-target-steps",
        action="store_true",
        help="the target's decode steps and tree passes through the HF modules instead of "
        "hivis.targets.lean (for comparison)",
    )
    cmd.add_argument("--threads", type=int, default=d["threads"].default)
    cmd.add_argument(
        "--tune-tree",
        action="store_true",
        help="instead: HiViS speedup over autoregressive for a grid of tree settings",
    )
    cmd.add_argument("--assets", help="shipped-models directory (default: the package's)")
    cmd.set_defaults(handler=_run_bench)


def _bench_config(args):
    """The :class:`~hivis.world.app.bench.BenchConfig` of the command line."""
    from hivis.world.app.bench import BenchConfig, Method
    from hivis.world.data.tasks import TaskType

    methods = tuple(m for m in Method if not (args.prefix_cache and m.external))
    if args.method:
        methods = tuple(m for m in Method if m.value in args.method or m is Method.AUTOREGRESSIVE)
    return BenchConfig(
        scenes=args.scenes,
        start=args.start,
        tasks=tuple(TaskType(t) for t in args.task) if args.task else None,
        methods=methods,
        reps=args.reps,
        max_new_tokens=args.max_new_tokens,
        sampling_acceptance=not args.no_sampling,
        threads=args.threads,
        prefix_cache=args.prefix_cache,
        long_form=args.long_form,
        lean_target=not args.hf_target_steps,
        **({"tree": args.tree or args.chain} if (args.tree or args.chain) else {}),
    )


def _run_tune_tree(cfg, args) -> int:
    from hivis.world.app.bench import tune_tree, write_json

    results = tune_tree(TUNING_TREES, cfg, args.assets)
    print("tree (nodes/depth/top-k/floor) | all T=0 | long-form T=0 | long-form T=1 | acceptance")
    for r in results:
        t = r["tree"]
        cells = [r["speedup"], r["long_form_speedup"], r["long_form_speedup_t1"]]
        shown = " | ".join("-" if c is None else f"{c:.2f}x" for c in cells)
        name = f"{t['total_tokens']}/{t['depth']}/{t['top_k']}/{t['min_prob']}"
        print(f"{name} | {shown} | {r['acceptance_length']:.2f}")
    if args.json:
        tasks = [t.value for t in cfg.tasks] if cfg.tasks else None
        config = {"scenes": cfg.scenes, "tasks": tasks, "reps": cfg.reps}
        write_json({"tune_tree": results, "config": config}, args.json)
    return 0


def _print_report(report: dict) -> None:
    from hivis.world.app.bench_report import (
        format_by_task,
        format_long_form,
        format_step_costs,
        format_table,
        speedup_ceiling,
    )

    print(format_long_form(report))
    print()
    print("all questions:")
    print(format_table(report))
    ceiling = speedup_ceiling(report)
    if ceiling is not None:
        print(
            f"\nautoregressive spends {100 / ceiling:.0f} % of its time in the prefill, which "
            f"every method repeats: no method can exceed {ceiling:.2f}x on these questions"
        )
    print()
    print(format_step_costs(report))
    print()
    print(format_by_task(report))


def _run_bench(args) -> int:
    from hivis.world.app.bench import Method, run_bench, write_json

    cfg = _bench_config(args)
    if args.tune_tree:
        return _run_tune_tree(cfg, args)
    report = run_bench(cfg, args.assets)
    _print_report(report)
    if args.json:
        print(f"report -> {write_json(report, args.json)}")
    hivis_rows = [m for m in report["methods"] if not Method(m["method"]).external]
    return 0 if all(m["identical_fraction"] == 1.0 for m in hivis_rows) else 1
