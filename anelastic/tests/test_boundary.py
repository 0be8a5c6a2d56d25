"""Absorbing boundaries: energy left in the model after the wave has left it."""

import numpy as np
import pytest

from anelastic.acquisition import Component, Receivers, Source, ricker
from anelastic.forward.simulation import Simulation, TimeAxis
from anelastic.model import Grid, homogeneous
from anelastic.physics import BoundaryKind, PhysicsConfig


def residual_ratio(boundary: BoundaryKind) -> float:
    """max|p| at 0.5 s (wave gone) over max|p| at 0.15 s, 600 m box, 10-point layer, Q = inf."""
    model = homogeneous(Grid((61, 61), (10.0, 10.0)), 2000.0, 2000.0, f_ref=15.0)
    sim = Simulation(
        model,
        [Source((300.0, 300.0), ricker(15.0))],
        Receivers(np.array([[400.0, 300.0]]), (Component.P,)),
        TimeAxis(1e-3, 500),
        PhysicsConfig(space_order=4, pml_width=10, boundary=boundary),
        instance=f"boundary-{boundary.value}",
    )
    sim.advance(150)
    early = np.abs(sim.wavefield("p")).max()
    sim.advance(500)
    return float(np.abs(sim.wavefield("p")).max() / early)


@pytest.mark.parametrize("boundary, bound", [(BoundaryKind.CPML, 3e-3), (BoundaryKind.SPONGE, 0.1)])
def test_absorbing_layer_removes_outgoing_wave(boundary, bound):
    assert residual_ratio(boundary) < bound
