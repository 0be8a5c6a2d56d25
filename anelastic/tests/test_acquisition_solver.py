"""Sources and receivers on the grid: interpolation and force sources."""

import numpy as np
from conftest import SMALL_CONFIG, SMALL_TIME, small_problem

from anelastic.acquisition import Component, Receivers, Source, SourceKind, ricker
from anelastic.forward.simulation import Simulation


def bilinear(field: np.ndarray, origin, spacing, point) -> float:
    """Bilinear interpolation of field [nx, nz] at ``point`` (m)."""
    u = (np.asarray(point) - np.asarray(origin)) / np.asarray(spacing)
    i, j = np.floor(u).astype(int)
    fx, fz = u - np.floor(u)
    block = field[i : i + 2, j : j + 2].astype(np.float64)
    weights = np.outer([1 - fx, fx], [1 - fz, fz])
    return float((block * weights).sum())


def test_off_grid_receivers_interpolate_the_wavefield():
    """p at t_k is the bilinear interpolation of the state's p; vx averages the half steps
    at its staggered position (+h/2 in x)."""
    sim = Simulation(*small_problem())
    grid = sim.physics.model.grid
    k = 120
    sim.advance(k)
    before = sim.state().fields
    sim.advance(k + 1)
    after = sim.state().fields
    seis = sim.seismograms()
    for r, point in enumerate(sim.receivers.positions):
        p_ref = bilinear(before["p"], grid.origin, grid.spacing, point)
        assert np.isclose(seis.data[Component.P][k, r], p_ref, rtol=1e-5, atol=1e-12)
        vx_mean = 0.5 * (before["vx"].astype(np.float64) + after["vx"])
        shifted = (grid.origin[0] + 0.5 * grid.spacing[0], grid.origin[1])
        vx_ref = bilinear(vx_mean, shifted, grid.spacing, point)
        assert np.isclose(seis.data[Component.VX][k, r], vx_ref, rtol=1e-4, atol=1e-14)


def test_horizontal_force_gives_antisymmetric_pressure():
    """A force along +x radiates p odd in x about the source: p(xs + d) = -p(xs - d)."""
    model, _, _, _, _ = small_problem()
    force = Source((300.0, 300.0), ricker(15.0), SourceKind.FORCE, direction=(1.0, 0.0))
    receivers = Receivers(np.array([[400.0, 300.0], [200.0, 300.0], [300.0, 400.0]]))
    sim = Simulation(model, [force], receivers, SMALL_TIME, SMALL_CONFIG, instance="force")
    p = sim.run().data[Component.P]
    scale = np.abs(p[:, 0]).max()
    assert scale > 0
    assert np.max(np.abs(p[:, 0] + p[:, 1])) < 0.02 * scale
    # Broadside of the force (same x) the pressure vanishes.
    assert np.abs(p[:, 2]).max() < 0.02 * scale
