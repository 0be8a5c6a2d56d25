"""The on-the-fly demo: the fallback of ``hivis demo`` when the shipped world models are absent.

It builds its world in about half a minute: a tiny random-weight LLaVA (256 visual tokens per
image, a Llama text model several layers deep), a small image+question data set whose answers
are the target's own greedy outputs, HiViS features, a drafter trained by stage 1 and stage 2 -
then it answers held-out prompts with the target alone and with HiViS and reports, for each,
whether the output is identical, the acceptance length, the speedup and the drafter's prefill
share. Random weights mean the "answers" are not language; the measurements are real.
"""

from __future__ import annotations

import random
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from hivis.selfcheck.inputs import random_image
from hivis.selfcheck.zoo import WORDS, TinySpec, build_tiny_target

# Deep enough that a target step costs several one-layer drafter steps (PERFORMANCE.md).
DEMO_SPEC = TinySpec(
    hidden_size=384, num_layers=8, num_heads=6, num_kv_heads=2, image_size=64, patch_size=4
)
STAGE_LR = {"stage1": 3e-3, "stage2": 1e-3}


@dataclass
class OnTheFlyRow:
    """One held-out prompt: target-alone and HiViS results."""

    image: Path
    prompt: str
    answer: str
    identical: bool
    acceptance_length: float
    speedup: float
    prefill_ratio: float


def _records(root: Path, count: int, offset: int):
    from hivis.train.data import Record, Role, Turn

    records = []
    for i in range(offset, offset + count):
        path = root / f"scene_{i}.png"
        random_image(i, (64, 64)).resize((64, 64)).save(path)
        rng = random.Random(i)
        question = "<image> " + " ".join(rng.choice(WORDS) for _ in range(4))
        records.append(
            Record(str(i), (path,), (Turn(Role.USER, question), Turn(Role.ASSISTANT, "")), i)
        )
    return records


def build_demo_world(root: Path, n_train: int, steps: tuple[int, int], log=print):
    """Target, trained HiViS drafter and held-out records under ``root``."""
    from hivis.drafter import HiViSDrafter
    from hivis.targets import load_target
    from hivis.train.extract import extract_features, regenerate_answers
    from hivis.train.trainer import DrafterTrainConfig, Stage, train

    target = load_target(build_tiny_target("llava", root / "target", DEMO_SPEC))
    log(
        f"target: tiny LLaVA, {sum(p.numel() for p in target.model.parameters()) / 1e6:.1f} M "
        f"parameters, {DEMO_SPEC.num_layers} text layers, 256 visual tokens per image"
    )
    train_records = [
        regenerate_answers(target, r, max_new_tokens=24) for r in _records(root, n_train, 0)
    ]
    log(f"data: {n_train} images with the target's own answers; extracting HiViS features")
    features = [extract_features(target, r) for r in train_records]
    torch.manual_seed(0)
    drafter = HiViSDrafter(target, num_steps=3)
    for stage, n_steps, k in ((Stage.STAGE1, steps[0], 1), (Stage.STAGE2, steps[1], 3)):
        config = DrafterTrainConfig(
            stage=stage,
            num_steps=k,
            lr=STAGE_LR[stage.value],
            warmup_steps=5,
            max_steps=n_steps,
            batch_size=8,
            checkpoint_every=0,
        )
        result = train(drafter, features, config, root / stage.value, progress=False)
        first, last = result.history[0], result.history[-1]
        top1 = ", ".join(f"step {i}: {last[f'top1_{i}']:.2f}" for i in range(k))
        log(
            f"{stage.value}: {n_steps} steps, step-0 loss {first['loss_0']:.3f} -> "
            f"{last['loss_0']:.3f}; top-1 agreement with the target {top1}"
        )
    return target, drafter.eval()


def _onthefly_compare(target, drafter, record, max_new_tokens: int) -> OnTheFlyRow:
    """Target alone vs HiViS on one prompt (greedy), timed back to back."""
    import hivis
    from hivis.train.extract import generation_prompt

    prompt, _ = generation_prompt(target, record, 1)
    images = list(record.images)
    hivis.generate(target, drafter, images, prompt, max_new_tokens=4)  # warm-up
    slow = hivis.autoregressive(target, images, prompt, max_new_tokens=max_new_tokens)
    fast = hivis.generate(target, drafter, images, prompt, max_new_tokens=max_new_tokens)
    m = fast.metrics
    return OnTheFlyRow(
        image=record.images[0],
        prompt=record.turns[0].text.replace("<image>", "").strip(),
        answer=fast.text.strip(),
        identical=fast.token_ids == slow.token_ids,
        acceptance_length=m.acceptance_length,
        speedup=slow.metrics.total_s / m.total_s,
        prefill_ratio=m.drafter_prefill_ratio,
    )


def _onthefly_table(rows: list[OnTheFlyRow]) -> str:
    lines = [
        "prompt                       | identical | accept. length | speedup | drafter prefill",
        "-----------------------------|-----------|----------------|---------|----------------",
    ]
    for r in rows:
        lines.append(
            f"{r.prompt[:28]:28s} | {'yes' if r.identical else 'NO':9s} | "
            f"{r.acceptance_length:14.2f} | {r.speedup:6.2f}x | {100 * r.prefill_ratio:13.1f} %"
        )
    return "\n".join(lines)


def _onthefly_plot(rows: list[OnTheFlyRow], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    fig, axes = plt.subplots(1, len(rows), figsize=(3.2 * len(rows), 4.4))
    for ax, row in zip(axes, rows, strict=True):
        ax.imshow(Image.open(row.image))
        ax.set_axis_off()
        ax.set_title(f"{row.prompt}\n-> {row.answer[:40]}", fontsize=7)
        ax.text(
            0.0,
            -0.12,
            f"identical: {'yes' if row.identical else 'NO'}  accept {row.acceptance_length:.2f}\n"
            f"speedup {row.speedup:.2f}x  drafter prefill {100 * row.prefill_ratio:.1f} %",
            transform=ax.transAxes,
            fontsize=7,
            va="top",
        )
    fig.suptitle(
        "hivis demo (fallback): target alone vs HiViS, random-weight LLaVA, drafter trained now",
        fontsize=9,
    )
    fig.subplots_adjust(top=0.78, bottom=0.2, wspace=0.15)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run_onthefly_demo(
    out: Path | None = None,
    n_train: int = 32,
    steps: tuple[int, int] = (150, 60),
    n_test: int = 3,
    max_new_tokens: int = 32,
    log=print,
) -> list[OnTheFlyRow]:
    """Build, train, compare; prints the table and writes ``demo.png`` into ``out``."""
    out = Path(out) if out else Path.cwd() / "hivis-demo"
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        target, drafter = build_demo_world(root, n_train, steps, log)
        held_out = _records(out, n_test, offset=10_000)
        rows = [_onthefly_compare(target, drafter, r, max_new_tokens) for r in held_out]
    log(_onthefly_table(rows))
    log(f"figure: {_onthefly_plot(rows, out / 'demo.png')}")
    return rows
