"""Exact adjoint of the pressure-release free surface (:mod:`.rheology`): corrections to the
interior adjoint (:mod:`.adjoint`) on the top rows.

The forward step differs from the interior one on the top ``s = space_order / 2`` rows only:

1. velocity: v_z on half rows r < s from ``q = M p`` (M: d/dz with p's odd images,
   :func:`mirrored_taps`) instead of the interior ``G p``;
2. pressure: p and zeta on node rows 1..s-1 from a divergence whose d v_z / dz uses v_z's even
   images (``M_e``) instead of the interior ``D``;
3. p' = 0 on the surface row (its zeta keeps the interior update, and is never read).

Each vertical operator is a matrix over rows, so its transpose is the interior one plus
``(M - G)^T`` restricted to the top rows, in gather form: row k receives
``sum_{r < s} (M - G)[r, k] x^[r]`` (:func:`~anelastic.physics.free_surface.correction_matrix`).
On the surface row the adjoint drops P = s_p p^' (p' does not depend on anything there): the
adjoint divergence, zeta^, the gradients and p^ lose their P terms. The vertical axis has no
C-PML at the top (a = 0, b = 1 on the top rows), so the vertical corrections skip it; the
surface row's adjoint divergence is corrected through the psi of every axis a region damps.
"""

from __future__ import annotations

import functools

from devito import Eq

from anelastic.physics.base import VELOCITY_NAMES
from anelastic.physics.free_surface import (
    correction_matrix,
    gather_rows,
    interior_taps,
    mirrored_taps,
    surface_row,
)
from anelastic.physics.stencils import at


class PressureReleaseAdjoint:
    """Top-row corrections (mixed into :class:`~.adjoint.ViscoacousticAdjoint`)."""

    def _surface_matrix(self, rows, node_target: bool, odd: bool) -> dict[int, dict]:
        s = self.physics.config.space_order // 2
        taps = functools.partial(mirrored_taps, odd=odd)
        return correction_matrix(taps, s, rows, node_target)

    def surface_buffer_equations(self, fields, buffers, coeffs, grid) -> list[Eq]:
        """w_M (and w_Q) on node rows 1..s-1 from the mirrored divergence (C-PML terms dropped,
        as in the interior frame); the surface row's frame is never read (P = 0 there)."""
        eqs = []
        for row in range(1, self.physics.config.space_order // 2):
            div = self.physics.surface_divergence(fields, row, with_psi=False)
            where = surface_row(grid, row)
            for lhs, rhs in self._sensitivities(fields, buffers, coeffs, div):
                eqs.append(Eq(lhs, rhs, subdomain=where))
        return eqs

    def surface_row_equations(self, adj, tmp, grads, buffers, coeffs, layout, pressure):
        """The surface row without P: the adjoint divergence gains back A P (through the
        horizontal C-PML where a region damps the axis), zeta^ and the gradients lose their
        P terms. The band damps z too: there psi_vz steps with b = 1 on the top rows and reads
        adiv like any psi."""
        delta = coeffs["mod_dt"] * pressure
        eqs = []
        for i, a in enumerate(self.axes):  # psi_v of every damped axis reads adiv
            if not self.cpml:
                break
            psi = adj[f"adj_psi_v{a}"]
            b = layout.profiles[f"cpmlb_{a}"]
            for region in layout.regions:
                if region.damps(i):
                    where = layout.on_row(region, 0)
                    eqs.append(Eq(psi.backward, psi.backward + b * delta, subdomain=where))
        surface = surface_row(layout.grid, 0)
        eqs.append(Eq(tmp["tmp_div"], tmp["tmp_div"] + delta, subdomain=surface))
        for l in range(self.n_memory):
            z = adj[f"adj_zeta{l}"]
            term = self.physics.memory_coefficient(coeffs, l) * pressure
            eqs.append(Eq(z.backward, z.backward - term, subdomain=surface))
        frames = [("grad_mod", "w_mod")] + ([("grad_q", "w_q")] if self.n_memory else [])
        for grad, frame in frames:
            g = grads[grad]
            eqs.append(Eq(g, g - pressure * buffers[frame], subdomain=surface))
        return eqs

    def surface_velocity_equations(self, adj, tmp, layout) -> list[Eq]:
        """v^_z += s (M_e - D)^T adiv from node rows 1..s-1 (the mirrored divergence)."""
        last = self.axes[-1]
        h = layout.grid.dimensions[-1].spacing
        rows = range(1, self.physics.config.space_order // 2)
        matrix = self._surface_matrix(rows, node_target=True, odd=False)
        v = adj[f"adj_{VELOCITY_NAMES[last]}"]
        sponge = self._sponge(layout, (last,))
        return [
            Eq(v.backward, v.backward + sponge * value, subdomain=where)
            for where, value in gather_rows(tmp["tmp_div"], matrix, layout.grid, h)
        ]

    def surface_gradient_equations(self, adj, buffers, grads, layout) -> list[Eq]:
        """The buoyancy gradient of v_z on half rows r < s: v_z read ``M p``, not ``G p``."""
        last, z = self.axes[-1], len(self.axes) - 1
        h = layout.grid.dimensions[-1].spacing
        s = self.physics.config.space_order // 2
        v = adj[f"adj_{VELOCITY_NAMES[last]}"]
        g = grads[f"grad_buoy_{last}"]
        eqs = []
        for row in range(s):
            surface = mirrored_taps(s, row, node_target=False)
            interior = interior_taps(s, row, node_target=False)
            taps = {k: surface.get(k, 0.0) - interior.get(k, 0.0) for k in surface | interior}
            extra = sum(w * at(buffers["p"], z, k - row) for k, w in taps.items() if w) / h
            where = surface_row(layout.grid, row)
            eqs.append(Eq(g, g - v.backward * extra, subdomain=where))
        return eqs

    def surface_pressure_equations(self, adj, tmp, layout, pressure) -> list[Eq]:
        """p^ += (M - G)^T F_z on the top rows; the surface row's p^ loses P."""
        last = self.axes[-1]
        h = layout.grid.dimensions[-1].spacing
        rows = range(self.physics.config.space_order // 2)
        matrix = self._surface_matrix(rows, node_target=False, odd=True)
        matrix.setdefault(0, {})
        p = adj["adj_p"]
        eqs = []
        for where, value in gather_rows(tmp[f"tmp_flux_{last}"], matrix, layout.grid, h):
            if where is surface_row(layout.grid, 0):
                value = value - pressure
            eqs.append(Eq(p.backward, p.backward + value, subdomain=where))
        return eqs
