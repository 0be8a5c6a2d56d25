"""Command line: ``hivis generate``, ``hivis verify lossless``, ``hivis train ...`` and
``hivis world ...``, ``hivis demo`` and ``hivis bench`` (argparse subcommands; each group
registers its own: train in :mod:`hivis.train.cli`, world in :mod:`hivis.world.cli`, demo and
bench in :mod:`hivis.world.app.cli`)."""

from __future__ import annotations

import os

# On a shared CPU, OpenMP threads that spin while waiting make every pass many times slower
# (measured 5-20x in this project); passive waiting costs nothing on an idle machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json
import sys

from hivis.tree import TreeConfig


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


def parse_chain(text: str) -> TreeConfig:
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
    shape.add_argument("--chain", type=parse_chain, help="chain drafting of this depth")
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


def build_parser() -> tuple[argparse.ArgumentParser, argparse._SubParsersAction]:
    """The parser and its subcommand registry (other groups add their commands to it)."""
    from hivis.train.cli import add_train_commands
    from hivis.world.app.cli import add_bench_command, add_demo_command
    from hivis.world.cli import add_world_commands

    parser = argparse.ArgumentParser(prog="hivis", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_generate(subparsers)
    _add_verify(subparsers)
    add_demo_command(subparsers)
    add_bench_command(subparsers)
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
