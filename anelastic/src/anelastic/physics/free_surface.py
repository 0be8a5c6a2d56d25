"""A flat free surface at the top of the grid (z = first grid row): what both physics share.

The surface equations overwrite the interior update on the top ``space_order / 2`` rows, where
the interior stencils would read above the grid. A vertical derivative there is a small matrix
over rows, given as taps ``{storage row k: weight}`` (times 1/h): the interior stencil
(:func:`interior_taps`), one reading images above the surface (:func:`mirrored_taps`), or one
from rows at or below the surface only (:func:`below_surface_taps`). The forward builds its
surface equations from these taps and the adjoints transpose the very same numbers.
"""

from __future__ import annotations

import numpy as np
from devito import SubDomain

from anelastic.physics.stencils import (
    at,
    derivative_weights,
    devito_staggered_weights,
    rounded_like_devito,
    shifted,
)


def interior_taps(half_order: int, row: int, node_target: bool) -> dict[int, float]:
    """``{storage row k: weight}`` of the interior staggered d/dz at ``row`` (times h): on a
    node row from half rows (``node_target``), else on the half row ``row + 1/2`` from node
    rows; rows above the surface (k < 0) are dropped (they are the halo, never read)."""
    taps: dict[int, float] = {}
    for m, c in enumerate(devito_staggered_weights(half_order), start=1):
        plus, minus = (row + m - 1, row - m) if node_target else (row + m, row + 1 - m)
        for k, w in ((plus, c), (minus, -c)):
            if k >= 0:
                taps[k] = taps.get(k, 0.0) + w
    return taps


def mirrored_taps(
    half_order: int, row: int, node_target: bool, odd: bool = True
) -> dict[int, float]:
    """``{storage row k: weight}`` of d/dz at ``row`` (times h) of a field extended above the
    surface by its images: odd (a stress sigma_iz, a pressure: 0 on the surface) or even (the
    vertical velocity of a pressure-release surface). On a node row (field on half rows,
    image ``(r + 1/2) <-> -(r + 1/2)``), else on the half row ``row + 1/2`` (field on node
    rows, image ``r <-> -r``; an odd field is 0 on the surface row). The interior weights, so
    the rows that read no image are the interior stencil exactly."""
    taps: dict[int, float] = {}
    for m, c in enumerate(devito_staggered_weights(half_order), start=1):
        plus, minus = (row + m - 1, row - m) if node_target else (row + m, row + 1 - m)
        image = -minus - 1 if node_target else -minus
        low, sign = (minus, -c) if minus >= 0 else (image, c if odd else -c)
        for k, w in ((plus, c), (low, sign)):
            taps[k] = taps.get(k, 0.0) + w
    return taps


def below_surface_taps(half_order: int, row: int, node_target: bool) -> dict[int, float]:
    """``{storage row k: weight}`` of d/dz of a velocity at ``row`` (times h) from rows at or
    below the surface: the centred staggered stencil where it fits, else 4 points shifted down
    (4th order). ``node_target`` as in :func:`mirrored_taps`. Weights rounded as Devito
    prints them, so the adjoint transposes the very numbers the forward uses."""
    if node_target:  # field on half rows k + 1/2, target on node row ``row``
        first, target = row - half_order, row - 0.5
    else:  # field on node rows k, target on half row ``row + 1/2``
        first, target = row + 1 - half_order, row + 0.5
    count = 2 * half_order if first >= 0 else 4
    ks = np.arange(max(first, 0), max(first, 0) + count)
    weights = rounded_like_devito(derivative_weights(ks - target))
    return {int(k): float(w) for k, w in zip(ks, weights, strict=True)}


def combine_taps(field, row: int, taps: dict[int, float], time_offset: int):
    """``sum_k w_k field[k] / h`` along z at storage row ``row`` (slot t + ``time_offset``)."""
    z = field.grid.dimensions[-1]
    total = sum(
        w * shifted(field, len(field.grid.dimensions) - 1, k - row, time_offset)
        for k, w in taps.items()
    )
    return total / z.spacing


class _Row(SubDomain):
    """One grid row ``z = row`` (all other axes whole): the free-surface rows."""

    def __init__(self, row: int, grid) -> None:
        self.name = f"surface_row{row}"
        self.row = row
        super().__init__(grid=grid)

    def define(self, dimensions):
        *others, z = dimensions
        n = self.grid.shape[-1]
        return {**{d: d for d in others}, z: ("middle", self.row, n - 1 - self.row)}


# One SubDomain per (Devito grid, row): equations on the same row share it. The grid is kept
# in the value so a recycled id() is never mistaken for it.
_ROWS: dict[tuple[int, int], tuple[object, _Row]] = {}


def surface_row(grid, row: int) -> _Row:
    """The SubDomain of grid row ``z = row`` (cached per grid and row)."""
    key = (id(grid), row)
    if key not in _ROWS or _ROWS[key][0] is not grid:
        _ROWS[key] = (grid, _Row(row, grid))
    return _ROWS[key][1]


def correction_matrix(surface_taps, half_order: int, rows, node_target: bool) -> dict[int, dict]:
    """``{column k: {row r: S[r][k] - I[r][k]}}`` (nonzero entries only) over ``rows``: the
    transposed difference between the surface operator S (``surface_taps(half_order, r,
    node_target)``, e.g. :func:`mirrored_taps`) and the interior one I (:func:`interior_taps`)."""
    out: dict[int, dict] = {}
    for r in rows:
        surface = surface_taps(half_order, r, node_target)
        interior = interior_taps(half_order, r, node_target)
        for k in surface.keys() | interior.keys():
            w = surface.get(k, 0.0) - interior.get(k, 0.0)
            if w != 0.0:
                out.setdefault(k, {})[r] = w
    return out


def gather_rows(field, matrix: dict[int, dict], grid, h) -> list[tuple]:
    """(row SubDomain, ``sum_r matrix[k][r] field[r] / h``) for each column k of a
    :func:`correction_matrix`: the transposed difference in gather form, row by row."""
    z = len(grid.dimensions) - 1
    return [
        (surface_row(grid, k), sum(w * at(field, z, r - k) for r, w in rows.items()) / h)
        for k, rows in sorted(matrix.items())
    ]
