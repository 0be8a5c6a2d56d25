"""Viscoelastic time step in the interior and the absorbing regions: velocity and stress stages.

See :mod:`anelastic.physics.viscoelastic.rheology` for the scheme; the free-surface rows are
overwritten after these equations (:mod:`.surface`).
"""

from __future__ import annotations

from devito import Eq

from anelastic.physics.base import BoundaryKind, Stage
from anelastic.physics.viscoelastic.state import sponge_name


class ElasticStages:
    """Stages of one step (mixed into :class:`~.rheology.Viscoelastic`, which provides the
    state of :class:`~.state.ElasticState` and the rows of :class:`~.surface.FreeSurface`)."""

    def stages(self, fields: dict, coeffs: dict, layout) -> list[Stage]:
        velocity, stress = [], []
        for region in layout.regions:
            velocity += self._velocity_region(fields, coeffs, layout, region)
            stress += self._stress_region(fields, coeffs, layout, region)
        if self.config.free_surface:
            # Later equations overwrite the top rows computed above (Devito keeps the order).
            for row in range(self.config.space_order // 2):
                velocity += self._surface_velocity(fields, coeffs, layout, row)
                stress += self._surface_stress(fields, coeffs, layout, row)
        return [Stage("velocity", velocity), Stage("stress", stress)]

    def _derivative(self, fields, layout, region, name, axis, half, eqs, forward):
        """d(name)/d(axis) at the updated field's position, C-PML corrected in absorbing
        regions (``half``: the derivative sits at +h/2 along ``axis``)."""
        f = fields[name].forward if forward else fields[name]
        deriv = getattr(f, f"d{axis}")
        if region.damps(self.axes.index(axis)) and self.config.boundary is BoundaryKind.CPML:
            psi = fields[f"psi_{name}_{axis}"]
            psi_eq, deriv = layout.cpml(deriv, psi, self.axes.index(axis), half, region.subdomain)
            eqs.append(psi_eq)
        return deriv

    def _sponge(self, coeffs, absorbing: bool):
        """``staggering -> factor``: the sponge profile at that grid position (1 without)."""
        if absorbing and self.config.boundary is BoundaryKind.SPONGE:
            return lambda staggered: coeffs[sponge_name(staggered)]
        return lambda staggered: 1

    def _velocity_region(self, fields, coeffs, layout, region) -> list[Eq]:
        eqs, damping = [], self._sponge(coeffs, region.absorbing)
        for a in self.axes:
            divergence = 0
            for b in self.axes:
                name = self.stress_name(a, b)
                divergence += self._derivative(fields, layout, region, name, b, a == b, eqs, False)
            v = fields[f"v{a}"]
            rhs = v + coeffs["buoy_dt"] * divergence
            eqs.append(Eq(v.forward, damping((a,)) * rhs, subdomain=region.subdomain))
        return eqs

    def _stress_region(self, fields, coeffs, layout, region) -> list[Eq]:
        eqs = []
        normal = {
            a: self._derivative(fields, layout, region, f"v{a}", a, False, eqs, True)
            for a in self.axes
        }
        shear = {}
        for a, b in self.pairs:
            shear[(a, b)] = self._derivative(
                fields, layout, region, f"v{a}", b, True, eqs, True
            ) + self._derivative(fields, layout, region, f"v{b}", a, True, eqs, True)
        damping = self._sponge(coeffs, region.absorbing)
        eqs += self.stress_updates(fields, coeffs, normal, shear, damping, region.subdomain)
        return eqs

    def stress_updates(self, fields, coeffs, normal, shear, damping, subdomain) -> list[Eq]:
        """Stress and memory updates from strain rates.

        normal[a] = dv_a/da (at nodes); shear[(a, b)] = dv_a/db + dv_b/da (at the (a, b) point).
        """
        eqs = []
        theta = sum(normal.values())
        dev = {a: normal[a] - theta / self.ndim for a in self.axes[:-1]}
        last = self.axes[-1]
        dev[last] = -sum(dev.values())
        mem_bulk, mem_dev = self._normal_memory(fields, coeffs, last)
        for a in self.axes:
            s = fields[f"s{a}{a}"]
            rhs = s + coeffs["kappa_dt"] * theta + coeffs["mu2_dt"] * dev[a]
            rhs = rhs - mem_bulk - mem_dev[a]
            eqs.append(Eq(s.forward, damping(()) * rhs, subdomain=subdomain))
        for a, b in self.pairs:
            s = fields[f"s{a}{b}"]
            rhs = (
                s
                + coeffs[f"mu_dt_{a}{b}"] * shear[(a, b)]
                - self._shear_memory(fields, coeffs, a, b)
            )
            eqs.append(Eq(s.forward, damping((a, b)) * rhs, subdomain=subdomain))
        eqs += self._memory_updates(fields, coeffs, theta, dev, shear, subdomain)
        return eqs

    def _normal_memory(self, fields, coeffs, last):
        """Memory sums entering the normal stresses: (bulk, {axis: deviatoric})."""
        bulk = 0
        dev = {a: 0 for a in self.axes}
        for l in range(self.n_memory):
            half = coeffs[f"mhalf{l}"]
            if self.bulk_memory:
                bulk = bulk + half * fields[f"mem_kappa{l}"]
            if self.shear_memory:
                for a in self.axes[:-1]:
                    term = half * fields[f"mem_dev{a}{l}"]
                    dev[a] = dev[a] + term
                    dev[last] = dev[last] - term
        return bulk, dev

    def _shear_memory(self, fields, coeffs, a, b):
        if not self.shear_memory:
            return 0
        return sum(coeffs[f"mhalf{l}"] * fields[f"mem_{a}{b}{l}"] for l in range(self.n_memory))

    def memory_rates(self, coeffs, l: int) -> dict:
        """Devito expressions of mechanism ``l``'s memory rates (the factor of the strain rate in
        ``R^{n+1} = alpha R^n + rate E``): keys "kappa" (nodes), "dev" (nodes) and each pair
        (a, b) (at the (a, b) point), for the moduli that have memory variables."""
        rates = {}
        if self.bulk_memory:
            rate = coeffs[f"mkappa{l}"]
            rates["kappa"] = rate * coeffs["kappa_dt"] if self.uniform["kappa"] else rate
        if self.shear_memory:
            rate = coeffs[f"mmu{l}"]
            rates["dev"] = rate * coeffs["mu2_dt"] if self.uniform["mu"] else rate
            for a, b in self.pairs:
                if self.uniform["mu"]:
                    rates[(a, b)] = coeffs[f"mmu{l}"] * coeffs[f"mu_dt_{a}{b}"]
                else:
                    rates[(a, b)] = coeffs[f"mmu{l}_{a}{b}"]
        return rates

    def _memory_updates(self, fields, coeffs, theta, dev, shear, subdomain) -> list[Eq]:
        eqs = []
        for l in range(self.n_memory):
            alpha, rates = coeffs[f"malpha{l}"], self.memory_rates(coeffs, l)
            if self.bulk_memory:
                r = fields[f"mem_kappa{l}"]
                eqs.append(Eq(r.forward, alpha * r + rates["kappa"] * theta, subdomain=subdomain))
            if not self.shear_memory:
                continue
            for a in self.axes[:-1]:
                r = fields[f"mem_dev{a}{l}"]
                eqs.append(Eq(r.forward, alpha * r + rates["dev"] * dev[a], subdomain=subdomain))
            for a, b in self.pairs:
                r = fields[f"mem_{a}{b}{l}"]
                rate = rates[(a, b)]
                eqs.append(Eq(r.forward, alpha * r + rate * shear[(a, b)], subdomain=subdomain))
        return eqs
