"""The shipped world models: where they live, how to load them, and the held-out test cases.

``hivis/world/assets/`` (package data, built by ``hivis world build`` / ``make world``) holds

* ``target/``: the tiny LLaVA target in float16 with its processor, tokenizer and chat template;
* ``drafters/{hivis,eagle,text-only}/``: the three drafters in float16;
* ``manifest.json``: how they were built (settings, durations, sizes, validation top-1).

Models are loaded in float32 (float16 matrix products are slow on CPUs); the float16 target
was already the one the drafters were trained on, so nothing changes but the arithmetic.
Nothing is downloaded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum
from importlib import resources
from pathlib import Path

import torch
from PIL import Image

from hivis.world.data.dataset import Split, make_sample
from hivis.world.data.scenes import render_scene
from hivis.world.data.tasks import TaskType
from hivis.world.data.tokenizer import prompt_text

ASSET_BUDGET_BYTES = 30_000_000
BUILD_HINT = (
    "build them with `make world` (or `hivis world build --target RUN/target --work DIR` from "
    "a trained world target)"
)


class DrafterKind(Enum):
    """The three shipped drafters."""

    HIVIS = "hivis"  # text rows + the target's hidden states (the paper's drafter)
    EAGLE = "eagle"  # EAGLE-style baseline: the visual rows too
    TEXT_ONLY = "text-only"  # ablation: no target hidden states at all

    @property
    def hide_visual_tokens(self) -> bool:
        return self is not DrafterKind.EAGLE

    @property
    def use_target_features(self) -> bool:
        return self is not DrafterKind.TEXT_ONLY


class AssetsMissing(FileNotFoundError):
    """The shipped models are not there (or incomplete)."""


def default_assets_dir() -> Path:
    """``hivis/world/assets`` of the installed package."""
    return Path(str(resources.files("hivis.world").joinpath("assets")))


def check_assets(assets: Path | None = None, kinds=tuple(DrafterKind)) -> Path:
    """The assets directory, or :class:`AssetsMissing` naming what is absent and how to build."""
    assets = Path(assets) if assets is not None else default_assets_dir()
    needed = [assets / "manifest.json", assets / "target" / "config.json"]
    needed += [assets / "target" / "model.safetensors"]
    for kind in kinds:
        needed += [
            assets / "drafters" / kind.value / f for f in ("config.json", "drafter.safetensors")
        ]
    missing = [str(p) for p in needed if not p.is_file()]
    if missing:
        raise AssetsMissing(
            f"the shipped world models are missing ({', '.join(missing[:3])}"
            f"{', ...' if len(missing) > 3 else ''}); {BUILD_HINT}"
        )
    return assets


@dataclass
class WorldModels:
    """The loaded target, drafters by kind and the build manifest."""

    target: object
    drafters: dict
    manifest: dict


def load_world(
    assets: Path | None = None, kinds=tuple(DrafterKind), lean: bool = True
) -> WorldModels:
    """Load the shipped target (float32; ``lean``: its steps through
    :mod:`hivis.targets.lean`) and the drafters of ``kinds``."""
    from hivis.drafter import HiViSDrafter
    from hivis.targets import load_target

    assets = check_assets(assets, kinds)
    target = load_target(assets / "target", dtype=torch.float32, lean=lean)
    drafters = {k: HiViSDrafter.load(assets / "drafters" / k.value, target) for k in kinds}
    manifest = json.loads((assets / "manifest.json").read_text())
    return WorldModels(target, drafters, manifest)


@dataclass(frozen=True)
class TestCase:
    """One held-out question: a test-split scene, its question and the world's answer."""

    uid: str
    image: Image.Image
    task: TaskType
    question: str
    reference: str

    @property
    def prompt(self) -> str:
        return prompt_text(self.question)


TestCase.__test__ = False  # not a pytest class


def test_cases(
    scenes: int, tasks=None, seed: int = 0, start: int = 0, long_form: bool = False
) -> list[TestCase]:
    """The questions of ``tasks`` (default: all) for test-split scenes start..start+scenes-1,
    with ``long_form`` their long-form questions too.

    The test split is a random stream the build never reads, so these scenes are held out
    from the target's and the drafters' training.
    """
    if scenes < 1:
        raise ValueError(f"scenes must be >= 1, got {scenes}")
    wanted = None if tasks is None else {TaskType(t) for t in tasks}
    cases = []
    for index in range(start, start + scenes):
        sample = make_sample(seed, Split.TEST, index, long_form=long_form)
        image = render_scene(sample.scene)
        for task in sample.tasks:
            if wanted is None or task.task_type in wanted:
                cases.append(
                    TestCase(sample.uid, image, task.task_type, task.question, task.answer)
                )
    return cases


test_cases.__test__ = False  # not a pytest test
