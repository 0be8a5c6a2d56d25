"""Shared fixtures: tiny random-weight targets of every family, built once per session."""

from __future__ import annotations

import pytest
import torch
from tiny_world import TINY_WORLD_TARGET
from transformers.utils import logging

from hivis.selfcheck.zoo import TinySpec, build_tiny_target
from hivis.targets import Family, load_target

logging.disable_progress_bar()
torch.set_num_threads(1)

_DIRS: dict = {}


@pytest.fixture(scope="session")
def target_dir(tmp_path_factory):
    """Callable: family (and optional spec) -> directory of a tiny saved model."""

    def make(family: Family, spec: TinySpec | None = None):
        spec = spec or TinySpec()
        key = (Family(family), spec)
        if key not in _DIRS:
            path = tmp_path_factory.mktemp(f"{Family(family).value}")
            _DIRS[key] = build_tiny_target(family, path, spec)
        return _DIRS[key]

    return make


@pytest.fixture(scope="session")
def tiny_target(target_dir):
    """Callable: family (and optional spec) -> loaded HFTarget (cached)."""
    cache: dict = {}

    def make(family: Family, spec: TinySpec | None = None):
        spec = spec or TinySpec()
        key = (Family(family), spec)
        if key not in cache:
            cache[key] = load_target(target_dir(family, spec))
        return cache[key]

    return make


@pytest.fixture(scope="session")
def world_tokenizer_dir(tmp_path_factory):
    """A world tokenizer trained on 200 scenes, saved in Hugging Face format."""
    from hivis.world.data.tokenizer import save_tokenizer, train_tokenizer

    path = tmp_path_factory.mktemp("world-tok")
    save_tokenizer(train_tokenizer(vocab_size=640, scenes=200), path)
    return path


@pytest.fixture(scope="session")
def world_target(world_tokenizer_dir):
    """(model in eval mode, processor) of a random-weight TINY_WORLD_TARGET. Shared: tests
    that train copy its weights into a model of their own."""
    from transformers import AutoTokenizer

    from hivis.world.target.model import build_target

    tokenizer = AutoTokenizer.from_pretrained(world_tokenizer_dir)
    model, processor = build_target(TINY_WORLD_TARGET, tokenizer, seed=0)
    return model.eval(), processor
