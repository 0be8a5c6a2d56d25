"""``anelastic demo``: a 2-D model with an anomaly, with and without attenuation, and kernels.

Writes side-by-side seismogram sections, a trace overlay and a wavefield snapshot (PNG), and
prints Q recovered by spectral ratio from the synthetic data next to the input Q. The physics is
viscoelastic when available, viscoacoustic otherwise (``demo_physics``).

Then a banana-doughnut traveltime kernel in an attenuating medium, exact (checkpoint storage)
against the dispersion-only approximation: one explosive source and one pressure receiver 1 km
apart in a homogeneous 2-D medium with Q = 30; observed data from a 2 % faster medium, so the
cross-correlation traveltime misfit is nonzero. Writes ``kernel_alpha.png`` (exact K_alpha,
dispersion-only K_alpha, their difference, on one colour scale) and returns the storage /
time-step table.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from anelastic.acquisition import Component, Receivers, Seismograms, Source, SourceKind, ricker
from anelastic.app import plot
from anelastic.checks.spectral import measure_q
from anelastic.forward.simulation import Simulation, TimeAxis
from anelastic.kernel.compute import compute_kernels
from anelastic.kernel.inputs import Event, KernelSettings, Storage
from anelastic.kernel.misfit import Misfit, MisfitKind, TimeWindow
from anelastic.kernel.schedule import parse_bytes
from anelastic.model import Grid, Model, gaussian_anomaly, homogeneous
from anelastic.physics import PhysicsConfig, PhysicsKind, physics_class

SHAPE, SPACING = (181, 101), 10.0
VP, VS, RHO, QP, QS, F0 = 2000.0, 1200.0, 2000.0, 30.0, 20.0, 12.0
SOURCE_POSITION = (200.0, 200.0)
NEAR_OFFSET, FAR_OFFSET = 300.0, 1000.0

# The kernel part (VP and RHO as above).
KERNEL_SHAPE, KERNEL_F0, KERNEL_VS, KERNEL_Q = (141, 81), 10.0, 1150.0, 30.0
KERNEL_TIME = TimeAxis(1e-3, 900)
KERNEL_SOURCE, KERNEL_RECEIVER = (200.0, 400.0), (1200.0, 400.0)
KERNEL_RECEIVER_ELASTIC = (1100.0, 650.0)  # vz data: below the source's depth
KERNEL_WINDOW = TimeWindow(0.45, 0.8, 0.2)
KERNEL_BUDGET = "48MiB"  # RAM for the replay buffer: N frames of the kernel pass


def demo_physics() -> PhysicsKind:
    """Viscoelastic if the rheology is installed, else viscoacoustic."""
    try:
        physics_class(PhysicsKind.VISCOELASTIC)
        return PhysicsKind.VISCOELASTIC
    except ValueError:
        return PhysicsKind.VISCOACOUSTIC


@dataclass(frozen=True)
class DemoProblem:
    """The demo for one physics; ``component`` carries the direct wave along the receiver line
    (used for Q); elastic receivers also record vz, where the anomaly's near-vertical
    reflections show."""

    model: Model
    source: Source
    receivers: Receivers
    component: Component


def demo_problem(kind: PhysicsKind, attenuating: bool) -> DemoProblem:
    """The demo problem of ``kind``, with Q (``attenuating``) or without."""
    grid = Grid(SHAPE, (SPACING, SPACING))
    elastic = kind is PhysicsKind.VISCOELASTIC
    q = (QP, QS) if attenuating else (np.inf, np.inf)
    base = homogeneous(grid, VP, RHO, VS if elastic else 0.0, q[0], q[1], f_ref=F0)
    model = gaussian_anomaly(base, (900.0, 650.0), 150.0, {"vp": 0.3, "vs": 0.3})
    if elastic:
        source = Source(SOURCE_POSITION, ricker(F0), SourceKind.MOMENT, moment=np.eye(2))
        component = Component.VX
    else:
        source = Source(SOURCE_POSITION, ricker(F0))
        component = Component.P
    xs = np.linspace(300.0, 1700.0, 71)
    positions = np.stack([xs, np.full_like(xs, SOURCE_POSITION[1])], axis=1)
    components = (component, Component.VZ) if elastic else (component,)
    return DemoProblem(model, source, Receivers(positions, components), component)


@dataclass(frozen=True)
class DemoRun:
    """Seismograms of one demo simulation and its ``snapshot`` [*grid shape] at t = 0.4 s."""

    problem: DemoProblem
    seismograms: Seismograms
    snapshot: np.ndarray


def run_demo(out_dir: str | Path, threads: int | None = None, kernels: bool = True) -> dict:
    """Run both simulations (and the kernel demo), write the PNGs and ``demo.json``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    kind = demo_physics()
    start = time.perf_counter()
    lossy, lossless = (_simulate(kind, attenuating, threads) for attenuating in (True, False))
    _write_pngs(kind, lossy, lossless, out)
    problem, seis = lossy.problem, lossy.seismograms
    traces = seis.data[problem.component]
    near, far = (_receiver_index(problem.receivers, d) for d in (NEAR_OFFSET, FAR_OFFSET))
    q_measured = measure_q(
        traces[:, near], traces[:, far], seis.dt, NEAR_OFFSET, FAR_OFFSET, VP, F0,
        problem.source.wavelet.t0, dim=2,
    )  # fmt: skip
    summary = {
        "physics": kind.value,
        "q_input": QP,
        "q_recovered": q_measured,
        "outputs": ["seismograms.png", "traces.png", "wavefield.png"],
    }
    if kernels:
        extra = run_kernel_demo(out, threads)
        summary["outputs"] += extra.pop("kernel_outputs")
        summary.update(extra)
    summary["seconds"] = round(time.perf_counter() - start, 2)
    (out / "demo.json").write_text(json.dumps(summary, indent=2))
    return summary


def _simulate(kind: PhysicsKind, attenuating: bool, threads: int | None) -> DemoRun:
    problem = demo_problem(kind, attenuating)
    config = PhysicsConfig(kind, space_order=8, pml_width=20)
    sim = Simulation(
        problem.model, [problem.source], problem.receivers, TimeAxis(1e-3, 900), config,
        threads=threads,
    )  # fmt: skip
    sim.advance(400)
    snapshot = sim.wavefield("p" if problem.component is Component.P else "vx")
    return DemoRun(problem, sim.run(), snapshot)


def _write_pngs(kind: PhysicsKind, lossy: DemoRun, lossless: DemoRun, out: Path) -> None:
    """seismograms.png (both sections), traces.png (far trace of both), wavefield.png."""
    problem = lossy.problem
    component, receivers = problem.component, problem.receivers
    seis_q, seis_e = lossy.seismograms, lossless.seismograms
    plot.seismogram_png(
        [(f"Q = {QP:g}", seis_q), ("no attenuation", seis_e)],
        receivers.components[-1],
        out / "seismograms.png",
        # A pressure section is dominated by the direct wave: saturate it to show scattering.
        clip_fraction=0.1 if component is Component.P else 1.0,
    )
    far = _receiver_index(receivers, FAR_OFFSET)
    plot.traces_png(
        seis_q.times,
        [
            (f"Q = {QP:g}", seis_q.data[component][:, far]),
            ("elastic", seis_e.data[component][:, far]),
        ],
        out / "traces.png",
        f"{kind.value}: trace at {FAR_OFFSET:g} m offset",
    )
    plot.wavefield_png(
        lossy.snapshot, problem.model.grid, out / "wavefield.png",
        f"{kind.value} snapshot at t = 0.4 s", np.array([SOURCE_POSITION]), receivers.positions,
    )  # fmt: skip


def _receiver_index(receivers: Receivers, offset: float) -> int:
    distance = np.abs(receivers.positions[:, 0] - SOURCE_POSITION[0] - offset)
    return int(np.argmin(distance))


def kernel_physics() -> PhysicsKind:
    """Viscoelastic if its adjoint is in this build, else viscoacoustic."""
    from anelastic.checks.kernels import available_physics

    kinds = available_physics()
    return PhysicsKind.VISCOELASTIC if PhysicsKind.VISCOELASTIC in kinds else kinds[0]


def kernel_event(kind: PhysicsKind) -> Event:
    """The kernel demo's event: observed data from a 2 % faster model."""
    grid = Grid(KERNEL_SHAPE, (SPACING, SPACING))
    vs = KERNEL_VS if kind is PhysicsKind.VISCOELASTIC else 0.0
    model = homogeneous(grid, VP, RHO, vs, KERNEL_Q, KERNEL_Q, f_ref=KERNEL_F0)
    config = PhysicsConfig(kind, space_order=8, pml_width=20)
    source = Source(KERNEL_SOURCE, ricker(KERNEL_F0))
    # Viscoelastic: the vertical particle velocity, as a seismometer records it (the receiver
    # sits deeper than the source, so the direct P wave moves it vertically too).
    elastic = kind is PhysicsKind.VISCOELASTIC
    position = KERNEL_RECEIVER_ELASTIC if elastic else KERNEL_RECEIVER
    component = Component.VZ if elastic else Component.P
    receivers = Receivers(np.array([position]), (component,))
    faster = model.replace(vp=model.vp * 1.02, vs=model.vs * 1.02)
    observed = Simulation(faster, [source], receivers, KERNEL_TIME, config)  # same operator
    return Event(model, [source], receivers, KERNEL_TIME, config, observed.run())


def run_kernel_demo(out: Path, threads: int | None = None) -> dict:
    """Exact and dispersion-only kernels, the comparison PNG and the storage table."""
    kind = kernel_physics()
    event = kernel_event(kind)
    misfit = Misfit(MisfitKind.CC_TRAVELTIME, window=KERNEL_WINDOW)
    rows, kernels = [], {}
    for storage in (Storage.CHECKPOINT, Storage.DISPERSION_ONLY):
        with tempfile.TemporaryDirectory(prefix="anelastic-demo-") as store:
            settings = KernelSettings(
                misfit, storage, memory_budget=parse_bytes(KERNEL_BUDGET), store=Path(store),
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
        event.model.grid, out / "kernel_alpha.png", np.array([KERNEL_SOURCE]),
        event.receivers.positions, shared_scale=True, units="s2 m-3",
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
