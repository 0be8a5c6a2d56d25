"""Viscoacoustic velocity-pressure scheme with L standard linear solids, 2-D and 3-D.

PDE (Fourier convention exp(-i w t)):  rho dv/dt = -grad p,
dp/dt = -(M * div v) + s(t) delta(x - xs),  M(w) = M_U [1 - sum_l Y_l w_l / (w_l + i w)],
in memory-variable form (see :mod:`anelastic.attenuation`):

    dp/dt = -M_U div v + M_U sum_l Y_l zeta_l,    d zeta_l/dt = w_l (div v - zeta_l).

Discretisation: staggered grid (v_i at +h_i/2), leapfrog in time (p, zeta at t_n; v at
t_{n+1/2}), memory variables by Crank-Nicolson, folded into the pressure update so every field is
read and written once per step:

    v^{n+1/2}  = v^{n-1/2} - (dt/rho) grad p^n
    p^{n+1}    = p^n - A div v^{n+1/2} + sum_l B_l zeta_l^n
    zeta^{n+1} = alpha_l zeta^n + beta_l div v^{n+1/2}

with ``alpha_l = (1 - w_l dt/2) / (1 + w_l dt/2)``, ``beta_l = w_l dt / (1 + w_l dt/2)``,
``A = dt M_U (1 - sum_l Y_l beta_l / 2)``, ``B_l = dt M_U Y_l (1 + alpha_l) / 2``. Coefficient
layouts (``MemoryLayout``), chosen from the model, fewest bytes per cell first:

- UNIFORM (Y_l the same at every point, e.g. one Q): ``B_l = c_l A``, so
  ``p^{n+1} = p^n - A (div v - sum_l c_l zeta_l)``: one array;
- SEPARABLE (``Y_l(x) = y_l g(x)``, e.g. Q = inf in places): ``A`` and ``dt M_U g``;
- GENERAL: ``A`` and one ``B_l`` per mechanism.

With Q = inf everywhere there are no memory variables: the plain acoustic scheme.

Free surface (``free_surface``, pressure release at the top grid row, a node row): p = 0 there,
p odd and v_z even about it. The surface equations overwrite the top ``space_order / 2`` rows
(:mod:`anelastic.physics.free_surface`): v_z from d p / dz with p's odd images, p and zeta from
a divergence with v_z's even images, and p = 0 on the surface row. A velocity record of v_z is
then extrapolated one-sided from the 4 half rows below the node (nothing is stored above the
surface), as in the viscoelastic physics.
"""

from __future__ import annotations

import numpy as np
from devito import Eq

from anelastic.acquisition import Component, Source, SourceKind
from anelastic.attenuation import fit_sls, unrelaxed_modulus
from anelastic.physics.base import (
    VELOCITY_NAMES,
    BoundaryKind,
    CoefficientSpec,
    FieldRole,
    FieldSpec,
    Injection,
    Physics,
    PhysicsKind,
    Stage,
)
from anelastic.physics.free_surface import combine_taps, mirrored_taps, surface_row
from anelastic.physics.stencils import ONE_SIDED_NODE_WEIGHTS, shifted
from anelastic.physics.viscoacoustic.adjoint import ViscoacousticAdjoint
from anelastic.physics.viscoacoustic.inverse_step import inverse_stages


class Viscoacoustic(Physics):
    """Viscoacoustic rheology; ``padded_model`` already includes the absorbing padding."""

    kind = PhysicsKind.VISCOACOUSTIC
    forced_memory_layout: str | None = None

    def __init__(self, padded_model, config, dt, band, sls_fit=None) -> None:
        super().__init__(padded_model, config, dt, band, sls_fit)
        model = padded_model
        self.axes = model.grid.axis_names
        self.attenuating = not bool(np.all(np.isinf(model.qp)))
        m_elastic = model.rho * model.vp**2
        if self.attenuating:
            self.fit = sls_fit if sls_fit is not None else fit_sls(model.qp, band, config.n_sls)
            self.weights = self.fit.weights(model.qp)  # [L, *shape]
            self.omega = self.fit.omega
            self.m_unrelaxed = unrelaxed_modulus(m_elastic, self.weights, self.omega, model.f_ref)
        else:
            self.fit = None
            self.weights = np.zeros((0, *model.grid.shape))
            self.omega = np.zeros(0)
            self.m_unrelaxed = m_elastic
        w_dt = self.omega * self.dt
        self.alpha = (1 - w_dt / 2) / (1 + w_dt / 2)
        self.beta = w_dt / (1 + w_dt / 2)
        self.separable = self._separable_weights()

    @property
    def n_memory(self) -> int:
        return int(self.omega.size)

    def _separable_weights(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(y [L], g [*shape]) with weights = y (x) g, or None if Q varies in space."""
        if not self.attenuating:
            return None
        total = self.weights.sum(axis=0)
        peak = np.unravel_index(np.argmax(total), total.shape)
        y = self.weights[(slice(None), *peak)]
        g = total / total[peak]
        if np.allclose(self.weights, y.reshape((-1,) + (1,) * g.ndim) * g, rtol=1e-12, atol=0):
            return y, g
        return None

    @property
    def memory_layout(self) -> str:
        """ "none", "uniform", "separable" or "general" (see the module docstring)."""
        if not self.attenuating:
            return "none"
        if self.forced_memory_layout is not None:  # tests compare layouts on one model
            return self.forced_memory_layout
        if self.separable is None:
            return "general"
        g = self.separable[1]
        return "uniform" if np.all(g == g.flat[0]) else "separable"

    def operator_key(self) -> tuple:
        return (type(self).__name__, self.config, self.n_memory, self.memory_layout)

    def field_specs(self) -> tuple[FieldSpec, ...]:
        specs = [FieldSpec("p")]
        specs += [FieldSpec(VELOCITY_NAMES[a], (a,)) for a in self.axes]
        specs += [FieldSpec(f"zeta{l}", (), FieldRole.MEMORY, 0) for l in range(self.n_memory)]
        if self.config.boundary is BoundaryKind.CPML and self.config.pml_width > 0:
            specs += [FieldSpec(f"psi_p{a}", (a,), FieldRole.BOUNDARY, 0) for a in self.axes]
            specs += [FieldSpec(f"psi_v{a}", (), FieldRole.BOUNDARY, 0) for a in self.axes]
        return tuple(specs)

    def coefficient_specs(self) -> tuple[CoefficientSpec, ...]:
        dt, m_u = self.dt, self.m_unrelaxed
        y_beta = np.tensordot(self.beta, self.weights, axes=1) if self.attenuating else 0.0
        specs = [
            CoefficientSpec("buoy_dt", dt / self.model.rho, (), 1),
            CoefficientSpec("mod_dt", dt * m_u * (1 - y_beta / 2)),
        ]
        for l in range(self.n_memory):
            specs.append(CoefficientSpec(f"zalpha{l}", np.array(self.alpha[l])))
            specs.append(CoefficientSpec(f"zbeta{l}", np.array(self.beta[l])))
        if self.memory_layout == "uniform":
            y, g = self.separable
            factor = g.flat[0] / (1 - float(y_beta.flat[0]) / 2)
            for l in range(self.n_memory):
                c_l = factor * y[l] * (1 + self.alpha[l]) / 2
                specs.append(CoefficientSpec(f"mcoef{l}", np.array(c_l)))
        elif self.memory_layout == "separable":
            y, g = self.separable
            specs.append(CoefficientSpec("mem_dt", dt * m_u * g))
            for l in range(self.n_memory):
                specs.append(CoefficientSpec(f"mcoef{l}", np.array(y[l] * (1 + self.alpha[l]) / 2)))
        elif self.memory_layout == "general":
            for l in range(self.n_memory):
                b_l = dt * m_u * self.weights[l] * (1 + self.alpha[l]) / 2
                specs.append(CoefficientSpec(f"mem_dt{l}", b_l))
        return tuple(specs)

    def memory_coefficient(self, coeffs: dict, l: int):
        """The Devito expression of ``B_l = dt M_U Y_l (1 + alpha_l) / 2`` in this layout."""
        layout = self.memory_layout
        if layout == "uniform":
            return coeffs["mod_dt"] * coeffs[f"mcoef{l}"]
        if layout == "separable":
            return coeffs["mem_dt"] * coeffs[f"mcoef{l}"]
        return coeffs[f"mem_dt{l}"]

    def scheme_coefficients(self, rho, vp, qp) -> dict[str, np.ndarray]:
        """The scheme's coefficients as functions of the physical parameters [*shape] (float64):
        ``buoy_dt = dt / rho`` [S], ``mod_dt = A`` [S], ``mem_dt = B`` [L, *S], with this
        rheology's (fixed) relaxation mechanisms. The kernels' chain rule differentiates it."""
        m_elastic = rho * vp**2
        if not self.attenuating:
            return {"buoy_dt": self.dt / rho, "mod_dt": self.dt * m_elastic}
        weights = self.fit.weights(qp)
        m_u = unrelaxed_modulus(m_elastic, weights, self.omega, self.model.f_ref)
        shape = (-1,) + (1,) * rho.ndim
        y_beta = (self.beta.reshape(shape) * weights).sum(axis=0)
        mem = self.dt * m_u * weights * ((1 + self.alpha) / 2).reshape(shape)
        return {"buoy_dt": self.dt / rho, "mod_dt": self.dt * m_u * (1 - y_beta / 2), "mem_dt": mem}

    def stages(self, fields: dict, coeffs: dict, layout) -> list[Stage]:
        velocity, pressure = [], []
        for region in layout.regions:
            velocity += self._velocity_equations(fields, coeffs, layout, region)
            pressure += self._pressure_equations(fields, coeffs, layout, region)
        if self.config.free_surface:
            # Later equations overwrite the top rows computed above (Devito keeps the order).
            for row in range(self.config.space_order // 2):
                velocity += self._surface_velocity(fields, coeffs, layout, row)
                pressure += self._surface_pressure(fields, coeffs, layout, row)
        return [Stage("velocity", velocity), Stage("pressure", pressure)]

    def _surface_damping(self, layout, staggered: tuple[str, ...] = ()):
        """The sponge factor on the surface rows (1 with C-PML)."""
        if self.config.boundary is BoundaryKind.SPONGE:
            return layout.sponge_factor(staggered)
        return 1

    def _with_psi(self, fields, deriv, psi_name: str):
        """``deriv`` plus its (already updated) C-PML term; psi stays 0 where no region damps
        the axis, and on the top rows along z (no layer above the surface)."""
        return deriv + fields[psi_name].forward if psi_name in fields else deriv

    def _surface_velocity(self, fields, coeffs, layout, row: int) -> list[Eq]:
        """v_z on the half row ``row + 1/2`` from d p / dz with p's odd images."""
        last, p = self.axes[-1], fields["p"]
        taps = mirrored_taps(self.config.space_order // 2, row, node_target=False)
        grad = self._with_psi(fields, combine_taps(p, row, taps, 0), f"psi_p{last}")
        v = fields[VELOCITY_NAMES[last]]
        rhs = self._surface_damping(layout, (last,)) * (v - coeffs["buoy_dt"] * grad)
        return [Eq(v.forward, rhs, subdomain=surface_row(layout.grid, row))]

    def surface_divergence(self, fields, row: int, with_psi: bool = True):
        """div v^{n+1/2} on node row ``row`` with v_z's even images (C-PML terms included
        unless ``with_psi`` is False)."""
        last, divergence = self.axes[-1], 0
        for a in self.axes[:-1]:
            deriv = getattr(fields[VELOCITY_NAMES[a]].forward, f"d{a}")
            divergence += self._with_psi(fields, deriv, f"psi_v{a}") if with_psi else deriv
        taps = mirrored_taps(self.config.space_order // 2, row, node_target=True, odd=False)
        vertical = combine_taps(fields[VELOCITY_NAMES[last]], row, taps, 1)
        return divergence + (
            self._with_psi(fields, vertical, f"psi_v{last}") if with_psi else vertical
        )

    def _surface_pressure(self, fields, coeffs, layout, row: int) -> list[Eq]:
        """p and zeta on node row ``row`` from the mirrored divergence; p = 0 on the surface
        row (its memory variables, never read, keep the interior update)."""
        where = surface_row(layout.grid, row)
        if row == 0:
            return [Eq(fields["p"].forward, 0, subdomain=where)]
        divergence = self.surface_divergence(fields, row)
        return self._pressure_update(
            fields, coeffs, divergence, self._surface_damping(layout), where
        )

    def _damping(self, layout, region, staggered: tuple[str, ...] = ()):
        """Sponge factor in absorbing regions (1 with C-PML or in the interior)."""
        if region.absorbing and self.config.boundary is BoundaryKind.SPONGE:
            return layout.sponge_factor(staggered)
        return 1

    def _cpml(self, layout, region, deriv, psi_name: str, axis: int, half: bool, fields, eqs):
        """``deriv`` with the C-PML correction where ``region`` damps ``axis``."""
        if not (region.damps(axis) and self.config.boundary is BoundaryKind.CPML):
            return deriv
        psi_eq, damped = layout.cpml(deriv, fields[psi_name], axis, half, region.subdomain)
        eqs.append(psi_eq)
        return damped

    def _velocity_equations(self, fields, coeffs, layout, region) -> list[Eq]:
        p, eqs = fields["p"], []
        for i, a in enumerate(self.axes):
            v = fields[VELOCITY_NAMES[a]]
            grad = self._cpml(
                layout, region, getattr(p, f"d{a}"), f"psi_p{a}", i, True, fields, eqs
            )
            rhs = self._damping(layout, region, (a,)) * (v - coeffs["buoy_dt"] * grad)
            eqs.append(Eq(v.forward, rhs, subdomain=region.subdomain))
        return eqs

    def _pressure_equations(self, fields, coeffs, layout, region) -> list[Eq]:
        eqs, divergence = [], 0
        for i, a in enumerate(self.axes):
            deriv = getattr(fields[VELOCITY_NAMES[a]].forward, f"d{a}")
            divergence += self._cpml(layout, region, deriv, f"psi_v{a}", i, False, fields, eqs)
        damping = self._damping(layout, region)
        return eqs + self._pressure_update(fields, coeffs, divergence, damping, region.subdomain)

    def _pressure_update(self, fields, coeffs, divergence, damping, subdomain) -> list[Eq]:
        """p^{n+1} and zeta^{n+1} from ``divergence`` (div v^{n+1/2}) on ``subdomain``."""
        eqs, p = [], fields["p"]
        memory = [fields[f"zeta{l}"] for l in range(self.n_memory)]
        rhs = p - coeffs["mod_dt"] * divergence
        if self.memory_layout == "uniform":
            mixed = sum(coeffs[f"mcoef{l}"] * z for l, z in enumerate(memory))
            rhs = p - coeffs["mod_dt"] * (divergence - mixed)
        elif self.memory_layout == "separable":
            mixed = sum(coeffs[f"mcoef{l}"] * z for l, z in enumerate(memory))
            rhs = rhs + coeffs["mem_dt"] * mixed
        elif memory:
            rhs = rhs + sum(coeffs[f"mem_dt{l}"] * z for l, z in enumerate(memory))
        eqs.append(Eq(p.forward, damping * rhs, subdomain=subdomain))
        for l, z in enumerate(memory):
            update = coeffs[f"zalpha{l}"] * z + coeffs[f"zbeta{l}"] * divergence
            eqs.append(Eq(z.forward, update, subdomain=subdomain))
        return eqs

    def injections(self, source: Source, cell_volume: float) -> list[Injection]:
        if source.kind is SourceKind.PRESSURE:
            return [Injection("p", "pressure", self.dt / cell_volume, 0.5)]
        if source.kind is SourceKind.MOMENT:
            m = np.asarray(source.moment)
            if not np.allclose(m, m[0, 0] * np.eye(m.shape[0])):
                raise ValueError(
                    "the viscoacoustic physics only accepts isotropic moment tensors "
                    "(explosions); use the viscoelastic physics for a general moment tensor"
                )
            return [Injection("p", "pressure", m[0, 0] * self.dt / cell_volume, 0.5)]
        rho = self._value_at(self.model.rho, source.position)
        out = []
        for a, f in zip(self.axes, source.direction, strict=True):
            if f != 0.0:
                scale = f * self.dt / (rho * cell_volume)
                out.append(Injection(VELOCITY_NAMES[a], "velocity", scale, 0.0))
        return out

    def _value_at(self, array: np.ndarray, position) -> float:
        grid = self.model.grid
        idx = [
            int(np.clip(round((c - o) / h), 0, n - 1))
            for c, o, h, n in zip(position, grid.origin, grid.spacing, grid.shape, strict=True)
        ]
        return float(array[tuple(idx)])

    def record(self, fields: dict, component: Component):
        if component is Component.P:
            return fields["p"]
        name = component.value
        if name not in fields:
            raise ValueError(f"component {name} does not exist in {len(self.axes)}-D")
        taps = self.velocity_taps(self.axes.index(name[1]))
        if taps is None:
            return 0.5 * (fields[name] + fields[name].forward)
        z = len(self.axes) - 1
        return sum(0.5 * w * shifted(fields[name], z, o, slot) for o, w in taps for slot in (0, 1))

    def velocity_taps(self, axis: int) -> list[tuple[int, float]] | None:
        """(storage offset, weight) of the staggered points a velocity record along ``axis``
        reads at a node with a free surface (v_z, one-sided from the 4 half rows below); None:
        Devito's two-point mean."""
        if self.config.free_surface and axis == len(self.axes) - 1:
            return list(zip(range(4), ONE_SIDED_NODE_WEIGHTS, strict=True))
        return None

    def velocity_bounds(self) -> tuple[float, float]:
        v_unrelaxed = np.sqrt(self.m_unrelaxed / self.model.rho)
        return float(self.model.vp.min()), float(v_unrelaxed.max())

    @staticmethod
    def wavefield_arrays(ndim: int) -> int:
        """Pressure and velocity per axis."""
        return 1 + ndim

    @staticmethod
    def replay_frame_arrays(ndim: int, attenuating: bool) -> int:
        """p^n, w_M and, with attenuation, w_Q (:mod:`.adjoint`)."""
        return 3 if attenuating else 2

    def adjoint(self) -> ViscoacousticAdjoint:
        """The exact discrete adjoint (:mod:`.adjoint`)."""
        return ViscoacousticAdjoint(self)

    def inverse_stages(self, fields: dict, coeffs: dict, interiors: dict) -> list[Stage]:
        """The inverse step (:mod:`.inverse_step`; memory variables included)."""
        return inverse_stages(self, fields, coeffs, interiors)
