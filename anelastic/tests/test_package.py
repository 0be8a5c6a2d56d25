"""The package's shape: light import, public names, one strategy per storage, one runtime place."""

from __future__ import annotations

import os
import subprocess
import sys

from anelastic.kernel.inputs import Storage
from anelastic.kernel.storage import STRATEGIES, StorageStrategy


def _python(code: str, **env: str) -> str:
    environ = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"} | env
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environ, check=True
    )
    return done.stdout.strip()


def test_import_is_light_and_public_names_resolve():
    out = _python(
        "import sys, anelastic\n"
        "print('devito' in sys.modules)\n"
        "print(all(hasattr(anelastic, n) for n in anelastic.__all__))"
    )
    assert out.split() == ["False", "True"]


def test_every_storage_has_one_strategy():
    assert set(STRATEGIES) == set(Storage)
    for storage, cls in STRATEGIES.items():
        assert issubclass(cls, StorageStrategy) and cls.storage is storage


def test_runtime_settings_are_applied_by_configure_only():
    code = (
        "import os, anelastic.forward.simulation\n"
        "print(os.environ.get('OMP_WAIT_POLICY'))\n"
        "from anelastic.forward import runtime\n"
        "runtime.configure()\n"
        "from devito import configuration\n"
        "print(os.environ['OMP_WAIT_POLICY'], configuration['language'])"
    )
    assert _python(code).split() == ["None", "passive", "openmp"]
    assert _python(code, OMP_WAIT_POLICY="active").split() == ["active", "active", "openmp"]
