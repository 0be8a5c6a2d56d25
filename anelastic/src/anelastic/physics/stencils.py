"""Finite-difference weights and explicit grid accesses used by the staggered schemes."""

from __future__ import annotations

import numpy as np
import sympy
from mpmath.libmp import prec_to_dps, to_str

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


def derivative_at_half(value, weights: np.ndarray, h):
    """Staggered derivative at the half node ``i + 1/2`` (stored at index i) of a node quantity:
    ``G f[i] = sum_m c_m (f[i + m] - f[i + 1 - m]) / h``.

    ``value(offset)`` returns the quantity at storage offset ``offset`` along the axis;
    ``weights`` c [q] from :func:`staggered_stencil`. This is exactly what Devito generates for
    ``f.dx`` at a staggered point.
    """
    terms = [c * (value(m) - value(1 - m)) for m, c in enumerate(weights, start=1)]
    return sum(terms) / h


def derivative_at_node(value, weights: np.ndarray, h):
    """Staggered derivative at node i of a half-node quantity (index i at ``i + 1/2``):
    ``D g[i] = sum_m c_m (g[i + m - 1] - g[i - m]) / h``. ``D^T = -G`` (sum by parts), which
    is what makes the discrete adjoint exact."""
    terms = [c * (value(m - 1) - value(-m)) for m, c in enumerate(weights, start=1)]
    return sum(terms) / h


def at(f, axis: int, offset: int, time_offset: int = 0):
    """``f`` at storage offset ``offset`` along space axis ``axis``. A TimeFunction is taken at
    its own time index (``t`` for a modulo buffer, ``time`` for a saved one) + ``time_offset``;
    a 1-D profile Function only has the axis it lives on."""
    idx = list(f.dimensions)  # plain dimensions: a staggered field's indices carry +h/2
    first = 1 if f.is_TimeFunction else 0
    if f.is_TimeFunction:
        idx[0] = f.indices[0] + time_offset
    position = -1 if len(idx) - first == 1 else first + axis  # a profile has one axis
    idx[position] = idx[position] + offset
    return f[tuple(idx)]


# Devito rounds finite-difference weights to this many significant digits in generated code.
DEVITO_WEIGHT_DIGITS = 9


def rounded_like_devito(weights: np.ndarray) -> np.ndarray:
    """``weights`` rounded to Devito's 9 significant digits: Devito prints such a float with
    15 digits, which reads back as the very same double, so an adjoint built from these numbers
    transposes the generated forward code exactly."""
    return np.array([float(f"{w:.{DEVITO_WEIGHT_DIGITS}g}") for w in np.asarray(weights)])


def devito_staggered_weights(q: int) -> np.ndarray:
    """The weights c [q] of :func:`~anelastic.physics.stencils.staggered_stencil` as the code
    Devito generates for ``f.dx`` holds them: the exact rationals rounded to 9 significant digits
    (e.g. 1225/1024 -> 1.19628906). The transpose is exact only with the very same numbers (the
    full-precision weights leave a 1e-9 relative mismatch at order 8)."""
    half = [sympy.Rational(2 * m - 1, 2) for m in range(1, q + 1)]
    system = sympy.Matrix(q, q, lambda k, m: 2 * half[m] ** (2 * k + 1))
    rhs = sympy.zeros(q, 1)
    rhs[0] = 1
    out = []
    for w in system.LUsolve(rhs):
        rounded = sympy.sympify(w).evalf(DEVITO_WEIGHT_DIGITS)
        out.append(float(to_str(rounded._mpf_, prec_to_dps(rounded._prec))))
    return np.array(out)
