"""``anelastic verify kernels``: the kernel pass checked against its own definitions.

On a small 2-D problem per physics (float64):

- ``checkpoint_vs_full``: max over kernels of ``max |K_ckpt - K_full| / max |K_full|`` for chunk
  lengths that do and do not divide nt (expected 0: the replay is bitwise the forward);
- ``gradient_check``: for a smooth perturbation dm of each parameter (a Gaussian blob away from
  the absorbing layers, 1e-4 relative), the kernel-predicted ``sum g dm`` against the central
  difference ``(chi(m + dm) - chi(m - dm)) / 2``, for pressure data with the waveform and
  cross-correlation traveltime misfits, and for two-component particle-velocity data (vx, vz)
  with every misfit. The finite differences hold the relaxation mechanisms fixed, as the
  kernels do. The kernels also hold the absorbing layers fixed while the C-PML damping scales
  with the model's largest velocity, so the receivers stay well inside (at 6 cells from the
  layer the check drops from ~1e-6 to ~1e-3 relative error);
- ``transpose_check``: ``<L x, y>`` against ``<x, L^T y>`` for random states, L one forward step
  without sources, L^T one adjoint step (equal to rounding when the adjoint is exact);
- ``time_steps``: steps executed by each strategy (3 nt for checkpoint, 4 nt for dispersion-only);
- ``dispersion_only_vs_exact``: relative L2 difference of K_alpha, dispersion-only vs exact,
  at Q = 30 (clearly nonzero) and Q = inf (roundoff: both rebuild the same lossless field).
"""

from __future__ import annotations

import time

import numpy as np

from anelastic.acquisition import Component, Receivers, Seismograms, Source, ricker
from anelastic.checks.problem import Problem
from anelastic.forward.simulation import Simulation, TimeAxis
from anelastic.kernel.compute import compute_kernels
from anelastic.kernel.inputs import Event, KernelSettings, Storage, kernel_fit
from anelastic.kernel.misfit import Misfit, MisfitKind, TimeWindow
from anelastic.model import Grid, gaussian_anomaly, homogeneous
from anelastic.physics import PhysicsConfig, PhysicsKind

TOLERANCES = {"checkpoint_vs_full": 1e-6, "gradient_check": 0.02}
SHAPE, SPACING, F0, NT, DT = (56, 44), 10.0, 12.0, 360, 1e-3
PARAMETERS = {
    PhysicsKind.VISCOACOUSTIC: ("vp", "rho", "qp"),
    PhysicsKind.VISCOELASTIC: ("vp", "vs", "rho", "qp", "qs"),
}
REL_STEP = 1e-4
VELOCITY_DATA = (Component.VX, Component.VZ)  # two-component particle-velocity receivers
CHUNKS = (60, 97)  # divides NT, does not; few distinct lengths = few compiled operators


def problem(
    kind: PhysicsKind, q: float = 30.0, dtype: str = "float64", components=(Component.P,)
) -> Problem:
    """The problem of the kernel checks (the tests share its compiled operators);
    ``components``: what the receivers record."""
    grid = Grid(SHAPE, (SPACING, SPACING))
    elastic = kind is PhysicsKind.VISCOELASTIC
    model = homogeneous(grid, 2000.0, 2000.0, 1150.0 if elastic else 0.0, q, q, f_ref=F0)
    model = gaussian_anomaly(model, (340.0, 230.0), 60.0, {"vp": 0.05})
    config = PhysicsConfig(kind, space_order=8, pml_width=10, dtype=dtype)
    source = Source((150.0, 240.0), ricker(F0))
    receivers = Receivers(np.array([[450.0, 180.0], [450.0, 300.0]]), tuple(components))
    return Problem(model, source, receivers, TimeAxis(DT, NT), config)


def check_event(
    kind: PhysicsKind,
    misfit_kind: MisfitKind = MisfitKind.WAVEFORM,
    q: float = 30.0,
    components=(Component.P,),
) -> Event:
    """The event of the kernel checks: ``problem(kind, q, components=...)`` with observed data
    that suit ``misfit_kind``."""
    p = problem(kind, q, components=components)
    observed = _observed(p, misfit_kind)
    return Event(p.model, [p.source], p.receivers, p.time, p.config, observed)


def _observed(p: Problem, misfit_kind: MisfitKind) -> Seismograms:
    """Zero traces for the waveform misfit; a slightly faster model's data for traveltimes."""
    if misfit_kind is MisfitKind.WAVEFORM:
        zeros = {c: np.zeros((p.time.nt, p.receivers.count)) for c in p.receivers.components}
        return Seismograms(p.time.dt, p.receivers.positions, zeros)
    faster = p.model.replace(vp=p.model.vp * 1.02, vs=p.model.vs * 1.02)
    return p.simulation(faster).run()


def _misfit(kind: MisfitKind) -> Misfit:
    if kind is MisfitKind.WAVEFORM:
        return Misfit(kind)
    return Misfit(kind, window=TimeWindow(0.1, 0.35, 0.2))


def transpose_check(sim: Simulation, ops, step: int = 20, seed: int = 7) -> tuple[float, float]:
    """(<L x, y>, <x, L^T y>) for random states x (step n) and adjoint states y (step n + 1),
    L the forward step of ``sim`` without sources over every field (wavefields, memory, C-PML),
    L^T one adjoint step of its kernel operators ``ops`` with silent adjoint sources."""
    from anelastic.forward.state import SolverState
    from anelastic.kernel.operators import adjoint_sources

    ops.sim, rng = sim, np.random.default_rng(seed)

    def forward_step(arrays):
        sim.restore(SolverState(step, arrays, sim.fingerprint()))
        sim.advance(step + 1)
        return sim.state().fields

    shapes = {name: a.shape for name, a in sim.state().fields.items()}
    zero = {name: np.zeros(s) for name, s in shapes.items()}
    # A C-PML auxiliary exists only where a region damps its axis (elsewhere never written):
    # a psi = 1 state steps to b > 0 there and to 0 elsewhere.
    ones = {k: np.ones(s) for k, s in shapes.items() if k.startswith("psi")}
    mask = {k: v != 0 for k, v in forward_step({**zero, **ones}).items() if k in ones}
    x = {k: rng.standard_normal(s) * mask.get(k, 1) for k, s in shapes.items()}
    y = {k: rng.standard_normal(s) * mask.get(k, 1) for k, s in shapes.items()}
    stepped, source_only = forward_step(x), forward_step(zero)
    for name, f in ops.adjoint.items():
        f.data[:] = 0
        f.data[1] = y[name.removeprefix("adj_")]
    silent = np.zeros((sim.time.nt, sim.receivers.count))
    residuals = dict.fromkeys(sim.receivers.components, silent)
    ops.adjoint_chunk(step, step + 1, adjoint_sources(ops.scheme, residuals))
    transposed = {k: np.array(ops.adjoint[f"adj_{k}"].data[1]) for k in shapes}
    lhs = sum(float(np.vdot(stepped[k] - source_only[k], y[k])) for k in shapes)
    rhs = sum(float(np.vdot(x[k], transposed[k])) for k in shapes)
    return lhs, rhs


def checkpoint_vs_full(kind: PhysicsKind) -> list[dict]:
    """Kernels with checkpoint storage at chunk lengths that divide nt and do not."""
    event = check_event(kind)
    misfit = _misfit(MisfitKind.WAVEFORM)
    # Full storage first: its nt-frame operators then serve the shorter chunks (no recompile).
    full = compute_kernels(event, KernelSettings(misfit, Storage.FULL))
    rows = []
    for chunk in CHUNKS:
        ckpt = compute_kernels(event, KernelSettings(misfit, Storage.CHECKPOINT, chunk=chunk))
        diff = max(max_rel_diff(ckpt.kernels[k], full.kernels[k]) for k in full.kernels)
        rows.append({
            "physics": kind.value, "chunk": chunk, "divides_nt": NT % chunk == 0,
            "max_rel_diff": diff, "time_steps": ckpt.summary["time_steps"]["total"],
        })  # fmt: skip
    return rows


def gradient_check(
    kind: PhysicsKind, misfit_kind: MisfitKind, components=(Component.P,)
) -> list[dict]:
    """Kernel-predicted misfit change vs central finite differences, per parameter, for
    receivers recording ``components``."""
    event = check_event(kind, misfit_kind, components=components)
    misfit = _misfit(misfit_kind)
    result = compute_kernels(event, KernelSettings(misfit, Storage.CHECKPOINT, chunk=CHUNKS[0]))
    fit = kernel_fit(event.model, event.config, F0)
    blob = perturbation(event.model.grid)
    rows = []
    for name in PARAMETERS[kind]:
        predicted, fd = central_difference(event, misfit, fit, result.gradients, name, blob)
        rows.append({
            "physics": kind.value, "misfit": misfit_kind.value, "parameter": name,
            "data": "+".join(c.value for c in components),
            "predicted": predicted, "finite_difference": fd,
            "rel_error": abs(predicted - fd) / max(abs(fd), 1e-300),
        })  # fmt: skip
    return rows


def central_difference(event: Event, misfit: Misfit, fit, gradients: dict, name: str, shape):
    """(kernel-predicted ``sum g dm``, ``(chi(m + dm) - chi(m - dm)) / 2``) for the
    perturbation ``dm = REL_STEP * m * shape`` of parameter ``name`` (mechanisms ``fit``
    held fixed); ``gradients``: dchi/d(parameter) on the model grid."""
    base = getattr(event.model, name)
    dm = REL_STEP * base * shape
    predicted = float(np.sum(gradients[name] * dm))
    plus = misfit_value(event, misfit, fit, event.model.replace(**{name: base + dm}))
    minus = misfit_value(event, misfit, fit, event.model.replace(**{name: base - dm}))
    return predicted, (plus - minus) / 2


def perturbation(grid: Grid) -> np.ndarray:
    """Smooth perturbation shape [*grid shape]: a Gaussian between source and receivers."""
    x, z = np.meshgrid(grid.coordinates(0), grid.coordinates(1), indexing="ij")
    return np.exp(-((x - 300.0) ** 2 + (z - 220.0) ** 2) / (2 * 40.0**2))


def misfit_value(event: Event, misfit: Misfit, fit, model) -> float:
    """The misfit of ``event`` on ``model`` (relaxation mechanisms ``fit`` held fixed)."""
    sim = Simulation(model, event.sources, event.receivers, event.time, event.config, sls_fit=fit)
    syn = sim.run().data
    return sum(
        float(misfit.evaluate(syn[c], event.observed.data[c], event.time.dt)[0])
        for c in event.receivers.components
    )


def dispersion_only_vs_exact(kind: PhysicsKind) -> tuple[dict, dict]:
    """K_alpha relative difference at Q = 30 and Q = inf, and the steps of each strategy."""
    out, steps = {}, {}
    for label, q in (("q30", 30.0), ("q_inf", np.inf)):
        event = check_event(kind, q=q)
        misfit = _misfit(MisfitKind.WAVEFORM)
        exact = compute_kernels(event, KernelSettings(misfit, Storage.CHECKPOINT, chunk=CHUNKS[0]))
        approx = compute_kernels(
            event, KernelSettings(misfit, Storage.DISPERSION_ONLY, chunk=CHUNKS[0])
        )
        out[label] = _rel_l2(approx.kernels["K_alpha"], exact.kernels["K_alpha"])
        if label == "q30":
            steps = {
                "nt": NT,
                "checkpoint": exact.summary["time_steps"]["total"],
                "dispersion_only": approx.summary["time_steps"]["total"],
            }
    return out, steps


def max_rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| / max |b| (``b`` the reference)."""
    return float(np.abs(a - b).max() / np.abs(b).max())


def _rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    """||a - b|| / ||b|| (robust to the singular points at source and receivers)."""
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def available_physics() -> list[PhysicsKind]:
    """Physics whose adjoint is implemented in this build."""
    from anelastic.physics import physics_class

    kinds = []
    for kind in PhysicsKind:
        p = problem(kind)
        try:
            physics = physics_class(kind)(p.model, p.config, p.time.dt, (1.5, 150.0))
            physics.adjoint()
        except ValueError:
            continue
        kinds.append(kind)
    return kinds


def verify_kernels(kinds: list[PhysicsKind] | None = None) -> dict:
    """Run every check (see the module docstring); returns the JSON report."""
    start = time.perf_counter()
    kinds = kinds or available_physics()
    ckpt = [row for kind in kinds for row in checkpoint_vs_full(kind)]
    grads = [
        row
        for kind in kinds
        for misfit_kind in (MisfitKind.WAVEFORM, MisfitKind.CC_TRAVELTIME)
        for row in gradient_check(kind, misfit_kind)
    ]
    grads += [  # particle-velocity data, every misfit kind
        row
        for kind in kinds
        for misfit_kind in MisfitKind
        for row in gradient_check(kind, misfit_kind, VELOCITY_DATA)
    ]
    dispersion, steps = dispersion_only_vs_exact(kinds[0])
    report = {
        "physics": [k.value for k in kinds],
        "checkpoint_vs_full": {"max_rel_diff": max(r["max_rel_diff"] for r in ckpt), "cases": ckpt},
        "gradient_check": grads,
        "time_steps": steps,
        "dispersion_only_vs_exact": dispersion,
        "tolerances": TOLERANCES,
    }
    report["passed"] = bool(
        report["checkpoint_vs_full"]["max_rel_diff"] <= TOLERANCES["checkpoint_vs_full"]
        and all(r["rel_error"] <= TOLERANCES["gradient_check"] for r in grads)
        and steps["checkpoint"] == 3 * NT
        and steps["dispersion_only"] == 4 * NT
    )
    report["seconds"] = round(time.perf_counter() - start, 1)
    return report
