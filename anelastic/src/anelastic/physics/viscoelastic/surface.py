"""Free surface of the viscoelastic scheme (top, z = first grid row) by stress imaging.

``sigma_zz = sigma_xz = sigma_yz = 0`` on the surface: sigma_zz and sigma_iz are odd about it in
the velocity update; the vertical strain rate on the surface row is the one that keeps
``sigma_zz^{n+1} = 0`` exactly (memory terms included); below it, vertical velocity derivatives
use the highest staggered order whose stencil stays below the surface, 4 points shifted down
next to it. These equations overwrite the top ``space_order / 2`` rows computed by the interior
stages (:mod:`.stages`).
"""

from __future__ import annotations

from devito import Eq

from anelastic.physics.free_surface import (
    below_surface_taps,
    combine_taps,
    mirrored_taps,
    surface_row,
)


class FreeSurface:
    """Surface-row equations (mixed into :class:`~.rheology.Viscoelastic`)."""

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
        return combine_taps(field, row, taps, 0)

    def _below_surface(self, field, row: int, node_target: bool):
        """d/dz of a velocity (at t + 1) at storage row ``row`` from rows at or below the
        surface only (:func:`below_surface_taps`)."""
        taps = below_surface_taps(self.config.space_order // 2, row, node_target)
        return combine_taps(field, row, taps, 1)

    def _surface_velocity(self, fields, coeffs, layout, row) -> list[Eq]:
        """Velocity update on storage row ``row`` with the stresses' odd images."""
        last, eqs = self.axes[-1], []
        region = surface_row(layout.grid, row)
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
        last, region = self.axes[-1], surface_row(layout.grid, row)
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
