"""``hivis train features|stage1|stage2``: the drafter training pipeline on the command line.

Runs as ``hivis train ...`` or, for several processes, through accelerate:
``accelerate launch --cpu --num_processes 2 -m hivis.train.cli stage1 ...``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_train_commands(subparsers) -> None:
    """Register ``train`` with its three subcommands on a parent argparse subparsers."""
    train = subparsers.add_parser("train", help="train HiViS / EAGLE-style drafters")
    _add_stages(train.add_subparsers(dest="train_command", required=True))


def _add_stages(stages) -> None:
    feats = stages.add_parser("features", help="run the target once per record; store features")
    feats.add_argument("--target", required=True, help="Hugging Face VLM directory")
    feats.add_argument("--data", required=True, help="LLaVA-style JSONL file")
    feats.add_argument("--images", help="image folder (default: the JSONL's folder)")
    feats.add_argument("--out", required=True, help="feature store directory")
    feats.add_argument("--eagle", action="store_true", help="keep visual rows (EAGLE baseline)")
    feats.add_argument("--regenerate", choices=("none", "greedy", "sample"), default="none")
    feats.add_argument("--temperature", type=float, default=1.0, help="for --regenerate sample")
    feats.add_argument("--max-new-tokens", type=int, default=256)
    feats.add_argument("--shard-size", type=int, default=256)
    feats.add_argument("--limit", type=int, help="use only the first N valid records")
    feats.set_defaults(handler=_run_features)
    for name, text in (("stage1", "single-step training"), ("stage2", "HiViS multi-step")):
        stage = stages.add_parser(name, help=text)
        stage.add_argument("--target", required=True)
        stage.add_argument("--features", required=True, help="feature store directory")
        stage.add_argument("--out", required=True, help="run directory (checkpoints, log, drafter)")
        length = stage.add_mutually_exclusive_group(required=True)
        length.add_argument("--max-steps", type=int)
        length.add_argument("--epochs", type=float)
        stage.add_argument("--batch-size", type=int, default=8)
        stage.add_argument("--lr", type=float, default=3e-5)
        stage.add_argument("--warmup-steps", type=int, default=20)
        stage.add_argument("--checkpoint-every", type=int, default=100)
        stage.add_argument("--seed", type=int, default=0)
        stage.add_argument("--log-every", type=int, default=10)
        stage.add_argument(
            "--length-grouped",
            action=argparse.BooleanOptionalAction,
            default=False,
            help="batch records of similar length together (less padding, faster steps; "
            "measured slightly less accurate at the same steps)",
        )
        stage.add_argument("--steps", type=int, default=3, help="drafting steps K (residual rows)")
        if name == "stage2":
            stage.add_argument("--init", required=True, help="stage-1 drafter directory")
        else:
            stage.add_argument(
                "--text-only",
                action="store_true",
                help="ablation: the drafter gets no target hidden states (zeros instead)",
            )
        stage.set_defaults(handler=_run_stage, stage=name)


def _run_features(args) -> int:
    from tqdm.auto import tqdm

    from hivis.targets import load_target
    from hivis.train.data import SkipLog, read_records
    from hivis.train.extract import extract_features, regenerate_answers, target_description
    from hivis.train.features import FeatureStore, generate_features

    target = load_target(args.target)
    hide = not args.eagle
    store = FeatureStore.open(args.out, target_description(target, hide), args.shard_size)
    skips = SkipLog()
    records = list(read_records(args.data, args.images, skip_log=skips))[: args.limit]
    store.record_read_skips(skips.counts, skips.examples)
    print(f"{len(records)} records; {skips.summary()}", file=sys.stderr)

    def extract(record):
        if args.regenerate != "none":
            temperature = 0.0 if args.regenerate == "greedy" else args.temperature
            record = regenerate_answers(target, record, temperature, args.max_new_tokens)
        return extract_features(target, record, hide)

    generate_features(records, extract, store, lambda it: tqdm(it, total=len(records)))
    print(json.dumps({"features": store.num_features, "skipped": store.skipped_by_reason()}))
    return 0


def _run_stage(args) -> int:
    import torch

    from hivis.drafter import HiViSDrafter
    from hivis.targets import load_target
    from hivis.train.extract import target_description
    from hivis.train.features import FeatureStore, check_target
    from hivis.train.trainer import DrafterTrainConfig, Stage, config_to_json, train

    target = load_target(args.target)
    store_dir = Path(args.features)
    manifest = json.loads((store_dir / "manifest.json").read_text())
    hide = bool(manifest["target"].get("hide_visual_tokens", True))
    check_target(manifest, target_description(target, hide), store_dir)
    stage = Stage(args.stage)
    torch.manual_seed(args.seed)  # the same initial drafter whatever the process count
    if stage is Stage.STAGE2:
        drafter = HiViSDrafter.load(args.init, target)
        if drafter.config.hide_visual_tokens != hide:
            raise ValueError("the --init drafter and the feature store disagree on visual rows")
    else:
        drafter = HiViSDrafter(
            target,
            num_steps=args.steps,
            hide_visual_tokens=hide,
            use_target_features=not args.text_only,
        )
    drafter.train()
    config = DrafterTrainConfig(
        stage=stage,
        num_steps=1 if stage is Stage.STAGE1 else args.steps,
        lr=args.lr,
        warmup_steps=args.warmup_steps,
        max_steps=args.max_steps,
        epochs=args.epochs,
        batch_size=args.batch_size,
        checkpoint_every=args.checkpoint_every,
        seed=args.seed,
        log_every=args.log_every,
        length_grouped=args.length_grouped,
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_config.json").write_text(json.dumps(config_to_json(config), indent=2))
    records = FeatureStore.open(store_dir, manifest["target"]).load_all()
    result = train(drafter, records, config, out)
    _export(drafter, out / "drafter")
    print(json.dumps({"steps": result.steps, "drafter": str(out / "drafter")}))
    return 0


def _export(drafter, directory: Path) -> None:
    from accelerate import PartialState

    if PartialState().is_main_process:
        drafter.save(directory)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hivis train", description=__doc__.splitlines()[0])
    _add_stages(parser.add_subparsers(dest="train_command", required=True))
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"hivis train: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
