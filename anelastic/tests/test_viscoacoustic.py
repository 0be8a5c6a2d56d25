"""Viscoacoustic rheology facts that need no time stepping."""

import numpy as np
import pytest

from anelastic.model import Grid, homogeneous
from anelastic.physics import FieldRole, PhysicsConfig
from anelastic.physics.viscoacoustic import Viscoacoustic

GRID = Grid((12, 10), (5.0, 5.0))
DT = 1e-3


def physics(q: float | np.ndarray) -> Viscoacoustic:
    model = homogeneous(GRID, 2000.0, 1500.0, f_ref=10.0).replace(qp=q)
    return Viscoacoustic(model, PhysicsConfig(space_order=4, pml_width=0), DT, (1.0, 100.0))


def test_q_infinity_is_exactly_the_acoustic_scheme():
    ph = physics(np.inf)
    assert ph.memory_layout == "none" and ph.n_memory == 0
    assert not [s for s in ph.field_specs() if s.role is FieldRole.MEMORY]
    coeffs = {c.name: c.values for c in ph.coefficient_specs()}
    assert set(coeffs) == {"buoy_dt", "mod_dt"}
    assert np.array_equal(coeffs["mod_dt"], DT * 1500.0 * 2000.0**2 * np.ones(GRID.shape))
    assert np.array_equal(coeffs["buoy_dt"], DT / 1500.0 * np.ones(GRID.shape))


@pytest.mark.parametrize("layout", ["uniform", "separable", "general"])
def test_folded_coefficients_reproduce_the_crank_nicolson_update(layout):
    """A and the memory coefficients of each layout equal dt M_U (1 - sum Y b/2) and
    dt M_U Y_l (1 + a_l)/2 (B_l), the Crank-Nicolson scheme of the module docstring."""
    q = np.full(GRID.shape, 30.0)
    if layout == "separable":
        q[0, 0] = np.inf
    if layout == "general":
        q[:, 5:] = 80.0
    ph = physics(q)
    assert ph.memory_layout == layout
    coeffs = {c.name: c.values for c in ph.coefficient_specs()}
    y, m_u = ph.weights, ph.m_unrelaxed
    a_ref = DT * m_u * (1 - np.tensordot(ph.beta, y, axes=1) / 2)
    b_ref = [DT * m_u * y[l] * (1 + ph.alpha[l]) / 2 for l in range(ph.n_memory)]
    assert np.allclose(coeffs["mod_dt"], a_ref, rtol=1e-13)
    for l in range(ph.n_memory):
        if layout == "uniform":
            b = coeffs["mod_dt"] * coeffs[f"mcoef{l}"]
        elif layout == "separable":
            b = coeffs["mem_dt"] * coeffs[f"mcoef{l}"]
        else:
            b = coeffs[f"mem_dt{l}"]
        assert np.allclose(b, b_ref[l], rtol=1e-12, atol=0)
