"""Run by ``test_mpi.py`` under ``mpiexec -n 2``: a checkpointed kernel pass interrupted on its
third chunk (on every rank), then run again from the same store; rank 0 writes the restarted
run's kernels and step counts to ``OUT.npz``. Usage: ``mpi_restart.py STORE OUT.npz``."""

from __future__ import annotations

import sys

import numpy as np

from anelastic.checks.kernels import check_event
from anelastic.forward import decomposition
from anelastic.kernel.compute import compute_kernels
from anelastic.kernel.inputs import KernelSettings, Storage
from anelastic.kernel.misfit import Misfit
from anelastic.kernel.operators import KernelOperators
from anelastic.physics import PhysicsKind

CHUNK = 60


def main(store: str, out: str) -> None:
    event = check_event(PhysicsKind.VISCOACOUSTIC)
    settings = KernelSettings(
        Misfit(), Storage.CHECKPOINT, chunk=CHUNK, store=store, restart_interval=0.0
    )
    original = KernelOperators.adjoint_chunk
    calls = {"n": 0}

    def crash_on_third_chunk(self, start, stop, sources):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("simulated crash")
        original(self, start, stop, sources)

    KernelOperators.adjoint_chunk = crash_on_third_chunk
    try:
        compute_kernels(event, settings)
        raise SystemExit("the simulated crash did not happen")
    except KeyboardInterrupt:
        pass
    KernelOperators.adjoint_chunk = original
    result = compute_kernels(event, settings)
    steps = result.summary["time_steps"]
    if decomposition.is_root():
        np.savez(out, forward=steps["forward"], adjoint=steps["adjoint"], **result.kernels)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
