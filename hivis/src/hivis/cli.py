"""Command line: ``hivis generate``, ``hivis verify lossless``, ``hivis train ...`` and
``hivis world ...`` (argparse subcommands; each group registers its own)."""

from __future__ import annotations

import os

# On a shared CPU, OpenMP threads that spin while waiting make every pass many times slower
# (measured 5-20x in this project); passive waiting costs nothing on an idle machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json
import sys

from hivis.train.cli import add_train_commands
from hivis.tree import TreeConfig
from hivis.world.cli import add_world_commands


def parse_tree(text: str) -> TreeConfig:
    """``TOTAL,DEPTH,TOPK`` -> TreeConfig, with a message saying the expected form."""
    parts = text.split(",")
    try:
        total, depth, top_k = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--tree wants TOTAL,DEPTH,TOPK as three integers, e.g. 10,4,3; got {text!r}"
        ) from None
    try:
        return TreeConfig(total_tokens=total, depth=depth, top_k=top_k)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _chain(text: str) -> TreeConfig:
    try:
        return TreeConfig.chain(int(text))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"--chain wants a positive depth: {err}") from None


def _add_generate(subparsers) -> None:
    cmd = subparsers.add_parser("generate", help="speculative generation for one image+prompt")
    cmd.add_argument("--target", required=True, help="Hugging Face VLM directory")
    cmd.add_argument("--drafter", required=True, help="hivis drafter directory")
    cmd.add_argument("--image", required=True, action="append", help="image path (repeatable)")
    cmd.add_argument("--prompt", required=True, help="prompt text with the image placeholder")
    cmd.add_argument("--max-new-tokens", type=int, default=64)
    cmd.add_argument("--temperature", type=float, default=0.0)
    cmd.add_argument("--seed", type=int, default=None)
    cmd.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    shape = cmd.add_mutually_exclusive_group()
    shape.add_argument("--tree", type=parse_tree, help="TOTAL,DEPTH,TOPK (default 10,4,3)")
    shape.add_argument("--chain", type=_chain, help="chain drafting of this depth")
    cmd.add_argument("--json", action="store_true", help="print a JSON object")
    cmd.set_defaults(handler=_run_generate)


def _run_generate(args) -> int:
    import hivis

    target = hivis.load_target(args.target)
    result = hivis.generate(
        target,
        args.drafter,
        args.image,
        args.prompt,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        tree=args.tree or args.chain,
        stop_strings=args.stop,
        seed=args.seed,
    )
    if args.json:
        out = {"text": result.text, "token_ids": result.token_ids}
        out["metrics"] = result.metrics.to_dict()
        print(json.dumps(out))
    else:
        m = result.metrics
        print(result.text)
        print(
            f"[{m.new_tokens} tokens, {m.tokens_per_s:.1f} tok/s, acceptance length "
            f"{m.acceptance_length:.2f} (bonus incl.), drafter prefill "
            f"{100 * m.drafter_prefill_ratio:.1f}% of target's]",
            file=sys.stderr,
        )
    return 0


def _add_verify(subparsers) -> None:
    cmd = subparsers.add_parser("verify", help="self-checks")
    checks = cmd.add_subparsers(dest="check", required=True)
    lossless = checks.add_parser("lossless", help="speculative == target greedy, all families")
    lossless.add_argument("--cases", type=int, default=20, help="prompt/image cases per family")
    lossless.add_argument("--family", action="append", help="limit to these families")
    lossless.add_argument("--json", action="store_true")
    lossless.set_defaults(handler=_run_lossless)


def _run_lossless(args) -> int:
    from hivis.selfcheck.lossless import verify_lossless
    from hivis.targets import Family

    families = tuple(Family(f) for f in args.family) if args.family else tuple(Family)
    if args.cases < 1:
        raise SystemExit("--cases must be >= 1")
    reports = verify_lossless(families, args.cases)
    if args.json:
        cases = [{"family": r.family, "identical": r.identical, "total": r.total} for r in reports]
        print(json.dumps({"cases": cases}))
    else:
        for r in reports:
            print(f"{r.family:12s} {r.identical}/{r.total} identical")
            for failure in r.failures:
                print(f"  FAIL {failure}")
    return 0 if all(r.identical == r.total for r in reports) else 1


def _add_demo(subparsers) -> None:
    cmd = subparsers.add_parser(
        "demo", help="the shipped world models answer held-out scenes (CPU, offline)"
    )
    cmd.add_argument("--out", default="hivis-demo", help="folder for demo.png")
    cmd.add_argument("--quick", action="store_true", help="one scene, one repetition")
    cmd.add_argument("--assets", help="shipped-models directory (default: the package's)")
    cmd.set_defaults(handler=_run_demo)


def _run_demo(args) -> int:
    from hivis.demo import run

    return run(args.out, args.quick, args.assets)


def _add_bench(subparsers) -> None:
    from hivis.bench import BenchConfig, Method
    from hivis.world.tasks import TaskType

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
    shape.add_argument("--chain", type=_chain, help="chain drafting of this depth")
    cmd.add_argument("--no-sampling", action="store_true", help="skip the T = 1 acceptance")
    cmd.add_argument(
        "--prefix-cache",
        action="store_true",
        help="ask each scene's questions in order through a prefix cache per method (the "
        "image is prefilled once per scene); assisted is left out",
    )
    cmd.add_argument("--threads", type=int, default=d["threads"].default)
    cmd.add_argument(
        "--tune-tree",
        action="store_true",
        help="instead: HiViS speedup over autoregressive for a grid of tree settings",
    )
    cmd.add_argument("--assets", help="shipped-models directory (default: the package's)")
    cmd.set_defaults(handler=_run_bench)


def _run_bench(args) -> int:
    from hivis.bench import (
        BenchConfig,
        Method,
        format_by_task,
        format_step_costs,
        format_table,
        run_bench,
        speedup_ceiling,
        tune_tree,
        write_json,
    )
    from hivis.world.tasks import TaskType

    methods = tuple(m for m in Method if not (args.prefix_cache and m is Method.ASSISTED))
    if args.method:
        methods = tuple(m for m in Method if m.value in args.method or m is Method.AUTOREGRESSIVE)
    cfg = BenchConfig(
        scenes=args.scenes,
        start=args.start,
        tasks=tuple(TaskType(t) for t in args.task) if args.task else None,
        methods=methods,
        reps=args.reps,
        max_new_tokens=args.max_new_tokens,
        sampling_acceptance=not args.no_sampling,
        threads=args.threads,
        prefix_cache=args.prefix_cache,
        **({"tree": args.tree or args.chain} if (args.tree or args.chain) else {}),
    )
    if args.tune_tree:
        results = tune_tree(TUNING_TREES, cfg, args.assets)
        for r in results:
            print(json.dumps(r))
        if args.json:
            write_json({"tune_tree": results, "config": {"scenes": cfg.scenes}}, args.json)
        return 0
    report = run_bench(cfg, args.assets)
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
    if args.json:
        print(f"report -> {write_json(report, args.json)}")
    hivis_rows = [m for m in report["methods"] if m["method"] != "assisted"]
    return 0 if all(m["identical_fraction"] == 1.0 for m in hivis_rows) else 1


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
    TreeConfig(32, 10, 4, min_prob=0.1),
]


def build_parser() -> tuple[argparse.ArgumentParser, argparse._SubParsersAction]:
    """The parser and its subcommand registry (other groups add their commands to it)."""
    parser = argparse.ArgumentParser(prog="hivis", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_generate(subparsers)
    _add_verify(subparsers)
    _add_demo(subparsers)
    _add_bench(subparsers)
    add_train_commands(subparsers)
    add_world_commands(subparsers)
    return parser, subparsers


def main(argv: list[str] | None = None) -> int:
    parser, _subparsers = build_parser()
    args = parser.parse_args(argv)
    # Command groups register their function as ``handler`` (or ``func``); it returns the code.
    handler = getattr(args, "handler", None) or args.func
    try:
        return int(handler(args) or 0)
    except (ValueError, TypeError, FileNotFoundError) as err:
        print(f"hivis: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
