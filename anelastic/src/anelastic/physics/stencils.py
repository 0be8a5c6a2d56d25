"""Finite-difference weights and explicit grid accesses used by the staggered schemes."""

from __future__ import annotations

import numpy as np

# f(0) from f(1/2), f(3/2), f(5/2), f(7/2) (cubic Lagrange extrapolation, 4th order).
ONE_SIDED_NODE_WEIGHTS = (35 / 16, -35 / 16, 21 / 16, -5 / 16)


def staggered_stencil(q: int) -> np.ndarray:
    """Weights c [q] of ``df/dz ~ sum_m c_m (f(z + (m - 1/2) h) - f(z - (m - 1/2) h)) / h``."""
    half = np.arange(1, q + 1) - 0.5
    powers = 2 * np.arange(q) + 1
    system = 2.0 * half[None, :] ** powers[:, None]
    rhs = np.zeros(q)
    rhs[0] = 1.0
    return np.linalg.solve(system, rhs)


def derivative_weights(offsets: np.ndarray) -> np.ndarray:
    """Weights w [n] with ``f'(0) ~ sum_i w_i f(offsets_i h) / h``, exact to degree n - 1."""
    offsets = np.asarray(offsets, dtype=float)
    system = offsets[None, :] ** np.arange(offsets.size)[:, None]
    rhs = np.zeros(offsets.size)
    rhs[1] = 1.0
    return np.linalg.solve(system, rhs)


def midpoint_weights(q: int) -> np.ndarray:
    """Weights w [q] of ``f(0) ~ sum_m w_m (f((m - 1/2) h) + f(-(m - 1/2) h))`` (order 2q)."""
    half = np.arange(1, q + 1) - 0.5
    system = 2.0 * half[None, :] ** (2 * np.arange(q))[:, None]
    rhs = np.zeros(q)
    rhs[0] = 1.0
    return np.linalg.solve(system, rhs)


def shifted(field, axis: int, offset: int, time_offset: int):
    """``field`` at storage index ``+offset`` along space axis ``axis`` and time slot
    ``t + time_offset`` (an explicit access Devito does not re-interpolate)."""
    idx = [field.grid.stepping_dim + time_offset, *field.grid.dimensions]
    idx[axis + 1] = idx[axis + 1] + offset
    return field[tuple(idx)]
