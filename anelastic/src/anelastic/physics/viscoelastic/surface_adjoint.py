"""Exact adjoint of the free surface (:mod:`.surface`): corrections to the interior adjoint
(:mod:`.adjoint`) on the top rows.

With a free surface the forward step differs from the interior one only on the top
``s = space_order / 2`` rows (storage rows r < s), where the surface equations overwrite:

1. velocity: d sigma_az / dz uses odd images, ``q_az = M sigma_az`` (M: :func:`mirrored_taps`)
   instead of the interior ``D sigma_az``;
2. stress: d v_z / dz (rows 1..s-1) and d v_a / dz (shear, rows 0..s-1) use stencils from rows
   at or below the surface (W: :func:`below_surface_taps`) instead of the interior ones;
3. on the surface row the vertical strain rate is the one keeping sigma_zz = 0,
   ``E_z = (Mem - (K - M2/d) E_h) / Den``, ``Den = K + (d-1)/d M2``,
   ``Mem = sum_l h_l (Rk_l - sum_{a<z} Rd_a,l)`` (no v_z in it), and sigma_zz' = 0.

Each vertical operator is a small matrix over rows, so its transpose is the interior one plus
``(W - D)^T`` restricted to the top rows, written in gather form: row k of the adjoint receives
``sum_{r < s} (W - D)[r, k] x^[r]`` (one equation per row k, each on its own row SubDomain).
On the surface row the adjoint drops the adjoint of sigma_zz' (P_zz = 0) and sends the
adjoint E^_z of E_z to what E_z is made of (implicit differentiation of sigma_zz' = 0):

    E^_a += -(K - M2/d) / Den E^_z (a horizontal)      Rk^_l += h_l / Den E^_z
    Rd^_a,l += -h_l / Den E^_z                          dchi/dK += -theta / Den E^_z
    dchi/dM2 += -dev_z / Den E^_z

C-PML: the vertical axis is never damped at the top (no layer above a free surface: a = 0,
b = 1 there), but the regions still step ``psi_z`` on the top rows, where the surface equations
never read it: its adjoint there is the identity. A horizontal correction goes through the
C-PML linearly (``x -> x + a (psi^' + x)``, ``psi^ += b x``), with a = 0 outside the layers.
The replay buffer holds, on the top rows, the strain rates and stress divergences the surface
equations used (the gradients read them).
"""

from __future__ import annotations

from devito import Eq

from anelastic.physics.free_surface import (
    below_surface_taps,
    correction_matrix,
    gather_rows,
    mirrored_taps,
    surface_row,
)


def _strain_taps(half_order: int, row: int, node_target: bool) -> dict[int, float]:
    """The rows of v_z the forward's E_z reads: none on the surface row."""
    return below_surface_taps(half_order, row, node_target) if row else {}


class FreeSurfaceAdjoint:
    """Top-row corrections (mixed into :class:`~.adjoint.ViscoelasticAdjoint`)."""

    @property
    def _half_order(self) -> int:
        return self.physics.config.space_order // 2

    def _matrix(self, surface_taps, rows, node_target: bool) -> dict[int, dict]:
        return correction_matrix(surface_taps, self._half_order, rows, node_target)

    # --- replay buffer -------------------------------------------------------------------
    def surface_buffer_equations(self, fields, buffers, coeffs, grid, h) -> list[Eq]:
        """The top rows of the buffer frame as the surface equations computed them: stress
        divergences with odd images, vertical strain rates from rows at or below the surface
        and, on the surface row, the E_z keeping sigma_zz = 0 (C-PML terms dropped, as in the
        interior frame)."""
        physics, last, eqs = self.physics, self.axes[-1], []
        for row in range(self._half_order):
            where = surface_row(grid, row)
            for a in self.axes:
                div = physics._vertical(fields[physics.stress_name(a, last)], row, a != last)
                for j, b in enumerate(self.axes[:-1]):
                    s = fields[physics.stress_name(a, b)]
                    div += self._derivative(s, j, h[b], a == b)
                eqs.append(Eq(buffers[f"div_{a}"], div, subdomain=where))
            if row == 0:
                horizontal = {
                    a: self._derivative(fields[f"v{a}"], i, h[a], False, 1)
                    for i, a in enumerate(self.axes[:-1])
                }
                strain = physics._surface_strain(fields, coeffs, horizontal)
            else:
                strain = physics._below_surface(fields[f"v{last}"], row, True)
            eqs.append(Eq(buffers[f"strain_{last}"], strain, subdomain=where))
            for a, b in self.pairs:
                if b != last:
                    continue
                i = self.axes.index(a)
                vertical = physics._below_surface(fields[f"v{a}"], row, False)
                horizontal = self._derivative(fields[f"v{b}"], i, h[a], True, 1)
                eqs.append(Eq(buffers[f"shear_{a}{b}"], vertical + horizontal, subdomain=where))
        return eqs

    # --- adjoint step --------------------------------------------------------------------
    def _surface_terms(self, adj, coeffs, weighted) -> dict:
        """Surface-row quantities: E^ with P_zz = 0 (``normal0``), E^_z, 1/Den and the
        factor of E^_z going to the horizontal strain rates."""
        last, d = self.axes[-1], self.ndim
        normal0, _ = self._strain_adjoints(adj, coeffs, {**weighted, (last, last): 0})
        kappa, mu2 = coeffs["kappa_dt"], coeffs["mu2_dt"]
        inverse_den = 1 / (kappa + (d - 1) * mu2 / d)
        return {
            "normal0": normal0,
            "ez": normal0[last],
            "inverse_den": inverse_den,
            "to_horizontal": -(kappa - mu2 / d) * inverse_den,
        }

    def surface_strain_equations(self, adj, tmp, coeffs, layout, weighted, normal) -> list[Eq]:
        """After the regions' strain temporaries: the surface row's E^ (P_zz = 0, E^_z sent to
        the horizontal strain rates; none to v_z: :meth:`surface_velocity_equations` takes the
        interior's row-0 term back), and the identity adjoint of psi_z on the top rows."""
        eqs = []
        terms = self._surface_terms(adj, coeffs, weighted)
        for i, a in enumerate(self.axes[:-1]):
            delta = terms["normal0"][a] + terms["to_horizontal"] * terms["ez"] - normal[a]
            psi = f"psi_v{a}_{a}"
            eqs += self._add_through_cpml(adj, tmp, f"tmp_e_{a}", psi, i, False, delta, layout)
        eqs += self._psi_z_identity(adj, layout, stage="stress")
        return eqs

    def _add_through_cpml(self, adj, tmp, name, psi_name, axis, half, delta, layout):
        """``tmp[name] += delta`` on the surface row, through the C-PML of ``axis`` in the
        regions that damp it (``x -> x + a x`` and ``psi^ += b x``)."""
        if not self.cpml:
            return [Eq(tmp[name], tmp[name] + delta, subdomain=surface_row(layout.grid, 0))]
        tag, axis_name = ("h" if half else ""), self.axes[axis]
        a_prof = layout.profiles[f"cpmla{tag}_{axis_name}"]
        b_prof = layout.profiles[f"cpmlb{tag}_{axis_name}"]
        psi = adj[f"adj_{psi_name}"]
        eqs = []
        for region in layout.regions:
            where = layout.on_row(region, 0)
            if not region.damps(axis):
                eqs.append(Eq(tmp[name], tmp[name] + delta, subdomain=where))
                continue
            # a * delta apart: (1 + a) would be rounded to the profile's float32 by Devito.
            eqs.append(Eq(psi.backward, psi.backward + b_prof * delta, subdomain=where))
            eqs.append(Eq(tmp[name], tmp[name] + delta + a_prof * delta, subdomain=where))
        return eqs

    def _psi_z_identity(self, adj, layout, stage: str) -> list[Eq]:
        """psi^_z = psi^_z' on the top rows for the vertical derivatives of one stage."""
        if not self.cpml:
            return []
        last = self.axes[-1]
        if stage == "stress":  # psi of d v_a / dz (E_z and the shears)
            names = [f"psi_v{a}_{last}" for a in self.axes]
        else:  # psi of d sigma_az / dz
            names = [f"psi_{self.physics.stress_name(a, last)}_{last}" for a in self.axes]
        names = [n for n in names if f"adj_{n}" in adj]
        eqs = []
        for row in range(self._half_order):
            for name in names:
                psi = adj[f"adj_{name}"]
                eqs.append(Eq(psi.backward, psi, subdomain=surface_row(layout.grid, row)))
        return eqs

    def surface_memory_equations(self, adj, coeffs, layout, weighted) -> list[Eq]:
        """The surface row's memory adjoints: P_zz = 0 and E_z's dependence on the memory."""
        eqs = []
        terms = self._surface_terms(adj, coeffs, weighted)
        surface = surface_row(layout.grid, 0)
        horizontal = self.axes[:-1]
        for l in range(self.n_memory):
            alpha, half = coeffs[f"malpha{l}"], coeffs[f"mhalf{l}"]
            from_ez = half * terms["inverse_den"] * terms["ez"]
            updates = {}
            if self.bulk:
                stress = sum(weighted[(a, a)] for a in horizontal)
                updates[f"adj_mem_kappa{l}"] = (stress, from_ez)
            if self.shear:
                for a in horizontal:
                    updates[f"adj_mem_dev{a}{l}"] = (weighted[(a, a)], -from_ez)
            for name, (stress, extra) in updates.items():
                r = adj[name]
                eqs.append(Eq(r.backward, alpha * r - half * stress + extra, subdomain=surface))
        return eqs

    def surface_gradient_equations(self, adj, grads, buffers, coeffs, layout, weighted):
        """The surface row's K and M2 gradients: drop P_zz, add E_z's dependence on them."""
        last = self.axes[-1]
        terms = self._surface_terms(adj, coeffs, weighted)
        theta = sum(buffers[f"strain_{a}"] for a in self.axes)
        dev_z = buffers[f"strain_{last}"] - theta / self.ndim
        factor = weighted[(last, last)] + terms["ez"] * terms["inverse_den"]
        surface = surface_row(layout.grid, 0)
        eqs = []
        for name, value in (("grad_kappa", theta), ("grad_mu2", dev_z)):
            g = grads[name]
            eqs.append(Eq(g, g - factor * value, subdomain=surface))
        return eqs

    def surface_velocity_equations(self, adj, tmp, coeffs, layout) -> list[Eq]:
        """v^ += s (W - D)^T of the strain-rate adjoints on the top rows (E_z: W has no row 0,
        as E_z does not read v_z there; shears d v_a / dz: rows 0..s-1). Zeroing E^_z on the
        surface row instead would be a time-invariant equation, which Devito lifts out of the
        time loop, splitting it."""
        last, s, eqs = self.axes[-1], self._half_order, []
        h = layout.grid.dimensions[-1].spacing
        strain = tmp[f"tmp_e_{last}"]
        sources = {last: (strain, self._matrix(_strain_taps, range(s), True))}
        for a in self.axes[:-1]:
            g = tmp[self._g_name(a, last)]
            sources[a] = (g, self._matrix(below_surface_taps, range(s), False))
        for a, (source, matrix) in sources.items():
            v = adj[f"adj_v{a}"]
            sponge = self._sponge(coeffs, (a,))
            for where, value in gather_rows(source, matrix, layout.grid, h):
                eqs.append(Eq(v.backward, v.backward + sponge * value, subdomain=where))
        return eqs

    def surface_stress_equations(self, adj, tmp, layout, weighted) -> list[Eq]:
        """sigma^_az += (M - D)^T q^_az on the top rows; the surface row's sigma^_zz loses
        P_zz (sigma_zz' does not depend on sigma_zz there); psi_z of the velocity stage."""
        last, s, eqs = self.axes[-1], self._half_order, []
        h = layout.grid.dimensions[-1].spacing
        for a in self.axes:
            q = tmp[self._q_name(a, last)]
            matrix = self._matrix(mirrored_taps, range(s), a != last)
            sigma = adj[f"adj_{self.physics.stress_name(a, last)}"]
            if a == last:  # the surface row: drop P_zz (also where (M - D) has no column 0)
                matrix.setdefault(0, {})
            for where, value in gather_rows(q, matrix, layout.grid, h):
                if a == last and where is surface_row(layout.grid, 0):
                    value = value - weighted[(last, last)]
                eqs.append(Eq(sigma.backward, sigma.backward + value, subdomain=where))
        eqs += self._psi_z_identity(adj, layout, stage="velocity")
        return eqs
