"""Shared fixtures: tiny random-weight targets of every family, built once per session."""

from __future__ import annotations

import pytest
import torch
from transformers.utils import logging

from hivis.targets import Family, load_target
from hivis.testing import TinySpec, build_tiny_target

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
