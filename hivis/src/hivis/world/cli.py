"""``world`` commands: generate, tokenizer, train-target, eval-target, build.

``add_world_commands(subparsers)`` registers them under an existing argparse parser (the
``hivis`` CLI); ``python -m hivis.world.cli ...`` runs them stand-alone.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from hivis.world.data.dataset import Split
from hivis.world.data.long_form import LONG_FORM_MAX_NEW_TOKENS
from hivis.world.target.model import TargetConfig


def _cmd_generate(args: argparse.Namespace) -> int:
    from hivis.world.data.dataset import export_world

    counts = {Split.TRAIN: args.train, Split.VALIDATION: args.validation, Split.TEST: args.test}
    counts = {k: v for k, v in counts.items() if v > 0}
    if not counts:
        raise SystemExit("nothing to generate: give --train, --validation or --test > 0")
    paths = export_world(Path(args.out), counts, seed=args.seed, long_form=args.long_form)
    for split, path in paths.items():
        lines = sum(1 for _ in path.open())
        print(f"{split.value}: {lines} records -> {path}")
    return 0


def _cmd_tokenizer(args: argparse.Namespace) -> int:
    from hivis.world.data.long_form import long_form_vocabulary
    from hivis.world.data.tokenizer import extend_tokenizer, save_tokenizer, train_tokenizer

    if args.extend:
        from transformers import AutoTokenizer

        if not args.long_form:
            raise ValueError("--extend adds the long-form words to a tokenizer: add --long-form")
        base = AutoTokenizer.from_pretrained(args.extend)
        tokenizer = extend_tokenizer(base, long_form_vocabulary())
    else:
        tokenizer = train_tokenizer(args.vocab_size, args.scenes, args.seed, args.long_form)
    save_tokenizer(tokenizer, Path(args.out))
    print(f"tokenizer with {len(tokenizer)} tokens -> {args.out}")
    return 0


def _target_train_config(args: argparse.Namespace):
    """The :class:`~hivis.world.target.config.TargetTrainConfig` of ``world train-target``."""
    from hivis.world.target.config import TargetTrainConfig

    return TargetTrainConfig(
        out_dir=Path(args.out),
        tokenizer_dir=Path(args.tokenizer).resolve(),  # train_config.json is read from anywhere
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        early_batch_size=args.early_batch_size,
        lr=args.lr,
        warmup_steps=args.warmup_steps,
        curriculum_fraction=args.curriculum_fraction,
        extra_questions=args.extra_questions,
        balanced_extra_questions=args.balanced_extra_questions,
        word_tied_heads=args.word_tied_heads,
        lookup_weight=args.lookup_weight,
        lookup_layer=args.lookup_layer,
        lookup_head=args.lookup_head,
        count_all_on_class_token=args.count_all_on_class_token,
        long_form_lookup=args.long_form_lookup,
        long_form=args.long_form,
        # A grown target's vision tower is trained already: no vision phase unless asked.
        vision_pretrain_fraction=(
            args.vision_fraction
            if args.vision_fraction is not None
            else 0.0
            if args.init_from
            else TargetTrainConfig.vision_pretrain_fraction
        ),
        init_from=Path(args.init_from).resolve() if args.init_from else None,
        freeze_vision_in_joint=args.freeze_vision_in_joint,
        aux_weight=args.aux_weight,
        fact_targets=args.fact_targets,
        object_count_targets=args.object_count_targets,
        checkpoint_every=args.checkpoint_every,
        seed=args.seed,
        threads=args.threads,
        bf16=_bf16(args.precision),
        cpu_budget_core_min=args.cpu_budget_core_min,
        wall_budget_min=args.wall_budget_min,
        target=TargetConfig(
            text_layers=args.text_layers,
            text_hidden=args.text_hidden,
            text_heads=args.text_heads,
            text_intermediate=args.text_intermediate,
        ),
    )


def _bf16(precision: str) -> bool:
    """``--precision``: fp32 -> False, bf16 -> True, auto -> whether the CPU has native bf16."""
    from hivis.world.target.config import cpu_has_native_bf16

    return precision == "bf16" or (precision == "auto" and cpu_has_native_bf16())


def _cmd_train_target(args: argparse.Namespace) -> int:
    import torch

    from hivis.world.target.model import save_target
    from hivis.world.target.train import train_target, train_target_in_fresh_processes

    cfg = _target_train_config(args)
    if args.steps_per_process is None:
        target_dir = train_target(cfg)
    else:
        target_dir = train_target_in_fresh_processes(cfg, args.steps_per_process)
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(target_dir)
    processor = AutoProcessor.from_pretrained(target_dir)
    save_target(model, processor, Path(args.out) / "target-fp16", dtype=torch.float16)
    print(f"target (float32) -> {target_dir}; float16 copy -> {Path(args.out) / 'target-fp16'}")
    return 0


def _cmd_eval_target(args: argparse.Namespace) -> int:
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from hivis.world.data.tokenizer import NO_LONG_FORM, expresses_long_form
    from hivis.world.target.evaluate import Breakdown, EvalMode, evaluate, format_scores

    torch.set_num_threads(args.threads)
    if not (Path(args.target) / "config.json").exists():
        raise SystemExit(f"{args.target} is not a saved target (no config.json)")
    model = AutoModelForImageTextToText.from_pretrained(args.target).float()
    processor = AutoProcessor.from_pretrained(args.target)
    mode, split = EvalMode(args.mode), Split(args.split)
    breakdown = Breakdown(args.breakdown) if args.breakdown else None
    long_form = args.long_form
    if long_form is None:
        long_form = expresses_long_form(processor.tokenizer)
        if not long_form:
            print(f"long-form tasks left out: {NO_LONG_FORM}", file=sys.stderr)
    scores = evaluate(
        model, processor, mode, split, args.scenes, args.seed, args.batch_size, breakdown, long_form
    )
    if args.json:
        payload = {
            name: {**asdict(s), "exact_match": s.exact_match, "fact_accuracy": s.fact_accuracy}
            for name, s in scores.items()
        }
        print(
            json.dumps(
                {"mode": mode.value, "split": split.value, "scenes": args.scenes, "tasks": payload},
                indent=1,
            )
        )
    else:
        print(f"{mode.value} greedy exact match, {args.scenes} {split.value} scenes")
        print(format_scores(scores))
    return 0


def _cmd_build(args: argparse.Namespace) -> int:
    from hivis.world.drafters.pipeline import BuildConfig, DrafterKind, build_world
    from hivis.world.drafters.shipped import default_assets_dir

    cfg = BuildConfig(
        target=Path(args.target),
        work=Path(args.work),
        assets=Path(args.assets) if args.assets else default_assets_dir(),
        train_scenes=args.train_scenes,
        validation_scenes=args.validation_scenes,
        stage1_steps=args.stage1_steps,
        stage2_steps=args.stage2_steps,
        batch_size=args.batch_size,
        stage1_lr=args.stage1_lr,
        stage2_lr=args.stage2_lr,
        seed=args.seed,
        threads=args.threads,
        kinds=tuple(DrafterKind(k) for k in args.kind) if args.kind else tuple(DrafterKind),
        long_form=args.long_form,
        **({"max_new_tokens": LONG_FORM_MAX_NEW_TOKENS} if args.long_form else {}),
    )
    assets = build_world(cfg)
    manifest = json.loads((assets / "manifest.json").read_text())
    print(f"shipped models -> {assets} ({manifest['total_bytes'] / 1e6:.1f} MB)")
    print(json.dumps({"durations_s": manifest["durations_s"], **manifest["validation_top1"]}))
    return 0


def _add_build(sub) -> None:
    from hivis.world.drafters.pipeline import BuildConfig
    from hivis.world.drafters.shipped import DrafterKind

    d = BuildConfig.__dataclass_fields__
    p = sub.add_parser(
        "build",
        help="from a trained target: data, target-regenerated answers, features, the three "
        "drafters (stage 1 + 2), shipped as package assets (resumable)",
    )
    p.add_argument("--target", required=True, help="trained target directory (train-target)")
    p.add_argument("--work", required=True, help="work directory (data, features, runs)")
    p.add_argument("--assets", help="output directory (default: the package's world/assets)")
    for name in ("train_scenes", "validation_scenes", "stage1_steps", "stage2_steps"):
        p.add_argument("--" + name.replace("_", "-"), type=int, default=d[name].default)
    p.add_argument("--batch-size", type=int, default=d["batch_size"].default)
    p.add_argument("--stage1-lr", type=float, default=d["stage1_lr"].default)
    p.add_argument("--stage2-lr", type=float, default=d["stage2_lr"].default)
    p.add_argument("--kind", action="append", choices=[k.value for k in DrafterKind])
    p.add_argument("--threads", type=int, default=d["threads"].default)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--long-form",
        action="store_true",
        help="the long-form questions in the drafters' data too (a target trained with them)",
    )
    p.set_defaults(func=_cmd_build)


def _add_generate(sub) -> None:
    p = sub.add_parser("generate", help="export the world's splits as LLaVA JSONL + PNG")
    p.add_argument("--out", required=True, help="output directory (JSONL files and images/)")
    p.add_argument("--train", type=int, default=2000, help="training scenes")
    p.add_argument("--validation", type=int, default=200, help="validation scenes")
    p.add_argument("--test", type=int, default=200, help="test scenes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--long-form", action="store_true", help="the long-form questions too")
    p.set_defaults(func=_cmd_generate)


def _add_tokenizer(sub) -> None:
    p = sub.add_parser("tokenizer", help="train the world's byte-level BPE tokenizer")
    p.add_argument("--out", required=True)
    p.add_argument("--vocab-size", type=int, default=640)
    p.add_argument("--scenes", type=int, default=3000, help="training scenes in the corpus")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--long-form",
        action="store_true",
        help="train on the long-form questions too (needed by `train-target --long-form`)",
    )
    p.add_argument(
        "--extend",
        metavar="DIR",
        help="with --long-form: extend the tokenizer in DIR (e.g. a saved target) with the "
        "long-form words instead of training a new one; its tokens keep their ids (for "
        "`train-target --init-from DIR`)",
    )
    p.set_defaults(func=_cmd_tokenizer)


def _switch(parser, defaults: dict, field: str, help: str) -> None:
    """``--field-name`` / ``--no-field-name`` for the boolean TargetTrainConfig field
    ``field``."""
    parser.add_argument(
        "--" + field.replace("_", "-"),
        action=argparse.BooleanOptionalAction,
        default=defaults[field],
        help=help,
    )


def _add_train_target(sub) -> None:
    from hivis.world.target.config import TargetTrainConfig

    d = {name: f.default for name, f in TargetTrainConfig.__dataclass_fields__.items()}
    p = sub.add_parser("train-target", help="train the tiny target VLM from scratch (resumes)")
    p.add_argument("--out", required=True, help="run directory (checkpoint, log, target/)")
    p.add_argument("--tokenizer", required=True, help="directory written by `world tokenizer`")
    _add_optimisation_options(p, d)
    _add_question_options(p, d)
    _add_vision_options(p, d)
    _add_lookup_options(p, d)
    _add_run_options(p, d)
    p.set_defaults(func=_cmd_train_target)


def _add_optimisation_options(p, d: dict) -> None:
    """train-target: steps, batch sizes, learning rate, curriculum."""
    p.add_argument("--max-steps", type=int, default=d["max_steps"])
    p.add_argument("--batch-size", type=int, default=d["batch_size"], help="images per step (late)")
    p.add_argument(
        "--early-batch-size",
        type=int,
        default=d["early_batch_size"],
        help="images per step (early)",
    )
    p.add_argument("--lr", type=float, default=d["lr"])
    p.add_argument("--warmup-steps", type=int, default=d["warmup_steps"])
    p.add_argument("--curriculum-fraction", type=float, default=d["curriculum_fraction"])


def _add_question_options(p, d: dict) -> None:
    """train-target: the extra question-conditioned questions per image."""
    p.add_argument(
        "--extra-questions",
        type=int,
        default=d["extra_questions"],
        help="questions per image added to one of each task type (counting, colour of)",
    )
    _switch(
        p,
        d,
        "balanced_extra_questions",
        "extra counting questions ask about a count drawn uniformly from the scene's counts",
    )
    _switch(
        p,
        d,
        "long_form",
        "the long-form questions too (report, step by step; needs a `--long-form` tokenizer)",
    )


def _add_vision_options(p, d: dict) -> None:
    """train-target: the vision phase and the auxiliary heads' targets."""
    _switch(
        p,
        d,
        "word_tied_heads",
        "colour/shape/size heads score patches by cosine with the words' text embeddings",
    )
    p.add_argument(
        "--vision-fraction",
        type=float,
        default=None,
        help=f"fraction of the budget for the vision-only phase (default "
        f"{d['vision_pretrain_fraction']}; 0 with --init-from)",
    )
    p.add_argument(
        "--aux-weight",
        type=float,
        default=d["aux_weight"],
        help="weight of the auxiliary vision losses (0 when growing a target whose tower is "
        "trained: fresh heads would only disturb its projector)",
    )
    p.add_argument(
        "--init-from",
        metavar="TARGET_DIR",
        help="start from this trained target, grown to --text-layers (a multiple of its "
        "layers) by block expansion; needs a tokenizer made with `world tokenizer --extend "
        "TARGET_DIR` (hivis.world.target.grow)",
    )
    p.add_argument(
        "--freeze-vision-in-joint",
        action="store_true",
        help="stop training the vision tower after the vision phase",
    )
    _switch(
        p,
        d,
        "object_count_targets",
        "also train every object patch on how many objects share its colour / its shape",
    )
    p.add_argument(
        "--fact-targets",
        action="store_true",
        help="also train the class token on the facts of uniquely named objects "
        "(scenes.scene_facts)",
    )


def _add_lookup_options(p, d: dict) -> None:
    """train-target: the look-up loss (hivis.world.target.lookup)."""
    p.add_argument(
        "--lookup-weight",
        type=float,
        default=d["lookup_weight"],
        help="weight of the look-up loss: one attention head puts the answer's attention on "
        "the objects its question asks about (hivis.world.target.lookup); 0 = off",
    )
    p.add_argument(
        "--lookup-layer",
        type=int,
        default=d["lookup_layer"],
        help="text layer of the look-up head (default: text_layers // 2 - 1)",
    )
    p.add_argument("--lookup-head", type=int, default=d["lookup_head"], help="its head")
    _switch(
        p,
        d,
        "count_all_on_class_token",
        'the look-up of "how many objects?" goes to the class token (the scene total), not '
        "to every object",
    )
    _switch(
        p,
        d,
        "long_form_lookup",
        "in the long-form answers, each piece about particular objects (an object's "
        "sentences, a count, a relation) looks at them (needs --long-form and a look-up "
        "weight > 0)",
    )


def _add_run_options(p, d: dict) -> None:
    """train-target: checkpoints, model size, threads, budgets, seed."""
    p.add_argument("--checkpoint-every", type=int, default=d["checkpoint_every"])
    p.add_argument(
        "--steps-per-process",
        type=int,
        default=None,
        help="step this many steps per fresh process, each resuming from the checkpoint "
        "(default: one process). A long-form grow slows down in one process as the allocator "
        "fragments (3.7 -> 6.0 s per step over 480 steps); 60 keeps it near the first speed",
    )
    p.add_argument("--text-layers", type=int, default=TargetConfig.text_layers)
    p.add_argument("--text-hidden", type=int, default=TargetConfig.text_hidden)
    p.add_argument("--text-heads", type=int, default=TargetConfig.text_heads)
    p.add_argument(
        "--text-intermediate",
        type=int,
        default=TargetConfig.text_intermediate,
        help="MLP width of the text model (a deep thin target: e.g. --text-layers 24 "
        "--text-hidden 128 --text-intermediate 384)",
    )
    p.add_argument("--threads", type=int, default=d["threads"])
    p.add_argument(
        "--precision",
        choices=["fp32", "bf16", "auto"],
        default="fp32",
        help="forward passes in float32 or under bf16 autocast (weights and optimizer stay "
        "float32); auto: bf16 where the CPU multiplies bf16 natively (avx512_bf16 / AMX)",
    )
    p.add_argument(
        "--cpu-budget-core-min",
        type=float,
        default=d["cpu_budget_core_min"],
        help="training budget in CPU core-minutes of the process (80: ~45 min wall on 2 idle "
        "cores)",
    )
    p.add_argument(
        "--wall-budget-min",
        type=float,
        default=d["wall_budget_min"],
        help="wall-clock budget (minutes, whole run); the schedule ends at the first budget "
        "reached",
    )
    p.add_argument("--seed", type=int, default=d["seed"])


def _add_eval_target(sub) -> None:
    p = sub.add_parser("eval-target", help="held-out greedy exact match per task type")
    p.add_argument("--target", required=True, help="directory of a saved target")
    p.add_argument("--split", default=Split.TEST.value, choices=[s.value for s in Split])
    p.add_argument("--scenes", type=int, default=500)
    p.add_argument("--mode", default="teacher-forced", choices=["teacher-forced", "generate"])
    p.add_argument(
        "--breakdown",
        choices=["objects", "answer"],
        help="also split each task by the scene's number of objects or by the number word of "
        "the reference answer (teacher-forced mode)",
    )
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--long-form",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also the long-form questions, with the fact accuracy of generated answers "
        "(default: when the target's tokenizer was trained with them)",
    )
    p.set_defaults(func=_cmd_eval_target)


def _cmd_eval_aux(args: argparse.Namespace) -> int:
    import torch

    from hivis.world.target.aux_eval import evaluate_aux_heads
    from hivis.world.target.config import TargetTrainConfig

    torch.set_num_threads(args.threads)
    saved = Path(args.run) / "train_config.json"
    if not saved.exists():
        raise SystemExit(f"{args.run} is not a train-target run directory (no train_config.json)")
    raw = json.loads(saved.read_text())
    cfg = TargetTrainConfig(
        out_dir=Path(args.run),
        tokenizer_dir=Path(raw["tokenizer_dir"]),
        seed=raw["seed"],
        fact_targets=raw.get("fact_targets", False),
        object_count_targets=raw.get("object_count_targets", False),
        target=TargetConfig(**raw["target"]),
    )
    print(json.dumps(evaluate_aux_heads(cfg, args.scenes), indent=1))
    return 0


def _add_eval_aux(sub) -> None:
    p = sub.add_parser(
        "eval-aux",
        help="what a train-target run's vision tower has learnt, through its auxiliary heads",
    )
    p.add_argument("--run", required=True, help="run directory of `world train-target`")
    p.add_argument("--scenes", type=int, default=256, help="validation scenes")
    p.add_argument("--threads", type=int, default=2)
    p.set_defaults(func=_cmd_eval_aux)


def _add_assets(sub) -> None:
    p = sub.add_parser("assets", help="where the shipped world models are")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_assets)


def _cmd_assets(args: argparse.Namespace) -> int:
    from hivis.world.drafters.shipped import DrafterKind, check_assets

    assets = check_assets()
    paths = {"target": str(assets / "target")}
    paths.update({k.value: str(assets / "drafters" / k.value) for k in DrafterKind})
    if args.json:
        print(json.dumps(paths))
        return 0
    width = max(len(name) for name in paths)
    for name, path in paths.items():
        print(f"{name:{width}s}  {path}")
    return 0


def add_world_commands(subparsers) -> None:
    """Register ``world {assets,generate,tokenizer,train-target,eval-target,eval-aux,build}``."""
    world = subparsers.add_parser("world", help="the embedded synthetic world")
    sub = world.add_subparsers(dest="world_command", required=True)
    for add in (
        _add_assets,
        _add_generate,
        _add_tokenizer,
        _add_train_target,
        _add_eval_target,
        _add_eval_aux,
        _add_build,
    ):
        add(sub)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hivis.world.cli")
    add_world_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
