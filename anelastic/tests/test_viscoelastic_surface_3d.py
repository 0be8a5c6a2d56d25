"""Viscoelastic free surface (Rayleigh wave), complete-state checkpoints, and a 3-D run.

One free-surface operator serves the Rayleigh test and the state tests (same shapes). Runs use
one thread: OpenMP barriers on an oversubscribed machine cost more than they save.
"""

import numpy as np
import pytest

from anelastic.acquisition import Component, Receivers, Source, SourceKind, ricker
from anelastic.forward.simulation import Simulation, TimeAxis
from anelastic.forward.state import SolverState
from anelastic.model import Grid, homogeneous
from anelastic.physics import FieldRole, PhysicsConfig, PhysicsKind

VP, RHO = 2000.0, 2000.0
VS = VP / np.sqrt(3.0)  # Poisson solid: Rayleigh speed 0.9194 vs
RAYLEIGH_RATIO = 0.919402
RAYLEIGH_H_OVER_V = 0.6812  # surface |u_x / u_z| of the Rayleigh wave, Poisson solid
SURFACE_X = np.array([800.0, 1300.0, 1800.0])
DT, NT = 2e-3, 900


def surface_problem():
    """(model, sources, receivers, time, config): vertical force 20 m below a free surface."""
    grid = Grid((241, 81), (10.0, 10.0))
    model = homogeneous(grid, VP, RHO, VS, qp=100.0, qs=60.0, f_ref=8.0)
    source = Source((300.0, 20.0), ricker(8.0), SourceKind.FORCE, direction=(0.0, 1.0))
    positions = np.stack([SURFACE_X, np.zeros_like(SURFACE_X)], axis=1)
    receivers = Receivers(positions, (Component.VX, Component.VZ, Component.P))
    config = PhysicsConfig(PhysicsKind.VISCOELASTIC, space_order=4, pml_width=15, free_surface=True)
    return model, [source], receivers, TimeAxis(DT, NT), config


def _simulation() -> Simulation:
    return Simulation(*surface_problem(), threads=1, instance="surface")


@pytest.fixture(scope="module")
def reference():
    sim = _simulation()
    return sim.run(), sim.state()


def _lag(early: np.ndarray, late: np.ndarray, dt: float) -> float:
    """Delay (s) of ``late`` behind ``early`` from the cross-correlation peak (parabolic fit)."""
    corr = np.correlate(late, early, "full")
    k = int(np.argmax(corr))
    y0, y1, y2 = corr[k - 1 : k + 2]
    return (k - (early.size - 1) + 0.5 * (y0 - y2) / (y0 - 2 * y1 + y2)) * dt


def test_free_surface_gives_rayleigh_wave(reference):
    seis, state = reference
    vx = seis.data[Component.VX]
    speed = (SURFACE_X[2] - SURFACE_X[0]) / _lag(vx[:, 0], vx[:, 2], DT)
    assert abs(speed / (RAYLEIGH_RATIO * VS) - 1) < 0.03
    # The largest surface motion is the Rayleigh wave, not the P wave.
    distance = SURFACE_X - 300.0
    peak = np.argmax(np.abs(vx), axis=0) * DT
    rayleigh = 1.5 / 8.0 + distance / (RAYLEIGH_RATIO * VS)
    assert np.all(np.abs(peak - rayleigh) < 0.06)
    assert np.all(peak - (1.5 / 8.0 + distance / VP) > 0.15)
    assert not state.fields["szz"][:, 0].any()  # sigma_zz = 0 on the surface row
    # Ellipticity: RMS(vx) / RMS(vz) in the Rayleigh window. 13 points per Rayleigh wavelength
    # at f0 give 0.640 (the surface rows use 2nd-order vertical stencils; 0.672 at h = 5 m).
    vz, t = seis.data[Component.VZ], seis.times
    for k in range(SURFACE_X.size):
        window = np.abs(t - rayleigh[k]) < 0.15
        h_over_v = np.sqrt(np.sum(vx[window, k] ** 2) / np.sum(vz[window, k] ** 2))
        assert abs(h_over_v / RAYLEIGH_H_OVER_V - 1) < 0.08


def test_state_holds_memory_and_pml_fields(reference):
    _, state = reference
    sim = _simulation()
    roles = {s.name: s.role for s in sim.physics.field_specs()}
    assert set(state.fields) == set(roles)
    memory = [n for n, r in roles.items() if r is FieldRole.MEMORY]
    boundary = [n for n, r in roles.items() if r is FieldRole.BOUNDARY]
    assert len(memory) == 9 and len(boundary) == 8
    sim.advance(300)
    mid = sim.state()
    assert all(mid.fields[n].any() for n in memory)
    assert any(mid.fields[n].any() for n in boundary)


def test_split_range_stepping_is_bitwise_equal(reference):
    seis_ref, state_ref = reference
    sim = _simulation()
    for stop in (1, 37, 38, 450, NT):
        sim.advance(stop)
    assert sim.state().bitwise_equal(state_ref)
    for comp in (Component.VX, Component.P):
        assert np.array_equal(sim.seismograms().data[comp], seis_ref.data[comp])


def test_save_restore_roundtrip_is_bitwise(reference, tmp_path):
    seis_ref, state_ref = reference
    sim = _simulation()
    sim.advance(333)
    sim.state().save(tmp_path / "s333.npz")
    sim.advance(600)
    fresh = _simulation()
    fresh.restore(SolverState.load(tmp_path / "s333.npz"))
    fresh.advance(NT)
    assert fresh.state().bitwise_equal(state_ref)
    vx = fresh.seismograms().data[Component.VX]
    assert np.array_equal(vx[333:], seis_ref.data[Component.VX][333:])


def test_3d_viscoelastic_free_surface_p_moveout_and_decay():
    """3-D, moment-tensor source 200 m below a free surface: the direct-P moveout between two
    receivers gives vp (3 %); sigma_zz stays 0 on the surface; the particle velocity left after
    the waves reach the C-PML is < 1 % of that at step 100 (stable and absorbed)."""
    grid = Grid((31, 31, 31), (10.0, 10.0, 10.0))
    model = homogeneous(grid, VP, RHO, 1300.0, qp=80.0, qs=50.0, f_ref=10.0)
    moment = np.array([[1.0, 0.3, 0.0], [0.3, 1.0, 0.2], [0.0, 0.2, 1.0]])
    source = Source((100.0, 150.0, 200.0), ricker(10.0), SourceKind.MOMENT, moment=moment)
    positions = np.array([[160.0, 150.0, 200.0], [260.0, 150.0, 200.0]])
    config = PhysicsConfig(
        PhysicsKind.VISCOELASTIC, space_order=4, pml_width=6, n_sls=1, free_surface=True
    )
    sim = Simulation(
        model, [source], Receivers(positions, (Component.P,)), TimeAxis(DT, 300), config, threads=1
    )
    assert sum(s.role is FieldRole.MEMORY for s in sim.physics.field_specs()) == 6
    sim.advance(100)
    early = max(np.abs(sim.state().fields[f"v{a}"]).max() for a in "xyz")
    p = sim.run().data[Component.P]
    direct = np.arange(300) * DT < 0.3  # the surface reflection arrives after 0.33 s
    speed = 100.0 / _lag(p[:, 0] * direct, p[:, 1] * direct, DT)
    assert abs(speed / VP - 1) < 0.03
    final = sim.state().fields
    assert all(np.isfinite(a).all() for a in final.values())
    assert not final["szz"][:, :, 0].any()
    assert max(np.abs(final[f"v{a}"]).max() for a in "xyz") < 1e-2 * early
