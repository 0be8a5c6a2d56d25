"""``anelastic demo``: a 2-D model with an anomaly, with and without attenuation, and kernels.

Writes side-by-side seismogram sections, a trace overlay and a wavefield snapshot (PNG), and
prints Q recovered by spectral ratio from the synthetic data next to the input Q; then a
banana-doughnut traveltime kernel, exact against dispersion-only (:mod:`.demo_kernels`).
The physics is viscoelastic when available, viscoacoustic otherwise (``demo_physics``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from anelastic.acquisition import Component, Receivers, Source, SourceKind, ricker
from anelastic.app import plot
from anelastic.checks.spectral import measure_q
from anelastic.forward.simulation import Simulation, TimeAxis
from anelastic.model import Grid, gaussian_anomaly, homogeneous
from anelastic.physics import PhysicsConfig, PhysicsKind, physics_class

SHAPE, SPACING = (181, 101), 10.0
VP, VS, RHO, QP, QS, F0 = 2000.0, 1200.0, 2000.0, 30.0, 20.0, 12.0
SOURCE_POSITION = (200.0, 200.0)
NEAR_OFFSET, FAR_OFFSET = 300.0, 1000.0


def demo_physics() -> PhysicsKind:
    """Viscoelastic if the rheology is installed, else viscoacoustic."""
    try:
        physics_class(PhysicsKind.VISCOELASTIC)
        return PhysicsKind.VISCOELASTIC
    except ValueError:
        return PhysicsKind.VISCOACOUSTIC


def demo_problem(kind: PhysicsKind, attenuating: bool):
    """(model, source, receivers, component) of the demo for one physics.

    ``component`` carries the direct wave along the receiver line (used for Q); elastic
    receivers also record vz, where the anomaly's near-vertical reflections show.
    """
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
    return model, source, Receivers(positions, components), component


def run_demo(out_dir: str | Path, threads: int | None = None, kernels: bool = True) -> dict:
    """Run both simulations (and the kernel demo), write the PNGs and ``demo.json``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    kind = demo_physics()
    config = PhysicsConfig(kind, space_order=8, pml_width=20)
    time_axis = TimeAxis(1e-3, 900)
    results, start = {}, time.perf_counter()
    for attenuating in (True, False):
        model, source, receivers, component = demo_problem(kind, attenuating)
        sim = Simulation(model, [source], receivers, time_axis, config, threads=threads)
        sim.advance(400)
        snapshot = sim.wavefield("p" if component is Component.P else "vx")
        results[attenuating] = (sim.run(), snapshot, model)
    seis_q, snapshot, model = results[True]
    seis_e = results[False][0]
    plot.seismogram_png(
        [(f"Q = {QP:g}", seis_q), ("no attenuation", seis_e)],
        receivers.components[-1],
        out / "seismograms.png",
        # A pressure section is dominated by the direct wave: saturate it to show scattering.
        clip_fraction=0.1 if component is Component.P else 1.0,
    )
    near, far = _receiver_index(receivers, NEAR_OFFSET), _receiver_index(receivers, FAR_OFFSET)
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
        snapshot, model.grid, out / "wavefield.png", f"{kind.value} snapshot at t = 0.4 s",
        np.array([SOURCE_POSITION]), receivers.positions,
    )  # fmt: skip
    q_measured = measure_q(
        seis_q.data[component][:, near], seis_q.data[component][:, far], seis_q.dt,
        NEAR_OFFSET, FAR_OFFSET, VP, F0, source.wavelet.t0, dim=2,
    )  # fmt: skip
    summary = {
        "physics": kind.value,
        "q_input": QP,
        "q_recovered": q_measured,
        "outputs": ["seismograms.png", "traces.png", "wavefield.png"],
    }
    if kernels:
        from anelastic.app.demo_kernels import run_kernel_demo

        extra = run_kernel_demo(out, threads)
        summary["outputs"] += extra.pop("kernel_outputs")
        summary.update(extra)
    summary["seconds"] = round(time.perf_counter() - start, 2)
    (out / "demo.json").write_text(json.dumps(summary, indent=2))
    return summary


def _receiver_index(receivers: Receivers, offset: float) -> int:
    distance = np.abs(receivers.positions[:, 0] - SOURCE_POSITION[0] - offset)
    return int(np.argmin(distance))
