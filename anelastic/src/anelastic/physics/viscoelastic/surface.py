"""Free surface of the viscoelastic scheme (top, z = first grid row) by stress imaging.

``sigma_zz = sigma_xz = sigma_yz = 0`` on the surface: sigma_zz and sigma_iz are odd about it in
the velocity update; the vertical strain rate on the surface row is the one that keeps
``sigma_zz^{n+1} = 0`` exactly (memory terms included); below it, vertical velocity derivatives
use the highest staggered order whose stencil stays below the surface, 4 points shifted down
next to it. These equations overwrite the top ``space_order / 2`` rows computed by the interior
stages (:mod:`.stages`).
"""

from __future__ import annotations

import numpy as np
from devito import Eq, SubDomain

from anelastic.physics.stencils import (
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


def mirrored_taps(half_order: int, row: int, node_target: bool) -> dict[int, float]:
    """``{storage row k: weight}`` of d/dz of a stress sigma_iz at ``row`` (times h), with the
    odd images that make sigma_iz vanish on the surface: on a node row (field on half rows,
    image ``(r + 1/2) <-> -(r + 1/2)``), else on the half row ``row + 1/2`` (field on node
    rows, image ``r <-> -r``; sigma_zz on the surface row is 0). The interior weights, so the
    rows that read no image are the interior stencil exactly."""
    taps: dict[int, float] = {}
    for m, c in enumerate(devito_staggered_weights(half_order), start=1):
        plus, minus = (row + m - 1, row - m) if node_target else (row + m, row + 1 - m)
        low, sign = (minus, -c) if minus >= 0 else ((-minus - 1 if node_target else -minus), c)
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


def _combine(field, row: int, taps: dict[int, float], time_offset: int):
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


class FreeSurface:
    """Surface-row equations (mixed into :class:`~.rheology.Viscoelastic`)."""

    def _row(self, grid, row: int) -> _Row:
        key = (id(grid), row)  # one SubDomain per Devito grid and row
        if key not in self._surface_rows:
            self._surface_rows[key] = _Row(row, grid)
        return self._surface_rows[key]

    def _horizontal(self, fields, layout, name, axis, forward):
        """Devito derivative along a horizontal axis plus the (already updated) C-PML term."""
        f = fields[name].forward if forward else fields[name]
        deriv = getattr(f, f"d{axis}")
        psi = f"psi_{name}_{axis}"
        return deriv + fields[psi].forward if psi in fields else deriv

    def _vertical(self, field, row: int, node_target: bool):
        """d/dz of a stress (at t) at storage row ``row`` with odd images above the surface
        (:func:`mirrored_taps`)."""
        taps = mirrored_taps(self.config.space_order // 2, row, node_target)
        return _combine(field, row, taps, 0)

    def _below_surface(self, field, row: int, node_target: bool):
        """d/dz of a velocity (at t + 1) at storage row ``row`` from rows at or below the
        surface only (:func:`below_surface_taps`)."""
        taps = below_surface_taps(self.config.space_order // 2, row, node_target)
        return _combine(field, row, taps, 1)

    def _surface_velocity(self, fields, coeffs, layout, row) -> list[Eq]:
        """Velocity update on storage row ``row`` with the stresses' odd images."""
        last, eqs = self.axes[-1], []
        region = self._row(layout.grid, row)
        damping = self._sponge(coeffs, True)
        for a in self.axes:
            total = sum(
                self._horizontal(fields, layout, self.stress_name(a, b), b, False)
                for b in self.axes[:-1]
            )
            name = self.stress_name(a, last)
            total += self._vertical(fields[name], row, a != last)
            v = fields[f"v{a}"]
            rhs = damping((a,)) * (v + coeffs["buoy_dt"] * total)
            eqs.append(Eq(v.forward, rhs, subdomain=region))
        return eqs

    def _surface_stress(self, fields, coeffs, layout, row) -> list[Eq]:
        """Stress update on row ``row``: vertical velocity derivatives from rows at or below the
        surface (:meth:`_below_surface`); on the surface row, the d vz/dz keeping sigma_zz = 0."""
        last, region = self.axes[-1], self._row(layout.grid, row)
        horizontal = self.axes[:-1]
        normal = {a: self._horizontal(fields, layout, f"v{a}", a, True) for a in horizontal}
        if row == 0:
            normal[last] = self._surface_strain(fields, coeffs, normal)
        else:
            normal[last] = self._below_surface(fields[f"v{last}"], row, True)
        shear = {}
        for a, b in self.pairs:
            if b == last:
                vertical = self._below_surface(fields[f"v{a}"], row, False)
                shear[(a, b)] = vertical + self._horizontal(fields, layout, f"v{b}", a, True)
            else:
                shear[(a, b)] = self._horizontal(
                    fields, layout, f"v{a}", b, True
                ) + self._horizontal(fields, layout, f"v{b}", a, True)
        damping = self._sponge(coeffs, True)
        eqs = self.stress_updates(fields, coeffs, normal, shear, damping, region)
        if row == 0:
            szz = fields[f"s{last}{last}"]
            eqs.append(Eq(szz.forward, 0, subdomain=region))
        return eqs

    def _surface_strain(self, fields, coeffs, normal):
        """d vz/dz on the surface row such that sigma_zz^{n+1} = sigma_zz^n = 0 (memory terms
        included): from kappa theta + mu2 dev_z - M = 0 with dev_z = (d-1)/d ezz - E_h/d."""
        d, last = self.ndim, self.axes[-1]
        e_h = sum(normal.values())
        bulk, dev = self._normal_memory(fields, coeffs, last)
        memory = bulk + dev[last]
        kappa, mu2 = coeffs["kappa_dt"], coeffs["mu2_dt"]
        return (memory - (kappa - mu2 / d) * e_h) / (kappa + (d - 1) / d * mu2)
