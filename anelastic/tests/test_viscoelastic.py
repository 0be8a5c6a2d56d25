"""Viscoelastic P-SV physics: rheology facts, analytic 2-D point-force cases, Q = inf limit.

The two analytic cases compile the two operators (elastic, 3-SLS) that the Q = inf test reuses.
Runs use one thread: OpenMP barriers on an oversubscribed machine cost more than they save.
"""

import dataclasses

import numpy as np
import pytest

from anelastic.acquisition import Component, Receivers, Source, SourceKind, ricker
from anelastic.checks import solutions
from anelastic.checks.analytic import relative_l2
from anelastic.checks.point_force import (
    ELASTIC_2D,
    OFFSETS,
    elastic_point_force_error,
    point_force_problem,
)
from anelastic.forward import simulation
from anelastic.model import Grid, homogeneous
from anelastic.physics import BoundaryKind, FieldRole, PhysicsConfig, PhysicsKind
from anelastic.physics.stencils import midpoint_weights, staggered_stencil
from anelastic.physics.viscoelastic import Viscoelastic
from anelastic.physics.viscoelastic.moduli import bulk_quality

BAND = (1.0, 100.0)


def _physics(qp, qs, vp=2000.0, vs=1000.0, ndim=2, n_sls=3) -> Viscoelastic:
    grid = Grid((5,) * ndim, (10.0,) * ndim)
    model = homogeneous(grid, vp, 2000.0, vs, qp, qs, f_ref=10.0)
    config = PhysicsConfig(PhysicsKind.VISCOELASTIC, space_order=4, n_sls=n_sls)
    return Viscoelastic(model, config, 1e-3, BAND)


@pytest.mark.parametrize("ndim", [2, 3])
def test_phase_velocities_at_f_ref_equal_model_velocities(ndim):
    physics = _physics(30.0, 20.0, ndim=ndim)
    lam, mu = physics.lame_moduli_at((10.0,) * ndim)
    w = np.array([2 * np.pi * 10.0])
    p_modulus = lam(w) + 2 * mu(w)
    for modulus, v in ((p_modulus, 2000.0), (mu(w), 1000.0)):
        k = solutions.wavenumber(w, 2000.0, modulus)
        assert abs(w[0] / k.real[0] / v - 1) < 1e-9


@pytest.mark.parametrize("ndim", [2, 3])
def test_quality_factors_follow_qp_qs(ndim):
    """Im/Re of the P and S moduli are 1/Qp and 1/Qs over the band (within the SLS fit)."""
    physics = _physics(30.0, 20.0, ndim=ndim)
    lam, mu = physics.lame_moduli_at((10.0,) * ndim)
    w = 2 * np.pi * np.geomspace(2.0, 50.0, 7)
    p_modulus = lam(w) + 2 * mu(w)
    q_p = p_modulus.real / p_modulus.imag
    q_s = mu(w).real / mu(w).imag
    assert np.max(np.abs(q_s / 20.0 - 1)) < 0.05
    assert np.max(np.abs(q_p / 30.0 - 1)) < 0.05


def test_bulk_quality_relation_and_errors():
    vp, vs = np.array([2000.0]), np.array([1000.0])
    qk = bulk_quality(np.array([30.0]), np.array([20.0]), vp, vs, 3)
    frac = 4 / 3 * 0.25
    assert np.isclose(1 / 30.0, (1 - frac) / qk[0] + frac / 20.0)
    assert np.isinf(bulk_quality(np.array([np.inf]), np.array([np.inf]), vp, vs, 2)[0])
    with pytest.raises(ValueError, match="negative bulk"):
        bulk_quality(np.array([np.inf]), np.array([20.0]), vp, vs, 2)


def test_q_infinity_has_no_memory_and_elastic_moduli():
    physics = _physics(np.inf, np.inf)
    assert physics.n_memory == 0
    roles = {s.role for s in physics.field_specs()}
    assert FieldRole.MEMORY not in roles
    assert np.all(physics.moduli.kappa_u == 2000.0 * (2000.0**2 - 1000.0**2))
    assert np.all(physics.moduli.mu_u == 2000.0 * 1000.0**2)


def test_memory_variable_layout_2d_and_3d():
    memory2 = [s for s in _physics(30.0, 20.0).field_specs() if s.role is FieldRole.MEMORY]
    memory3 = [s for s in _physics(30.0, 20.0, ndim=3).field_specs() if s.role is FieldRole.MEMORY]
    assert len(memory2) == 3 * 3 and len(memory3) == 6 * 3
    assert {s.staggered for s in memory2} == {(), ("x", "z")}


def test_stencil_weights():
    assert np.allclose(staggered_stencil(2), [9 / 8, -1 / 24])
    assert np.allclose(midpoint_weights(2), [9 / 16, -1 / 16])


def test_moment_and_pressure_injections():
    physics = _physics(np.inf, np.inf)
    moment = np.array([[2.0, 0.5], [0.5, -1.0]])
    src = Source((20.0, 20.0), ricker(10.0), SourceKind.MOMENT, moment=moment)
    got = {(i.field, i.stage): i.scale for i in physics.injections(src, 100.0)}
    assert got == pytest.approx(
        {("sxx", "stress"): -2e-5, ("sxz", "stress"): -0.5e-5, ("szz", "stress"): 1e-5}
    )
    explosion = physics.injections(Source((20.0, 20.0), ricker(10.0)), 100.0)
    assert {i.field for i in explosion} == {"sxx", "szz"}
    assert all(i.scale == pytest.approx(-1e-5) and i.time_shift == 0.5 for i in explosion)


def test_elastic_2d_point_force_matches_analytic():
    assert elastic_point_force_error(np.inf, np.inf, threads=1) <= 0.03


def test_viscoelastic_2d_point_force_matches_analytic():
    error = elastic_point_force_error(40.0, 25.0, threads=1)
    assert error <= 0.03
    # The attenuation is visible: the elastic solution misses this record by far more.
    problem = point_force_problem(40.0, 25.0)
    source, time = problem.source, problem.time
    sim = problem.simulation(threads=1, instance="verify")
    lam_q, mu_q = sim.physics.lame_moduli_at(source.position)
    rho, vp, vs = ELASTIC_2D["rho"], ELASTIC_2D["vp"], ELASTIC_2D["vs"]
    lam_e = lambda w: np.full(w.shape, rho * (vp**2 - 2 * vs**2), complex)  # noqa: E731
    mu_e = lambda w: np.full(w.shape, rho * vs**2, complex)  # noqa: E731
    args = (time.times, source.wavelet(time.times), OFFSETS[0], rho)
    vx_q, _ = solutions.elastic_velocity_trace_2d(*args, lam_q, mu_q, source.direction)
    vx_e, _ = solutions.elastic_velocity_trace_2d(*args, lam_e, mu_e, source.direction)
    assert relative_l2(vx_e, vx_q) > 0.1


class _ZeroWeightViscoelastic(Viscoelastic):
    """The 3-SLS scheme with every weight 0: memory variables present, attenuation none."""

    def __init__(self, padded_model, config, dt, band, sls_fit=None) -> None:
        super().__init__(padded_model, config, dt, band, sls_fit)
        shape = (config.n_sls, *padded_model.grid.shape)
        omega = 2 * np.pi * np.geomspace(band[0], band[1], config.n_sls)
        self.moduli = dataclasses.replace(
            self.moduli, y_kappa=np.zeros(shape), y_mu=np.zeros(shape), omega=omega
        )
        w_dt = omega * self.dt
        self.alpha = (1 - w_dt / 2) / (1 + w_dt / 2)
        self.beta = w_dt / (1 + w_dt / 2)
        self.bulk_memory = self.shear_memory = True

    def operator_key(self) -> tuple:
        return ("Viscoelastic", *super().operator_key()[1:])  # same generated code


def test_q_infinity_is_exactly_the_elastic_scheme(monkeypatch):
    """With all SLS weights 0 the attenuating code path gives the elastic result exactly
    (IEEE equality of every trace and field) and its memory variables stay exactly 0."""
    problem = point_force_problem(np.inf, np.inf)
    elastic = problem.simulation(threads=1, instance="verify")
    assert elastic.physics.n_memory == 0
    ref, ref_state = elastic.run(), elastic.state()
    monkeypatch.setattr(simulation, "physics_class", lambda kind: _ZeroWeightViscoelastic)
    forced = problem.simulation(threads=1, instance="verify")
    assert forced.physics.n_memory == 3
    seis, state = forced.run(), forced.state()
    for comp in (Component.VX, Component.VZ):
        assert np.array_equal(seis.data[comp], ref.data[comp])
    for name, values in state.fields.items():
        if name in ref_state.fields:
            assert np.array_equal(values, ref_state.fields[name]), name
        else:
            assert not values.any(), name


def _sponge_problem():
    """(model, sources, receivers, time, config): explosion, 3-SLS, sponge boundary."""
    vp, f0 = 2000.0, 10.0
    model = homogeneous(Grid((121, 121), (10.0, 10.0)), vp, 2000.0, 1300.0, 60.0, 40.0, f_ref=f0)
    source = Source((300.0, 600.0), ricker(f0))  # PRESSURE = explosion
    positions = np.array([[600.0, 600.0], [900.0, 600.0]])
    config = PhysicsConfig(
        PhysicsKind.VISCOELASTIC, space_order=4, pml_width=30, boundary=BoundaryKind.SPONGE
    )
    receivers = Receivers(positions, (Component.P, Component.VX))
    return model, [source], receivers, simulation.TimeAxis(2e-3, 500), config


def test_explosion_with_sponge_boundary():
    """Explosive (isotropic stress) source, sponge boundary: P moveout between two receivers
    gives vp (within 3 %), and the sponge absorbs (velocity at the end < 5 % of step 150)."""
    vp, dt = 2000.0, 2e-3
    sim = simulation.Simulation(*_sponge_problem(), threads=1, instance="sponge")
    sim.advance(150)
    early = np.abs(sim.state().fields["vx"]).max()
    p = sim.run().data[Component.P]
    corr = np.correlate(p[:, 1], p[:, 0], "full")
    k = int(np.argmax(corr))
    y0, y1, y2 = corr[k - 1 : k + 2]
    lag = (k - (p.shape[0] - 1) + 0.5 * (y0 - y2) / (y0 - 2 * y1 + y2)) * dt
    assert abs(300.0 / lag / vp - 1) < 0.03
    assert np.abs(sim.state().fields["vx"]).max() < 0.05 * early


class _GeneralLayoutViscoelastic(Viscoelastic):
    """Per-mechanism coefficient arrays (the layout of spatially varying Q) on any model."""

    def __init__(self, padded_model, config, dt, band, sls_fit=None) -> None:
        super().__init__(padded_model, config, dt, band, sls_fit)
        self.uniform = {"kappa": False, "mu": False}


def test_general_coefficient_layout_matches_uniform(monkeypatch):
    """The per-point memory coefficients (used when Q varies in space) give the same traces
    as the folded constants on a uniform-Q model (float32 rounding only)."""
    uniform = simulation.Simulation(*_sponge_problem(), threads=1, instance="sponge")
    ref = uniform.run()
    monkeypatch.setattr(simulation, "physics_class", lambda kind: _GeneralLayoutViscoelastic)
    general = simulation.Simulation(*_sponge_problem(), threads=1, instance="general")
    assert "mmu0_xz" in {c.name for c in general.physics.coefficient_specs()}
    seis = general.run()
    for comp in (Component.P, Component.VX):
        scale = np.abs(ref.data[comp]).max()
        assert np.abs(seis.data[comp] - ref.data[comp]).max() < 1e-4 * scale
