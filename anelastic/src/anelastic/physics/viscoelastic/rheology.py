"""Viscoelastic velocity-stress scheme (P-SV in 2-D, full 3-D) with L standard linear solids.

PDE (plane strain in 2-D; Fourier convention exp(-i w t), see :mod:`anelastic.checks.solutions`)::

    rho dv/dt = div sigma + s(t) f delta(x - xs)
    sigma = kappa * tr(eps) I + 2 mu * dev(eps)        (time convolutions with the SLS moduli)

with ``dev(eps) = eps - tr(eps) I / d`` and ``kappa`` the d-dimensional bulk modulus
(``lambda + 2 mu / d``: ``lambda + mu`` in 2-D, the usual ``lambda + 2 mu / 3`` in 3-D). Each of
kappa and mu relaxes through the same L mechanisms (shared relaxation frequencies ``w_l``) with
their own weights: ``M(w) = M_U [1 - sum_l Y_l w_l / (w_l + i w)]``
(:mod:`anelastic.attenuation`).

Quality factors: the model's (Qp, Qs) become ``Q_mu = Qs`` and, with ``L_d = 2 (d - 1) / d *
(vs / vp)^2``, ``1 / Q_kappa = (1 / Qp - L_d / Qs) / (1 - L_d)`` (the standard relation, first
order in 1/Q; a negative Q_kappa is refused). Unrelaxed moduli reproduce the model's vs and vp
as phase velocities at ``f_ref`` exactly: ``mu_U`` from the S dispersion, then ``kappa_U`` by
Newton on ``Re (M_P(w_ref) / rho)^(-1/2) = 1 / vp`` with ``M_P = kappa + 2 (d - 1) / d mu``.

Memory variables are stress-like and pre-multiplied by the time step (SPECFEM's choice), so
every memory term of the stress update is a constant times a field:

    R_l^{n+1}   = alpha_l R_l^n + beta_l dt M_U Y_l E^{n+1/2}
    sigma^{n+1} = sigma^n + dt M_U (1 - sum_l Y_l beta_l/2) E^{n+1/2} - sum_l (1 + alpha_l)/2 R_l^n

(Crank-Nicolson in time, ``alpha_l = (1 - w_l dt/2) / (1 + w_l dt/2)``, ``beta_l = w_l dt /
(1 + w_l dt/2)``; E the strain rate of v^{n+1/2}). Per mechanism: one bulk variable (of
``tr(eps)``), d - 1 deviatoric normal variables (``dev_xx`` [, ``dev_yy``]; ``dev_zz`` is minus
their sum) and one per shear stress (1 in 2-D, 3 in 3-D): 3 per SLS in 2-D, 6 in 3-D. A modulus
whose Q is infinite everywhere has no memory variables; with Q = inf everywhere the scheme is the
plain elastic one. When a modulus has the same Q everywhere its weights are constants and the
memory coefficient is a constant times the elastic coefficient array (no extra arrays).

Grid (Virieux / Levander): v_i at +h_i/2 along i; normal stresses and the bulk / deviatoric
memory at cell nodes; sigma_ij (i != j) and its memory at +h/2 along i and j, with the
harmonic mean of mu over the surrounding nodes. Leapfrog: v at half steps, stresses at integer
steps. Free surface (top, z = first grid row): ``sigma_zz = sigma_xz = sigma_yz = 0`` there, by
stress imaging (sigma_zz, sigma_iz odd about the surface) in the velocity update; the vertical
strain rate on the surface row is the one that keeps ``sigma_zz^{n+1} = 0`` exactly (memory
terms included); below it, vertical velocity derivatives use the highest staggered order whose
stencil stays below the surface, 4 points shifted down next to it. Measured (order 4, Poisson
solid): Rayleigh speed +1 % and ellipticity H/V -5 % at 13 points per Rayleigh wavelength.

Sources (:mod:`anelastic.acquisition`): FORCE into the velocities; MOMENT ``M`` as
``d sigma_ij/dt -= s(t) M_ij delta`` (i <= j); PRESSURE = explosion, ``M = I``.
Receivers: pressure ``-tr(sigma)/d`` at nodes; a velocity component is interpolated from its
staggered points to the nodes at the stencil order (8-point centred; with a free surface, vz
one-sided from the 4 half rows below, as nothing is stored above), then bilinearly to the
receiver by Devito.
"""

from __future__ import annotations

import numpy as np
from devito import Eq, SubDomain

from anelastic.acquisition import Component, Source, SourceKind
from anelastic.attenuation import complex_modulus
from anelastic.physics.base import (
    BoundaryKind,
    CoefficientSpec,
    FieldRole,
    FieldSpec,
    Injection,
    Physics,
    PhysicsKind,
    Stage,
)
from anelastic.physics.boundary import SPONGE_STRENGTH, _layer_depth, padding
from anelastic.physics.stencils import (
    ONE_SIDED_NODE_WEIGHTS,
    derivative_weights,
    midpoint_weights,
    shifted,
    staggered_stencil,
)
from anelastic.physics.viscoelastic.moduli import elastic_moduli


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


def _sponge_name(staggered: tuple[str, ...]) -> str:
    return "sponge_" + ("".join(staggered) or "node")


def _pair_name(a: str, b: str) -> str:
    return f"s{a}{b}"


class Viscoelastic(Physics):
    """Viscoelastic rheology; ``padded_model`` already includes the absorbing padding."""

    kind = PhysicsKind.VISCOELASTIC

    def __init__(self, padded_model, config, dt, band, sls_fit=None) -> None:
        super().__init__(padded_model, config, dt, band, sls_fit)
        self.axes = padded_model.grid.axis_names
        self.ndim = len(self.axes)
        self.moduli = elastic_moduli(padded_model, band, config.n_sls, fit=sls_fit)
        w_dt = self.moduli.omega * self.dt
        self.alpha = (1 - w_dt / 2) / (1 + w_dt / 2)
        self.beta = w_dt / (1 + w_dt / 2)
        self.bulk_memory = bool(np.any(self.moduli.y_kappa))
        self.shear_memory = bool(np.any(self.moduli.y_mu))
        self.uniform = {
            "kappa": _is_uniform(self.moduli.y_kappa),
            "mu": _is_uniform(self.moduli.y_mu),
        }
        self.pairs = [(a, b) for i, a in enumerate(self.axes) for b in self.axes[i + 1 :]]
        self._surface_rows: dict[tuple[int, int], _Row] = {}

    # --- declarations ------------------------------------------------------------------
    @property
    def n_memory(self) -> int:
        return int(self.moduli.omega.size)

    def operator_key(self) -> tuple:
        return (
            type(self).__name__,
            self.config,
            self.n_memory,
            self.bulk_memory,
            self.shear_memory,
            tuple(sorted(self.uniform.items())),
        )

    def memory_names(self, l: int) -> list[tuple[str, tuple[str, ...]]]:
        """(name, staggering) of the memory variables of mechanism ``l``."""
        out = []
        if self.bulk_memory:
            out.append((f"mem_kappa{l}", ()))
        if self.shear_memory:
            out += [(f"mem_dev{a}{l}", ()) for a in self.axes[:-1]]
            out += [(f"mem_{a}{b}{l}", (a, b)) for a, b in self.pairs]
        return out

    def field_specs(self) -> tuple[FieldSpec, ...]:
        specs = [FieldSpec(f"v{a}", (a,)) for a in self.axes]
        specs += [FieldSpec(f"s{a}{a}") for a in self.axes]
        specs += [FieldSpec(_pair_name(a, b), (a, b)) for a, b in self.pairs]
        for l in range(self.n_memory):
            specs += [FieldSpec(n, s, FieldRole.MEMORY, 0) for n, s in self.memory_names(l)]
        if self.config.boundary is BoundaryKind.CPML and self.config.pml_width > 0:
            specs += [FieldSpec(n, s, FieldRole.BOUNDARY, 0) for n, s in self._psi_names()]
        return tuple(specs)

    def _psi_names(self) -> list[tuple[str, tuple[str, ...]]]:
        """C-PML auxiliaries, one per (differentiated field, axis), at the updated field."""
        out = []
        for a in self.axes:  # velocity update of v_a: d sigma_ab / d b
            out += [(f"psi_{self._stress(a, b)}_{b}", (a,)) for b in self.axes]
        out += [(f"psi_v{a}_{a}", ()) for a in self.axes]  # normal stresses
        for a, b in self.pairs:
            out += [(f"psi_v{a}_{b}", (a, b)), (f"psi_v{b}_{a}", (a, b))]
        return out

    def _stress(self, a: str, b: str) -> str:
        if a == b:
            return f"s{a}{a}"
        i, j = sorted((self.axes.index(a), self.axes.index(b)))
        return _pair_name(self.axes[i], self.axes[j])

    def coefficient_specs(self) -> tuple[CoefficientSpec, ...]:
        m, dt = self.moduli, self.dt
        relax_k = 1 - np.tensordot(self.beta, m.y_kappa, axes=1) / 2 if self.n_memory else 1.0
        relax_mu = 1 - np.tensordot(self.beta, m.y_mu, axes=1) / 2 if self.n_memory else 1.0
        mu_dt = dt * m.mu_u * relax_mu
        specs = [
            CoefficientSpec("buoy_dt", dt / self.model.rho, (), 1),
            CoefficientSpec("kappa_dt", dt * m.kappa_u * relax_k),
            CoefficientSpec("mu2_dt", 2.0 * mu_dt),
        ]
        for a, b in self.pairs:
            specs.append(CoefficientSpec(f"mu_dt_{a}{b}", self._harmonic(mu_dt, a, b), (a, b)))
        for l in range(self.n_memory):
            specs.append(CoefficientSpec(f"malpha{l}", np.array(self.alpha[l])))
            specs.append(CoefficientSpec(f"mhalf{l}", np.array((1 + self.alpha[l]) / 2)))
            specs += self._memory_coefficients(l, relax_k, relax_mu)
        specs += self._sponge_specs()
        return tuple(specs)

    def _memory_coefficients(self, l, relax_k, relax_mu) -> list[CoefficientSpec]:
        """Uniform weights: constants c with R-rate coefficient = c * elastic array;
        otherwise arrays ``beta_l dt M_U Y_l`` at each memory variable's position."""
        m, dt, out = self.moduli, self.dt, []
        if self.bulk_memory and self.uniform["kappa"]:
            c = self.beta[l] * m.y_kappa[l].flat[0] / np.ravel(relax_k)[0]
            out.append(CoefficientSpec(f"mkappa{l}", np.array(c)))
        elif self.bulk_memory:
            out.append(CoefficientSpec(f"mkappa{l}", self.beta[l] * dt * m.kappa_u * m.y_kappa[l]))
        if self.shear_memory and self.uniform["mu"]:
            c = self.beta[l] * m.y_mu[l].flat[0] / np.ravel(relax_mu)[0]
            out.append(CoefficientSpec(f"mmu{l}", np.array(c)))
        elif self.shear_memory:
            rate = self.beta[l] * dt * m.mu_u
            out.append(CoefficientSpec(f"mmu{l}", 2.0 * rate * m.y_mu[l]))
            for a, b in self.pairs:
                mean_y = self._corner_mean(m.y_mu[l], a, b)
                value = self._harmonic(rate, a, b) * mean_y
                out.append(CoefficientSpec(f"mmu{l}_{a}{b}", value, (a, b)))
        return out

    def _corners(self, values: np.ndarray, a: str, b: str) -> list[np.ndarray]:
        """The 4 node values around each (a, b)-staggered point (edge-replicated)."""
        i, j = self.axes.index(a), self.axes.index(b)
        pad = [(0, 0)] * values.ndim
        pad[i], pad[j] = (0, 1), (0, 1)
        ext = np.pad(values, pad, mode="edge")
        out = []
        for di in (0, 1):
            for dj in (0, 1):
                idx = [slice(0, n) for n in values.shape]
                idx[i] = slice(di, di + values.shape[i])
                idx[j] = slice(dj, dj + values.shape[j])
                out.append(ext[tuple(idx)])
        return out

    def _harmonic(self, values: np.ndarray, a: str, b: str) -> np.ndarray:
        """Harmonic mean of ``values`` at the (a, b)-staggered points (0 if any corner is 0)."""
        corners = self._corners(values, a, b)
        with np.errstate(divide="ignore"):
            inv = sum(np.where(c > 0, 1.0 / np.where(c > 0, c, 1.0), np.inf) for c in corners)
        return np.where(np.isinf(inv), 0.0, 4.0 / np.where(np.isinf(inv), 1.0, inv))

    def _corner_mean(self, values: np.ndarray, a: str, b: str) -> np.ndarray:
        return sum(self._corners(values, a, b)) / 4.0

    # --- equations ---------------------------------------------------------------------
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

    # --- free surface ------------------------------------------------------------------
    def _row(self, layout, row: int) -> _Row:
        key = (id(layout.grid), row)  # one SubDomain per Devito grid and row
        if key not in self._surface_rows:
            self._surface_rows[key] = _Row(row, layout.grid)
        return self._surface_rows[key]

    def _horizontal(self, fields, layout, name, axis, forward):
        """Devito derivative along a horizontal axis plus the (already updated) C-PML term."""
        f = fields[name].forward if forward else fields[name]
        deriv = getattr(f, f"d{axis}")
        psi = f"psi_{name}_{axis}"
        return deriv + fields[psi].forward if psi in fields else deriv

    def _vertical(self, field, row: int, node_target: bool):
        """d/dz of a stress (at t) at storage row ``row``, odd images above the surface.

        ``node_target``: the derivative sits on a node row (field on half rows, image
        ``(r + 1/2) <-> -(r + 1/2)``), else on the half row ``row + 1/2`` (field on node rows,
        image ``r <-> -r``; sigma_zz on the surface row is 0).
        """
        z = self.ndim - 1
        total = 0
        for m, c in enumerate(staggered_stencil(self.config.space_order // 2), start=1):
            plus, minus = (row + m - 1, row - m) if node_target else (row + m, row + 1 - m)
            low = shifted(field, z, minus - row, 0)
            if minus < 0:
                mirror = -minus - 1 if node_target else -minus
                low = -shifted(field, z, mirror - row, 0)
            total = total + c * (shifted(field, z, plus - row, 0) - low)
        return total / field.grid.dimensions[z].spacing

    def _below_surface(self, field, row: int, node_target: bool):
        """d/dz of a velocity (at t + 1) at storage row ``row`` from rows at or below the
        surface only: the centred staggered stencil where it fits, else 4 points shifted down
        (4th order; ``node_target`` as in :meth:`_vertical`)."""
        s, z = self.config.space_order // 2, self.ndim - 1
        if node_target:  # field on half rows k + 1/2, target on node row ``row``
            first, target = row - s, row - 0.5
        else:  # field on node rows k, target on half row ``row + 1/2``
            first, target = row + 1 - s, row + 0.5
        count = 2 * s if first >= 0 else 4
        ks = np.arange(max(first, 0), max(first, 0) + count)
        weights = derivative_weights(ks - target)
        h = field.grid.dimensions[z].spacing
        return (
            sum(w * shifted(field, z, int(k) - row, 1) for k, w in zip(ks, weights, strict=True))
            / h
        )

    def _surface_velocity(self, fields, coeffs, layout, row) -> list[Eq]:
        """Velocity update on storage row ``row`` with the stresses' odd images."""
        last, eqs = self.axes[-1], []
        region = self._row(layout, row)
        damping = self._sponge(coeffs, True)
        for a in self.axes:
            total = sum(
                self._horizontal(fields, layout, self._stress(a, b), b, False)
                for b in self.axes[:-1]
            )
            name = self._stress(a, last)
            total += self._vertical(fields[name], row, a != last)
            v = fields[f"v{a}"]
            rhs = damping((a,)) * (v + coeffs["buoy_dt"] * total)
            eqs.append(Eq(v.forward, rhs, subdomain=region))
        return eqs

    def _surface_stress(self, fields, coeffs, layout, row) -> list[Eq]:
        """Stress update on row ``row``: vertical velocity derivatives from rows at or below the
        surface (:meth:`_below_surface`); on the surface row, the d vz/dz keeping sigma_zz = 0."""
        last, region = self.axes[-1], self._row(layout, row)
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
            return lambda staggered: coeffs[_sponge_name(staggered)]
        return lambda staggered: 1

    def _sponge_specs(self) -> list[CoefficientSpec]:
        """Cerjan sponge products at every staggering used (A's layout multiplies staggered
        fields by node profiles, which Devito would have to interpolate)."""
        if self.config.boundary is not BoundaryKind.SPONGE:
            return []
        pads = padding(self.ndim, self.config.pml_width, self.config.free_surface)
        shape = self.model.grid.shape
        out = []
        for staggered in [(), *[(a,) for a in self.axes], *self.pairs]:
            factor = np.ones(shape)
            for k, a in enumerate(self.axes):
                depth = _layer_depth(shape[k], *pads[k], a in staggered)
                profile = np.exp(-((SPONGE_STRENGTH * depth) ** 2)).reshape(
                    [-1 if j == k else 1 for j in range(self.ndim)]
                )
                factor = factor * profile
            out.append(CoefficientSpec(_sponge_name(staggered), factor, staggered))
        return out

    def _velocity_region(self, fields, coeffs, layout, region) -> list[Eq]:
        eqs, damping = [], self._sponge(coeffs, region.absorbing)
        for a in self.axes:
            divergence = 0
            for b in self.axes:
                name = self._stress(a, b)
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
            s = fields[_pair_name(a, b)]
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

    def scheme_coefficients(self, rho, vp, vs, qp, qs) -> dict[str, np.ndarray]:
        """Node quantities the scheme's coefficients are built from, as functions of the physical
        parameters [*shape] (float64) at this rheology's fixed relaxation mechanisms (the kernels'
        chain rule differentiates it):

        ``buoy_dt = dt / rho``; ``kappa_dt = dt kappa_U (1 - sum_l beta_l Y_kappa,l / 2)``;
        ``mu_dt = dt mu_U (1 - sum_l beta_l Y_mu,l / 2)`` (``mu2_dt = 2 mu_dt``, ``mu_dt_ab`` its
        harmonic mean); with memory: ``rate_kappa``, ``rate_mu`` [L, *shape] ``= beta_l dt M_U
        Y_l`` (the dev rate is ``2 rate_mu``), ``y_mu`` [L, *shape] and ``mu_u_dt = dt mu_U``
        (the shear memory rate is ``beta_l harmonic(mu_u_dt) mean(y_mu,l)``).
        """
        model = self.model.replace(rho=rho, vp=vp, vs=vs, qp=qp, qs=qs)
        m = elastic_moduli(model, self.band, self.config.n_sls, fit=self.moduli.fit)
        dt = self.dt
        out = {"buoy_dt": dt / rho, "kappa_dt": dt * m.kappa_u, "mu_dt": dt * m.mu_u}
        if not self.n_memory:
            return out
        beta = self.beta.reshape((-1,) + (1,) * rho.ndim)
        out["kappa_dt"] = dt * m.kappa_u * (1 - (beta * m.y_kappa).sum(axis=0) / 2)
        out["mu_dt"] = dt * m.mu_u * (1 - (beta * m.y_mu).sum(axis=0) / 2)
        out["rate_kappa"] = beta * dt * m.kappa_u * m.y_kappa
        out["rate_mu"] = beta * dt * m.mu_u * m.y_mu
        out["y_mu"] = m.y_mu
        out["mu_u_dt"] = dt * m.mu_u
        return out

    # --- sources and receivers ---------------------------------------------------------
    def injections(self, source: Source, cell_volume: float) -> list[Injection]:
        if source.kind is SourceKind.FORCE:
            rho = self._value_at(self.model.rho, source.position)
            return [
                Injection(f"v{a}", "velocity", f * self.dt / (rho * cell_volume), 0.0)
                for a, f in zip(self.axes, source.direction, strict=True)
                if f != 0.0
            ]
        moment = np.eye(self.ndim) if source.kind is SourceKind.PRESSURE else source.moment
        out = []
        for i, a in enumerate(self.axes):
            for j in range(i, self.ndim):
                if moment[i, j] != 0.0:
                    scale = -float(moment[i, j]) * self.dt / cell_volume
                    out.append(Injection(self._stress(a, self.axes[j]), "stress", scale, 0.5))
        return out

    def _value_at(self, array: np.ndarray, position) -> float:
        return float(array[self.grid_index(position)])

    def grid_index(self, position) -> tuple[int, ...]:
        """Nearest node of the padded grid to ``position`` [ndim] (m)."""
        grid = self.model.grid
        return tuple(
            int(np.clip(round((c - o) / h), 0, n - 1))
            for c, o, h, n in zip(position, grid.origin, grid.spacing, grid.shape, strict=True)
        )

    def record(self, fields: dict, component: Component):
        if component is Component.P:
            return -sum(fields[f"s{a}{a}"] for a in self.axes) / self.ndim
        name = component.value
        if name not in fields:
            raise ValueError(f"component {name} does not exist in {self.ndim}-D")
        # Devito would average a staggered field to the nodes over 2 points (an amplitude loss
        # of cos(k h / 2)); interpolate at the stencil's order instead.
        field, axis = fields[name], self.axes.index(name[1])
        if self.config.free_surface and axis == self.ndim - 1:
            # Nothing is stored above the surface: one-sided from the 4 half rows below.
            taps = list(zip(range(4), ONE_SIDED_NODE_WEIGHTS, strict=True))
        else:
            weights = midpoint_weights(min(self.config.space_order, 8) // 2)
            taps = [(o, w) for m, w in enumerate(weights, start=1) for o in (m - 1, -m)]
        return sum(0.5 * w * shifted(field, axis, o, slot) for o, w in taps for slot in (0, 1))

    def velocity_bounds(self) -> tuple[float, float]:
        m = self.moduli
        frac = 2.0 * (self.ndim - 1) / self.ndim
        vp_unrelaxed = np.sqrt((m.kappa_u + frac * m.mu_u) / self.model.rho)
        return float(self.model.vp.min()), float(vp_unrelaxed.max())

    def lame_moduli_at(self, position) -> tuple:
        """Exact complex (lambda(w), mu(w)) of the discretised rheology at ``position`` [ndim].

        Returns two callables ``omega [nfreq] rad/s -> [nfreq] complex Pa`` (plane strain in
        2-D: ``lambda = kappa - mu``), as :mod:`anelastic.checks.solutions` expects.
        """
        idx = self.grid_index(position)
        m = self.moduli
        y_k = m.y_kappa[(slice(None), *idx)]
        y_mu = m.y_mu[(slice(None), *idx)]
        kappa = complex_modulus(float(m.kappa_u[idx]), y_k, m.omega)
        mu = complex_modulus(float(m.mu_u[idx]), y_mu, m.omega)
        return (lambda w: kappa(w) - 2.0 / self.ndim * mu(w)), mu


def _is_uniform(y: np.ndarray) -> bool:
    """True when every weight array [L, *shape] is constant in space."""
    if y.shape[0] == 0:
        return True
    flat = y.reshape(y.shape[0], -1)
    return bool(np.all(flat == flat[:, :1]))
