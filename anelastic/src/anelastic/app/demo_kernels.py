"""The kernel part of ``anelastic demo``: a banana-doughnut traveltime kernel in an attenuating
medium, exact (checkpoint storage) against the dispersion-only approximation.

One explosive source and one pressure receiver 1 km apart in a homogeneous 2-D medium with
Q = 30; observed data from a 2 % faster medium, so the cross-correlation traveltime misfit is
nonzero. Writes ``kernel_alpha.png`` (exact K_alpha, dispersion-only K_alpha, their
difference, on one colour scale) and returns the storage / time-step table.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from anelastic.acquisition import Component, Receivers, Source, ricker
from anelastic.app import plot
from anelastic.forward.simulation import Simulation, TimeAxis
from anelastic.kernel.compute import compute_kernels
from anelastic.kernel.inputs import Event, KernelSettings, Storage
from anelastic.kernel.misfit import Misfit, MisfitKind, TimeWindow
from anelastic.kernel.schedule import parse_bytes
from anelastic.model import Grid, homogeneous
from anelastic.physics import PhysicsConfig, PhysicsKind

SHAPE, H, F0, NT, DT = (141, 81), 10.0, 10.0, 900, 1e-3
VP, VS, RHO, Q = 2000.0, 1150.0, 2000.0, 30.0
SOURCE, RECEIVER = (200.0, 400.0), (1200.0, 400.0)
WINDOW = TimeWindow(0.45, 0.8, 0.2)
BUDGET = "48MiB"  # RAM for the replay buffer: N frames of the kernel pass


def kernel_physics() -> PhysicsKind:
    """Viscoelastic if its adjoint is in this build, else viscoacoustic."""
    from anelastic.checks.kernels import available_physics

    kinds = available_physics()
    return PhysicsKind.VISCOELASTIC if PhysicsKind.VISCOELASTIC in kinds else kinds[0]


def kernel_event(kind: PhysicsKind) -> Event:
    grid = Grid(SHAPE, (H, H))
    vs = VS if kind is PhysicsKind.VISCOELASTIC else 0.0
    model = homogeneous(grid, VP, RHO, vs, Q, Q, f_ref=F0)
    config = PhysicsConfig(kind, space_order=8, pml_width=20)
    source = Source(SOURCE, ricker(F0))
    receivers = Receivers(np.array([RECEIVER]), (Component.P,))
    time_axis = TimeAxis(DT, NT)
    faster = model.replace(vp=model.vp * 1.02, vs=model.vs * 1.02)
    observed = Simulation(faster, [source], receivers, time_axis, config)  # same operator
    return Event(model, [source], receivers, time_axis, config, observed.run())


def run_kernel_demo(out: Path, threads: int | None = None) -> dict:
    """Exact and dispersion-only kernels, the comparison PNG and the storage table."""
    kind = kernel_physics()
    event = kernel_event(kind)
    misfit = Misfit(MisfitKind.CC_TRAVELTIME, window=WINDOW)
    rows, kernels = [], {}
    for storage in (Storage.CHECKPOINT, Storage.DISPERSION_ONLY):
        with tempfile.TemporaryDirectory(prefix="anelastic-demo-") as store:
            settings = KernelSettings(
                misfit, storage, memory_budget=parse_bytes(BUDGET), store=Path(store),
                threads=threads,
            )  # fmt: skip
            begin = time.perf_counter()
            result = compute_kernels(event, settings)
            rows.append(_row(storage, result.summary, time.perf_counter() - begin))
        kernels[storage] = result.kernels["K_alpha"]
    exact, approx = kernels[Storage.CHECKPOINT], kernels[Storage.DISPERSION_ONLY]
    plot.maps_png(
        [("K_alpha exact (checkpoint)", exact), ("K_alpha dispersion-only", approx),
         ("dispersion-only - exact", approx - exact)],
        event.model.grid, out / "kernel_alpha.png", np.array([SOURCE]), np.array([RECEIVER]),
        shared_scale=True,
    )  # fmt: skip
    return {
        "kernel_physics": kind.value,
        "kernel_rel_difference": float(np.linalg.norm(approx - exact) / np.linalg.norm(exact)),
        "storage_table": rows,
        "kernel_outputs": ["kernel_alpha.png"],
    }


def _row(storage: Storage, summary: dict, seconds: float) -> dict:
    return {
        "storage": storage.value,
        "chunk": summary["chunk"],
        "time_steps": summary["time_steps"],
        "snapshots": summary.get("snapshots", 0),
        "disk_mib": round(summary.get("store_bytes", 0) / 2**20, 2),
        "buffer_mib": round(summary["buffer_bytes"] / 2**20, 2),
        "seconds": round(seconds, 1),
    }


def format_table(rows: list[dict]) -> str:
    """The storage table as text (one line per strategy)."""
    lines = [f"{'storage':16s} {'N':>5s} {'steps':>7s}  {'disk MiB':>8s} {'RAM buffer MiB':>14s}"]
    for r in rows:
        phases = ", ".join(f"{k} {v}" for k, v in r["time_steps"].items() if k != "total")
        lines.append(
            f"{r['storage']:16s} {r['chunk']:5d} {r['time_steps']['total']:7d}  "
            f"{r['disk_mib']:8.1f} {r['buffer_mib']:14.1f}   ({phases})"
        )
    return "\n".join(lines)
