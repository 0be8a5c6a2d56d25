"""Viscoelastic state and coefficients: the fields a step reads, the model folded with dt.

See :mod:`anelastic.physics.viscoelastic.rheology` for the scheme. :class:`ElasticState` holds
the moduli of the SLS rheology, declares the complete solver state (velocities, stresses,
memory variables, C-PML auxiliaries) and the coefficient arrays, and rebuilds the coefficients
from physical parameters for the kernels' chain rule (``scheme_coefficients``).
"""

from __future__ import annotations

import numpy as np

from anelastic.attenuation import complex_modulus
from anelastic.physics.averaging import corner_mean, harmonic_mean
from anelastic.physics.base import BoundaryKind, CoefficientSpec, FieldRole, FieldSpec, Physics
from anelastic.physics.boundary import SPONGE_STRENGTH, layer_depth, padding
from anelastic.physics.viscoelastic.moduli import elastic_moduli


def sponge_name(staggered: tuple[str, ...]) -> str:
    """Name of the sponge-profile coefficient at a staggering."""
    return "sponge_" + ("".join(staggered) or "node")


def stress_name(axes: tuple[str, ...], a: str, b: str) -> str:
    """Name of sigma_ab (pairs stored once, axes in grid order)."""
    i, j = sorted((axes.index(a), axes.index(b)))
    return f"s{axes[i]}{axes[j]}"


class ElasticState(Physics):
    """Moduli, state fields and coefficients of the viscoelastic rheology (padded model)."""

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
        specs += [FieldSpec(f"s{a}{b}", (a, b)) for a, b in self.pairs]
        for l in range(self.n_memory):
            specs += [FieldSpec(n, s, FieldRole.MEMORY, 0) for n, s in self.memory_names(l)]
        if self.config.boundary is BoundaryKind.CPML and self.config.pml_width > 0:
            specs += [FieldSpec(n, s, FieldRole.BOUNDARY, 0) for n, s in self._psi_names()]
        return tuple(specs)

    def _psi_names(self) -> list[tuple[str, tuple[str, ...]]]:
        """C-PML auxiliaries, one per (differentiated field, axis), at the updated field."""
        out = []
        for a in self.axes:  # velocity update of v_a: d sigma_ab / d b
            out += [(f"psi_{self.stress_name(a, b)}_{b}", (a,)) for b in self.axes]
        out += [(f"psi_v{a}_{a}", ()) for a in self.axes]  # normal stresses
        for a, b in self.pairs:
            out += [(f"psi_v{a}_{b}", (a, b)), (f"psi_v{b}_{a}", (a, b))]
        return out

    def stress_name(self, a: str, b: str) -> str:
        """Name of sigma_ab (pairs stored once, axes in grid order)."""
        return stress_name(self.axes, a, b)

    def harmonic_mean(self, values: np.ndarray, a: str, b: str) -> np.ndarray:
        """Harmonic mean of node ``values`` at the (a, b)-staggered points."""
        return harmonic_mean(values, self.axes.index(a), self.axes.index(b))

    def corner_mean(self, values: np.ndarray, a: str, b: str) -> np.ndarray:
        """Arithmetic mean of node ``values`` at the (a, b)-staggered points."""
        return corner_mean(values, self.axes.index(a), self.axes.index(b))

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
            specs.append(CoefficientSpec(f"mu_dt_{a}{b}", self.harmonic_mean(mu_dt, a, b), (a, b)))
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
                mean_y = self.corner_mean(m.y_mu[l], a, b)
                value = self.harmonic_mean(rate, a, b) * mean_y
                out.append(CoefficientSpec(f"mmu{l}_{a}{b}", value, (a, b)))
        return out

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
                depth = layer_depth(shape[k], *pads[k], a in staggered)
                profile = np.exp(-((SPONGE_STRENGTH * depth) ** 2)).reshape(
                    [-1 if j == k else 1 for j in range(self.ndim)]
                )
                factor = factor * profile
            out.append(CoefficientSpec(sponge_name(staggered), factor, staggered))
        return out

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

    def velocity_bounds(self) -> tuple[float, float]:
        m = self.moduli
        frac = 2.0 * (self.ndim - 1) / self.ndim
        vp_unrelaxed = np.sqrt((m.kappa_u + frac * m.mu_u) / self.model.rho)
        return float(self.model.vp.min()), float(vp_unrelaxed.max())

    def grid_index(self, position) -> tuple[int, ...]:
        """Nearest node of the padded grid to ``position`` [ndim] (m)."""
        grid = self.model.grid
        return tuple(
            int(np.clip(round((c - o) / h), 0, n - 1))
            for c, o, h, n in zip(position, grid.origin, grid.spacing, grid.shape, strict=True)
        )

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
