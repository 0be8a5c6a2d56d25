"""Deterministic inputs for the self-checks: noise images and prompts over the zoo's words."""

from __future__ import annotations

import random

import numpy as np
from PIL import Image

from hivis.selfcheck.zoo import PLACEHOLDER, WORDS, TinySpec
from hivis.targets.families import Family

_DEFAULT_SPEC = TinySpec()


def random_image(seed: int, size: tuple[int, int] = (20, 24)) -> Image.Image:
    """A deterministic RGB noise image of ``size`` = (height, width)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(size[0], size[1], 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def random_prompt(family: Family, seed: int, spec: TinySpec = _DEFAULT_SPEC) -> str:
    """A prompt with one image placeholder and 2-7 words, deterministic in ``seed``."""
    rng = random.Random(seed)
    words = WORDS[: spec.vocab_words]
    before = " ".join(rng.choice(words) for _ in range(rng.randint(0, 2)))
    after = " ".join(rng.choice(words) for _ in range(rng.randint(2, 5)))
    return f"{before} {PLACEHOLDER[Family(family)]} {after}".strip()
