"""The package's shape: light import, public names, one strategy per storage, one runtime place."""

from __future__ import annotations

import os
import subprocess
import sys

from anelastic.kernel.inputs import Storage
from anelastic.kernel.storage import STRATEGIES, StorageStrategy


def _python(code: str, **env: str) -> str:
    omp = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
    environ = {k: v for k, v in os.environ.items() if k not in omp} | env
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
        "print(os.environ.get('GOMP_SPINCOUNT'))\n"
        "from anelastic.forward import runtime\n"
        "runtime.configure()\n"
        "from devito import configuration\n"
        "print(os.environ.get('GOMP_SPINCOUNT'), os.environ.get('OMP_WAIT_POLICY'),"
        " configuration['language'])"
    )
    assert _python(code).split() == ["None", "10000", "None", "openmp"]
    # a user's own OpenMP waiting settings are kept as they are
    assert _python(code, OMP_WAIT_POLICY="active").split() == ["None", "None", "active", "openmp"]
    assert _python(code, GOMP_SPINCOUNT="5").split() == ["5", "5", "None", "openmp"]


def test_grid_loops_get_one_contiguous_block_per_thread():
    """Devito's one-row-per-thread schedule made two threads slower than one (runtime.py)."""
    code = (
        "from anelastic.forward import runtime\n"
        "runtime.configure()\n"
        "from devito import Eq, Grid, Operator, SparseFunction, TimeFunction\n"
        "grid = Grid((16, 16))\n"
        "u = TimeFunction(name='u', grid=grid, space_order=2)\n"
        "s = SparseFunction(name='s', grid=grid, npoint=3)\n"
        "print(Operator([Eq(u.forward, u.laplace)] + s.inject(u.forward, expr=s)))"
    )
    schedules = [ln.strip() for ln in _python(code).splitlines() if "omp for" in ln]
    assert "#pragma omp for schedule(static)" in schedules
    assert any("schedule(dynamic,chunk_size)" in ln for ln in schedules)  # sparse: unchanged
    assert not any("schedule(static,1)" in ln or "schedule(dynamic,1)" in ln for ln in schedules)
