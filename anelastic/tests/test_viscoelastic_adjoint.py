"""Viscoelastic kernels: the adjoint step is the exact transpose of the forward step, and the
kernels of rho, vp, vs, Qp, Qs predict central finite differences of a waveform misfit.

Three problems (one compiled forward, replay and adjoint operator each): attenuating (Qp, Qs
finite and varying) with C-PML at order 4, elastic (Q = inf) with a sponge at order 8, and
attenuating under a free surface at order 8 with two-component velocity data, mostly at the
surface (the perturbation covers the surface rows). The perturbation is compactly supported
away from the absorbing layers and from the fastest cell (the C-PML profiles follow the maximum
velocity), and the relaxation mechanisms are fixed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from anelastic.acquisition import Component, Receivers, Source, SourceKind, ricker
from anelastic.attenuation import default_band, fit_sls
from anelastic.checks.kernels import transpose_check
from anelastic.forward.simulation import Simulation, TimeAxis
from anelastic.kernel.operators import KernelOperators, adjoint_sources
from anelastic.kernel.schedule import chunks
from anelastic.model import Grid, gaussian_anomaly, homogeneous
from anelastic.physics import BoundaryKind, PhysicsConfig, PhysicsKind
from anelastic.physics.viscoelastic import Viscoelastic

GRID = Grid((60, 50), (10.0, 10.0))
TIME = TimeAxis(1e-3, 300)
CHUNK = 125  # chunks of 125, 125 and 50 steps: odd and even lengths
F0 = 8.0
SOURCE = Source(
    (150.0, 250.0), ricker(F0), SourceKind.MOMENT, moment=np.array([[1.0, 0.7], [0.7, -0.3]])
)
RECEIVERS = Receivers(np.array([[450.0, 200.0], [450.0, 300.0], [300.0, 100.0]]), (Component.P,))
SURFACE_RECEIVERS = Receivers(
    np.array([[450.0, 0.0], [250.0, 0.0], [400.0, 150.0]]), (Component.VX, Component.VZ)
)
CENTER = (300.0, 240.0)
SURFACE_CENTER = (320.0, 20.0)  # the bump covers the surface rows
TOLERANCE = 1e-4


@dataclass
class Problem:
    model: object
    config: PhysicsConfig
    fit: object
    ops: object
    kernels: dict

    @property
    def receivers(self) -> Receivers:
        return _receivers(self.config)

    @property
    def center(self) -> tuple[float, float]:
        return SURFACE_CENTER if self.config.free_surface else CENTER


def _receivers(config) -> Receivers:
    return SURFACE_RECEIVERS if config.free_surface else RECEIVERS


def _model(q: float):
    base = homogeneous(GRID, 2000.0, 2000.0, 1155.0, q, 2.0 * q / 3.0, f_ref=F0)
    relative = {"vp": -0.1, "vs": -0.08, "rho": 0.05}
    if np.isfinite(q):  # Q varies: perturbed models keep the same coefficient layout
        relative.update(qp=0.2, qs=-0.15)
    return gaussian_anomaly(base, CENTER, 60.0, relative)


def _simulation(model, config, fit) -> Simulation:
    return Simulation(model, [SOURCE], _receivers(config), TIME, config, sls_fit=fit, threads=1)


def _misfit(model, config, fit) -> float:
    """chi = dt/2 sum_c sum_n sum_r d_c,r(t_n)^2 (so dchi/dd = dt d), d_c each component's
    record."""
    data = _simulation(model, config, fit).run().data
    return 0.5 * TIME.dt * sum(float(np.sum(d**2)) for d in data.values())


def _sources(ops, residuals: dict):
    """The adjoint sources of the residuals [nt, nrec] per component (dchi/d sample)."""
    return adjoint_sources(ops.scheme, residuals)


def _kernel_pass(model, config, fit) -> Problem:
    """Checkpoints at chunk starts, then chunk by chunk from the last: replay, adjoint."""
    sim = _simulation(model, config, fit)
    states = {}
    for chunk in chunks(TIME.nt, CHUNK):
        sim.advance(chunk.start)
        states[chunk.start] = sim.state().fields
    data = sim.run().data
    ops = KernelOperators(sim, CHUNK)
    ops.reset(_receivers(config).positions)
    sources = _sources(ops, {c: TIME.dt * d for c, d in data.items()})
    ops.seed(sources)
    for chunk in reversed(chunks(TIME.nt, CHUNK)):
        ops.replay(chunk.start, chunk.stop, states[chunk.start])
        ops.adjoint_chunk(chunk.start, chunk.stop, sources)
    assert ops.replay_steps == ops.adjoint_steps == TIME.nt
    kernels = ops.scheme.parameter_gradients(ops.gradients())
    return Problem(model, config, fit, ops, kernels)


CASES = {
    "attenuating-cpml": (30.0, BoundaryKind.CPML, 4, False),
    "elastic-sponge": (np.inf, BoundaryKind.SPONGE, 8, False),
    "attenuating-cpml-free-surface": (30.0, BoundaryKind.CPML, 8, True),
}


@pytest.fixture(scope="module", params=list(CASES))
def problem(request) -> Problem:
    q, boundary, order, free_surface = CASES[request.param]
    config = PhysicsConfig(
        PhysicsKind.VISCOELASTIC,
        space_order=order,
        boundary=boundary,
        pml_width=10,
        dtype="float64",
        free_surface=free_surface,
    )
    fit = fit_sls(np.array([q / 4, 4 * q]), default_band(F0), 3) if np.isfinite(q) else None
    return _kernel_pass(_model(q), config, fit)


def _perturbation(center) -> np.ndarray:
    """cos^2 bump of radius 150 m around ``center`` [*GRID.shape] (0 in the absorbing
    layers)."""
    x, z = np.meshgrid(GRID.coordinates(0), GRID.coordinates(1), indexing="ij")
    r = np.hypot(x - center[0], z - center[1])
    return np.where(r < 150.0, np.cos(np.pi * r / 300.0) ** 2, 0.0)


@pytest.mark.parametrize("name", ["vp", "vs", "rho", "qp", "qs"])
def test_kernel_predicts_central_finite_difference(problem, name):
    """sum_cells K_m dm = (chi(m + dm) - chi(m - dm)) / 2 + O(dm^3), dm = 1e-4 m bump."""
    if name in ("qp", "qs") and problem.fit is None:
        assert not np.any(problem.kernels[name])  # Q = inf: no memory variables, no Q kernel
        return
    value = getattr(problem.model, name)
    dm = 1e-4 * value * _perturbation(problem.center)
    pads = problem.ops.sim.pads
    window = tuple(slice(lo, lo + n) for (lo, _), n in zip(pads, value.shape, strict=True))
    predicted = float(np.sum(problem.kernels[name][window] * dm))
    plus = _misfit(problem.model.replace(**{name: value + dm}), problem.config, problem.fit)
    minus = _misfit(problem.model.replace(**{name: value - dm}), problem.config, problem.fit)
    central = (plus - minus) / 2
    assert abs(predicted - central) <= TOLERANCE * abs(central), (name, predicted, central)


def test_adjoint_step_is_the_transpose_of_the_forward_step(problem):
    """<L x, y> = <x, L^T y> for random states (every field: stresses, velocities, memory,
    C-PML), L one forward step without sources."""
    sim = _simulation(problem.model, problem.config, problem.fit)  # claims the operators
    lhs, rhs = transpose_check(sim, problem.ops, step=40)
    # Rounding only (measured 1e-16 relative); Devito's 9-digit stencil weights are matched.
    assert abs(lhs - rhs) <= 1e-13 * abs(lhs), (lhs, rhs)


def _physics(config, qp=30.0, qs=20.0, fit=None) -> Viscoelastic:
    model = _model(30.0).replace(qp=qp, qs=qs)
    return Viscoelastic(model, config, 1e-3, default_band(F0), sls_fit=fit)


def test_fixed_sls_fit_is_used():
    fit = fit_sls(np.array([5.0, 500.0]), default_band(F0), 3)
    config = PhysicsConfig(PhysicsKind.VISCOELASTIC, space_order=4)
    physics = _physics(config, fit=fit)
    assert physics.moduli.fit is fit
    np.testing.assert_array_equal(physics.moduli.omega, fit.omega)


def test_scheme_coefficients_rebuild_the_forward_coefficients():
    """The chain rule's node quantities reproduce every coefficient array of the scheme
    (general memory layout: Q varies in space)."""
    config = PhysicsConfig(PhysicsKind.VISCOELASTIC, space_order=4)
    model = _model(30.0)
    physics = Viscoelastic(model, config, 1e-3, default_band(F0))
    assert not physics.uniform["kappa"] and not physics.uniform["mu"]
    specs = {c.name: c.values for c in physics.coefficient_specs()}
    c = physics.scheme_coefficients(model.rho, model.vp, model.vs, model.qp, model.qs)
    expected = {
        "buoy_dt": c["buoy_dt"],
        "kappa_dt": c["kappa_dt"],
        "mu2_dt": 2 * c["mu_dt"],
        "mu_dt_xz": physics.harmonic_mean(c["mu_dt"], "x", "z"),
    }
    for l in range(physics.n_memory):
        expected[f"mkappa{l}"] = c["rate_kappa"][l]
        expected[f"mmu{l}"] = 2 * c["rate_mu"][l]
        expected[f"mmu{l}_xz"] = (
            physics.beta[l]
            * physics.harmonic_mean(c["mu_u_dt"], "x", "z")
            * physics.corner_mean(c["y_mu"][l], "x", "z")
        )
    for name, value in expected.items():
        np.testing.assert_allclose(specs[name], value, rtol=1e-12, err_msg=name)
