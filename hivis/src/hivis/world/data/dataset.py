"""Splits of the world and their export as LLaVA-style JSONL + PNG.

Scene ``index`` of split ``s`` under master seed ``seed`` is drawn from
``numpy.random.default_rng([seed, s.stream, index])``: every scene is reproducible on its own,
and the splits come from distinct random streams. ``export_split`` additionally drops from
validation/test any scene whose content equals a training scene of the same export (a
practically impossible event with continuous positions, checked rather than assumed).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import numpy as np

from hivis.world.data.long_form import LONG_FORM_STREAM, long_form_tasks
from hivis.world.data.scenes import DEFAULT_WORLD, Scene, WorldConfig, generate_scene, render_scene
from hivis.world.data.tasks import Task, make_tasks


class Split(Enum):
    TRAIN = "train"
    VALIDATION = "validation"
    TEST = "test"

    @property
    def stream(self) -> int:
        return {"train": 0, "validation": 1, "test": 2}[self.value]


@dataclass(frozen=True)
class WorldSample:
    """One scene with its questions. ``uid`` is unique across splits."""

    uid: str
    scene: Scene
    tasks: tuple[Task, ...]


def scene_rng(seed: int, split: Split, index: int) -> np.random.Generator:
    if index < 0 or seed < 0:
        raise ValueError(f"seed and index must be >= 0, got seed={seed}, index={index}")
    return np.random.default_rng([seed, split.stream, index])


def make_sample(
    seed: int, split: Split, index: int, cfg: WorldConfig = DEFAULT_WORLD, long_form: bool = False
) -> WorldSample:
    """Scene ``index`` of ``split`` and its tasks; a pure function of its arguments. With
    ``long_form`` the long-form questions (``long_form.long_form_tasks``, drawn from a stream
    of their own) follow the short ones, which stay the same."""
    rng = scene_rng(seed, split, index)
    scene = generate_scene(rng, cfg)
    tasks = make_tasks(scene, rng)
    if long_form:
        tasks += long_form_tasks(
            scene, np.random.default_rng([seed, split.stream, index, LONG_FORM_STREAM])
        )
    return WorldSample(f"{split.value}-{seed}-{index:07d}", scene, tuple(tasks))


def iter_samples(
    seed: int,
    split: Split,
    count: int,
    cfg: WorldConfig = DEFAULT_WORLD,
    start: int = 0,
    long_form: bool = False,
) -> Iterator[WorldSample]:
    for index in range(start, start + count):
        yield make_sample(seed, split, index, cfg, long_form)


def conversation_record(sample: WorldSample, task_index: int, image_rel: str) -> dict:
    """One single-turn LLaVA conversation: ``{"id", "image", "conversations", "task"}``."""
    task = sample.tasks[task_index]
    return {
        "id": f"{sample.uid}-{task_index}",
        "image": image_rel,
        "conversations": [
            {"from": "human", "value": "<image>\n" + task.question},
            {"from": "gpt", "value": task.answer},
        ],
        "task": task.task_type.value,
    }


def export_split(
    out_dir: Path,
    split: Split,
    count: int,
    seed: int = 0,
    cfg: WorldConfig = DEFAULT_WORLD,
    exclude: set | None = None,
    long_form: bool = False,
) -> Path:
    """Write ``out_dir/<split>.jsonl`` and ``out_dir/images/<uid>.png``; return the JSONL path.

    One record per (scene, task); all tasks of a scene share its PNG. Scenes whose ``key()`` is
    in ``exclude`` (the training scenes, for the held-out splits) are skipped. ``long_form``:
    the long-form questions too.
    """
    if count <= 0:
        raise ValueError(f"count must be > 0, got {count}")
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{split.value}.jsonl"
    tmp = path.with_suffix(".jsonl.tmp")
    with tmp.open("w") as fh:
        for sample in iter_samples(seed, split, count, cfg, long_form=long_form):
            if exclude is not None and sample.scene.key() in exclude:
                continue
            image_rel = f"images/{sample.uid}.png"
            render_scene(sample.scene).save(out_dir / image_rel)
            for i in range(len(sample.tasks)):
                fh.write(json.dumps(conversation_record(sample, i, image_rel)) + "\n")
    tmp.replace(path)
    return path


def export_world(
    out_dir: Path,
    counts: dict[Split, int],
    seed: int = 0,
    cfg: WorldConfig = DEFAULT_WORLD,
    long_form: bool = False,
) -> dict[Split, Path]:
    """Export every split in ``counts``; held-out splits exclude any training scene.
    ``long_form``: the long-form questions too."""
    train_keys = {
        s.scene.key() for s in iter_samples(seed, Split.TRAIN, counts.get(Split.TRAIN, 0), cfg)
    }
    paths = {}
    for split, count in counts.items():
        exclude = None if split is Split.TRAIN else train_keys
        paths[split] = export_split(out_dir, split, count, seed, cfg, exclude, long_form)
    return paths


def read_jsonl(path: Path) -> list[dict]:
    with Path(path).open() as fh:
        return [json.loads(line) for line in fh if line.strip()]
