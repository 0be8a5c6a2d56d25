"""Sparse points (sources, receivers, adjoint sources) on the grid: linear interpolation and
injection with the weights computed here, in float64, once.

Devito's coordinate-based sparse functions compute each point's cell and weights in the
generated C, in the fields' precision, from the coordinates relative to the grid origin, and
under MPI relative to each rank's box. In float32 a point 65.3 cells from the origin then
gets a weight off by 3e-6 (the rounding of 65.3), one 4.3 cells from a rank's box edge by
6e-8: the traces of the same run on 1 and on 2 ranks differed by 4e-6 of their maximum.
Here the cell (``gridpoints``, integers, which Devito shifts exactly to each rank's box) and
the weights (``interpolation_coeffs``, per point and axis, the same on every rank) are
computed in float64 from the global position, so a decomposed run reads exactly the serial
run's weights.

Injection into a staggered field is placed on that field's own lattice (half a cell lower
along its staggered axes), as Devito does for coordinate-based points.
"""

from __future__ import annotations

import numpy as np
from devito import PrecomputedSparseTimeFunction

# Grid points per axis of linear interpolation / injection.
LINEAR_POINTS = 2


def point_function(name: str, grid, npoint: int, nt: int, dtype) -> PrecomputedSparseTimeFunction:
    """``npoint`` sparse points with ``nt`` samples, to be placed with :func:`place`."""
    return PrecomputedSparseTimeFunction(
        name=name,
        grid=grid,
        npoint=npoint,
        nt=nt,
        dtype=dtype,
        r=LINEAR_POINTS,
        gridpoints=np.zeros((npoint, grid.dim), dtype=np.int32),
        interpolation_coeffs=np.zeros((npoint, grid.dim, LINEAR_POINTS)),
    )


def place(points: PrecomputedSparseTimeFunction, positions: np.ndarray, field=None) -> None:
    """Put ``points`` at ``positions`` [npoint, ndim] (m, the grid's frame).

    field: the Devito field they inject into (its staggering moves them onto its lattice);
    None for points that interpolate (receivers read expressions evaluated at the nodes).
    Sets the whole arrays on every rank (Devito's sparse data is set only as a whole).
    """
    grid = points.grid
    positions = np.asarray(positions, dtype=np.float64).reshape(-1, grid.dim)
    origin = np.array(grid.origin, dtype=np.float64)
    spacing = np.array(grid.spacing, dtype=np.float64)
    cells = (positions - origin) / spacing - _half_cells(field, grid)
    base = np.floor(cells)
    frac = cells - base
    points.gridpoints.data[:] = base.astype(np.int32)
    points.interpolation_coeffs.data[:] = np.stack([1.0 - frac, frac], axis=-1)


def _half_cells(field, grid) -> np.ndarray:
    """[ndim]: 0.5 along the axes where ``field`` is staggered, else 0."""
    staggered = getattr(field, "staggered", None)
    if field is None or not staggered or staggered.on_node:
        return np.zeros(grid.dim)
    # One entry per dimension of the field, time included (as Devito's own shifts read it).
    pairs = zip(field.dimensions, staggered, strict=True)
    return np.array([0.5 if s else 0.0 for d, s in pairs if d.is_Space])
