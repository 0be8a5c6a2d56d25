"""Command line: generate, chat, export-hf, verify, train, world, demo and bench.

argparse subcommands; each group registers its own: train in :mod:`hivis.train.cli`, world in
:mod:`hivis.world.cli`, demo and bench in :mod:`hivis.world.app.cli`. Every error a user can
cause ends in one message and exit code 2.
"""

from __future__ import annotations

import os

# On a shared CPU, OpenMP threads that spin while waiting make every pass many times slower
# (measured 5-20x in this project); passive waiting costs nothing on an idle machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json
import sys

from hivis.targets import DTYPES
from hivis.tree import TreeConfig


def parse_tree(text: str) -> TreeConfig:
    """``TOTAL,DEPTH,TOPK[,FLOOR]`` -> TreeConfig, with a message saying the expected form."""
    parts = text.split(",")
    try:
        if len(parts) not in (3, 4):
            raise ValueError
        total, depth, top_k = (int(p) for p in parts[:3])
        floor = {"min_prob": float(parts[3])} if len(parts) == 4 else {}
    except ValueError:
        raise argparse.ArgumentTypeError(
            "--tree wants TOTAL,DEPTH,TOPK as three integers and optionally a confidence floor, "
            f"e.g. 10,4,3 or 16,8,2,0.1; got {text!r}"
        ) from None
    try:
        return TreeConfig(total_tokens=total, depth=depth, top_k=top_k, **floor)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def parse_chain(text: str) -> TreeConfig:
    try:
        return TreeConfig.chain(int(text))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"--chain wants a positive depth: {err}") from None


def _add_model_options(cmd) -> None:
    """The target and drafter to load and where: shared by ``generate`` and ``chat``."""
    cmd.add_argument("--target", help="Hugging Face VLM directory (default: the shipped world's)")
    cmd.add_argument("--drafter", help="hivis drafter directory (default: the shipped world's)")
    cmd.add_argument("--device", default=None, help="cpu (default), cuda, cuda:1, mps")
    cmd.add_argument("--dtype", default=None, choices=DTYPES, help="weights dtype (float32)")
    cmd.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    cmd.add_argument(
        "--allow-other-target",
        action="store_true",
        help="use a drafter trained on another target (experiments; acceptance will suffer)",
    )
    cmd.add_argument(
        "--raw-prompt",
        action="store_true",
        help="send --prompt as it is, image placeholders included, without the chat template",
    )


def _add_decoding_options(cmd) -> None:
    cmd.add_argument("--max-new-tokens", type=int, default=64)
    cmd.add_argument("--temperature", type=float, default=0.0)
    cmd.add_argument("--seed", type=int, default=None)
    cmd.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    shape = cmd.add_mutually_exclusive_group()
    shape.add_argument("--tree", type=parse_tree, help="TOTAL,DEPTH,TOPK (default 10,4,3)")
    shape.add_argument("--chain", type=parse_chain, help="chain drafting of this depth")


def _add_generate(subparsers) -> None:
    cmd = subparsers.add_parser("generate", help="speculative generation for one image+prompt")
    _add_model_options(cmd)
    cmd.add_argument("--image", required=True, action="append", help="image path (repeatable)")
    cmd.add_argument(
        "--prompt",
        required=True,
        help="the question; written into the model's chat template unless --raw-prompt",
    )
    _add_decoding_options(cmd)
    output = cmd.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print a JSON object")
    output.add_argument("--stream", action="store_true", help="print tokens as they are verified")
    cmd.set_defaults(handler=_run_generate)


def _load_models(args):
    """(target, drafter) from the model options, every option checked before loading."""
    from hivis.drafter import HiViSDrafter
    from hivis.targets import as_device, as_dtype, load_target

    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    as_dtype(args.dtype), as_device(args.device)
    if (args.target is None) != (args.drafter is None):
        raise ValueError(
            "give both --target and --drafter, or neither (then the shipped world models run)"
        )
    target_dir, drafter_dir = args.target, args.drafter
    if target_dir is None:
        from hivis.world.drafters.shipped import check_assets

        assets = check_assets()
        target_dir, drafter_dir = assets / "target", assets / "drafters" / "hivis"
        print(f"hivis: the shipped world models ({assets})", file=sys.stderr)
    target = load_target(target_dir, dtype=args.dtype, device=args.device)
    drafter = HiViSDrafter.load(drafter_dir, target, args.allow_other_target)
    return target, drafter


def _prompt_kwargs(args, text: str) -> dict:
    return {"prompt": text} if args.raw_prompt else {"messages": text}


def _decoding_kwargs(args) -> dict:
    return dict(
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        tree=args.tree or args.chain,
        stop_strings=args.stop,
        seed=args.seed,
    )


def _text_streamer(target):
    from transformers import TextStreamer

    return TextStreamer(target.tokenizer, skip_prompt=True, skip_special_tokens=True)


def _run_generate(args) -> int:
    import hivis
    from hivis.targets.inputs import load_images

    images = load_images(args.image)  # a bad path fails before the models load
    target, drafter = _load_models(args)
    streamer = _text_streamer(target) if args.stream else None
    result = hivis.generate(
        target,
        drafter,
        images,
        streamer=streamer,
        **_prompt_kwargs(args, args.prompt),
        **_decoding_kwargs(args),
    )
    if args.json:
        out = {"text": result.text, "token_ids": result.token_ids}
        out["metrics"] = result.metrics.to_dict()
        print(json.dumps(out))
        return 0
    if not args.stream:
        print(result.text)
    _print_metrics(result.metrics)
    return 0


def _print_metrics(m) -> None:
    print(
        f"[{m.new_tokens} tokens, {m.tokens_per_s:.1f} tok/s, acceptance length "
        f"{m.acceptance_length:.2f} (bonus incl.), drafter prefill "
        f"{100 * m.drafter_prefill_ratio:.1f}% of target's]",
        file=sys.stderr,
    )


def _add_chat(subparsers) -> None:
    cmd = subparsers.add_parser(
        "chat", help="answer question after question about an image (models loaded once)"
    )
    _add_model_options(cmd)
    cmd.add_argument("--image", required=True, action="append", help="image path (repeatable)")
    _add_decoding_options(cmd)
    cmd.set_defaults(handler=_run_chat)


def _run_chat(args) -> int:
    """Read questions from stdin until an empty line or end of input; stream each answer.

    Each question is asked about the image on its own (the world's models are single-turn);
    the image's prefill is computed once and reused through a :class:`~hivis.PrefixCache`.
    """
    import hivis
    from hivis.targets.inputs import load_images

    images = load_images(args.image)
    target, drafter = _load_models(args)
    cache = hivis.PrefixCache()
    interactive = sys.stdin.isatty()
    while True:
        if interactive:
            print("question> ", end="", file=sys.stderr, flush=True)
        line = sys.stdin.readline()
        if not line.strip():
            return 0
        result = hivis.generate(
            target,
            drafter,
            images,
            prefix_cache=cache,
            streamer=_text_streamer(target),
            **_prompt_kwargs(args, line.strip()),
            **_decoding_kwargs(args),
        )
        _print_metrics(result.metrics)


def _add_export_hf(subparsers) -> None:
    cmd = subparsers.add_parser(
        "export-hf",
        help="a custom_generate folder for model.generate(custom_generate=OUT, ...)",
    )
    cmd.add_argument("drafter", help="hivis drafter directory")
    cmd.add_argument("out", help="folder to write (custom_generate/generate.py + drafter/)")
    cmd.set_defaults(handler=_run_export_hf)


def _run_export_hf(args) -> int:
    from hivis.hf import export_folder

    out = export_folder(args.drafter, args.out)
    print(
        f"wrote {out}: model.generate(**inputs, custom_generate={str(out)!r}, "
        "trust_remote_code=True, max_new_tokens=...)"
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
    _add_chat(subparsers)
    _add_export_hf(subparsers)
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
    except (ValueError, TypeError, OSError) as err:  # what a user's input can cause
        print(f"hivis: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hivis: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
