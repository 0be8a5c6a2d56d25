"""Shared small problems. Simulations with the same shapes reuse one compiled operator."""

from __future__ import annotations

import numpy as np
import pytest

from anelastic.acquisition import Component, Receivers, Source, ricker
from anelastic.forward.simulation import TimeAxis
from anelastic.model import Grid, homogeneous
from anelastic.physics import PhysicsConfig

SMALL_GRID = Grid((61, 61), (10.0, 10.0))
SMALL_CONFIG = PhysicsConfig(space_order=4, pml_width=10)
SMALL_TIME = TimeAxis(1e-3, 200)


def small_problem(q: float = 40.0):
    """(model, sources, receivers, time, config) of a 61 x 61 viscoacoustic problem."""
    model = homogeneous(SMALL_GRID, 2000.0, 2000.0, qp=q, f_ref=15.0)
    source = Source((300.0, 300.0), ricker(15.0))
    receivers = Receivers(
        np.array([[400.0, 300.0], [300.0, 450.0], [123.0, 77.0]]), (Component.P, Component.VX)
    )
    return model, [source], receivers, SMALL_TIME, SMALL_CONFIG


@pytest.fixture
def small():
    return small_problem()
