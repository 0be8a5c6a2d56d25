"""Exact discrete adjoint of the viscoacoustic scheme and its coefficient gradients.

The forward step n (see :mod:`.rheology`), written on the whole grid (the C-PML terms are
zero where a region omits them, because the profiles ``a`` vanish there):

    psi_pa' = bh_a psi_pa + ah_a G_a p                       (half nodes of axis a)
    v_a'    = s_va (v_a - buoy_h (G_a p + psi_pa'))
    psi_va' = b_a psi_va + a_a D_a v_a'
    div     = sum_a (D_a v_a' + psi_va')
    p'      = s_p (p - A div + sum_l B_l zeta_l)
    zeta_l' = alpha_l zeta_l + beta_l div

with G_a / D_a the staggered derivatives node->half / half->node (``D_a^T = -G_a``), ``s`` the
sponge factors (1 with C-PML), ``buoy_h`` the buoyancy averaged to the half node. The adjoint
step is its exact transpose, applied in reverse order; with ^ the adjoint of a variable, primes
the step-(n+1) values, and no prime the step-n values it produces:

    P       = s_p p^'
    adiv    = sum_l beta_l zeta^_l' - A P
    zeta^_l = alpha_l zeta^_l' + B_l P
    psi^_va = b_a (psi^_va' + adiv)
    E_a     = adiv + a_a (psi^_va' + adiv)                   (nodes)
    v^_a    = s_va (v^_a' - G_a E_a)
    W_a     = buoy_h v^_a
    psi^_pa = bh_a (psi^_pa' - W_a)
    F_a     = -W_a + ah_a (psi^_pa' - W_a)                   (half nodes)
    p^      = P - sum_a D_a F_a  (+ the adjoint source of the receivers that read p^n)

It runs backwards in time with the eigenvalues of the forward step (so it is as stable and as
attenuating as the forward). The model enters the pressure update through A and B_l, which are
both proportional to the elastic modulus M = rho vp^2 and depend on Q; so the replay buffers,
per step, p^n and the two sensitivities of the pressure increment

    w_M = -A div + sum_l B_l zeta_l                       (d/d ln M)
    w_Q = -dA/dQ div + sum_l dB_l/dQ zeta_l               (d/dQ, mechanisms fixed)

(div = div v^{n+1/2} without the C-PML terms: kernels are reported on the physical domain),
and the gradients accumulate in the adjoint's loop nest:

    dchi/d ln M = sum_n P w_M,   dchi/dQ = sum_n P w_Q,   dchi/dbuoy_h = -sum_n v^_a (G_a p^n)

Three frames per step and 2 + d accumulators, whatever the number of mechanisms. A free surface
(pressure release) is transposed by corrections on the top rows (:mod:`.surface_adjoint`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from devito import Eq

from anelastic.acquisition import Component
from anelastic.physics.adjoint import (
    AFTER_STEP,
    COEFFICIENT_STEP,
    STAGGERED_AFTER_STEP,
    AdjointScheme,
    on_regions,
    on_subdomain,
)
from anelastic.physics.averaging import node_buoyancy_gradient
from anelastic.physics.base import (
    VELOCITY_NAMES,
    BoundaryKind,
    CoefficientSpec,
    FieldRole,
    FieldSpec,
)
from anelastic.physics.stencils import (
    at,
    derivative_at_half,
    derivative_at_node,
    devito_staggered_weights,
)
from anelastic.physics.viscoacoustic.surface_adjoint import PressureReleaseAdjoint

if TYPE_CHECKING:
    from anelastic.physics.viscoacoustic.rheology import Viscoacoustic


class ViscoacousticAdjoint(PressureReleaseAdjoint, AdjointScheme):
    """Adjoint stencils of a :class:`~anelastic.physics.viscoacoustic.Viscoacoustic` rheology."""

    def __init__(self, physics: Viscoacoustic) -> None:
        super().__init__(physics)
        self.free_surface = physics.config.free_surface
        self.axes = physics.axes
        self.n_memory = physics.n_memory
        # The very numbers Devito writes into the forward code: the transpose is then exact.
        self.weights = devito_staggered_weights(physics.config.space_order // 2)
        self.cpml = physics.config.boundary is BoundaryKind.CPML and physics.config.pml_width > 0
        # One Q everywhere: the Q-derivatives are constants times A (see replay_coefficient_specs).
        self.uniform = physics.memory_layout == "uniform"

    # --- declarations --------------------------------------------------------------------
    def buffer_specs(self) -> tuple[FieldSpec, ...]:
        """Forward quantities the adjoint reads at each step (node fields): p^n, w_M and (with
        attenuation) w_Q of the module docstring."""
        order = self.physics.config.space_order
        specs = [
            FieldSpec("p", (), FieldRole.WAVEFIELD, order),
            FieldSpec("w_mod", (), space_order=0),
        ]
        if self.n_memory:
            specs.append(FieldSpec("w_q", (), space_order=0))
        return tuple(specs)

    def replay_coefficient_specs(self) -> tuple[CoefficientSpec, ...]:
        """dA/dQ and dB_l/dQ for w_Q, by central differences of ``scheme_coefficients``
        (float64). With one Q everywhere they are constants times A: ``dq_mod = dlnA/dQ``,
        ``dq_mem_l = (dB_l/dQ) / A``; otherwise arrays ``dA/dQ``, ``dB_l/dQ``."""
        if not self.n_memory:
            return ()
        physics, model = self.physics, self.physics.model
        q = np.asarray(model.qp, dtype=np.float64)
        step = COEFFICIENT_STEP * q
        plus = physics.scheme_coefficients(model.rho, model.vp, q + step)
        minus = physics.scheme_coefficients(model.rho, model.vp, q - step)
        d_mod = (plus["mod_dt"] - minus["mod_dt"]) / (2 * step)
        d_mem = (plus["mem_dt"] - minus["mem_dt"]) / (2 * step)
        if self.uniform:
            a = physics.scheme_coefficients(model.rho, model.vp, q)["mod_dt"]
            specs = [CoefficientSpec("dq_mod", np.array(np.mean(d_mod / a)))]
            specs += [
                CoefficientSpec(f"dq_mem{l}", np.array(np.mean(d_mem[l] / a)))
                for l in range(self.n_memory)
            ]
            return tuple(specs)
        specs = [CoefficientSpec("dq_mod", d_mod)]
        specs += [CoefficientSpec(f"dq_mem{l}", d_mem[l]) for l in range(self.n_memory)]
        return tuple(specs)

    def adjoint_specs(self) -> tuple[FieldSpec, ...]:
        """The adjoint state (time functions), one field per forward state field."""
        specs = [FieldSpec("adj_p")]
        specs += [FieldSpec(f"adj_{VELOCITY_NAMES[a]}", (a,)) for a in self.axes]
        specs += [FieldSpec(f"adj_zeta{l}", (), FieldRole.MEMORY, 0) for l in range(self.n_memory)]
        if self.cpml:
            specs += [FieldSpec(f"adj_psi_p{a}", (a,), FieldRole.BOUNDARY, 0) for a in self.axes]
            specs += [FieldSpec(f"adj_psi_v{a}", (), FieldRole.BOUNDARY) for a in self.axes]
        return tuple(specs)

    def temporary_specs(self) -> tuple[FieldSpec, ...]:
        """Per-step intermediates read at neighbouring points (plain Functions)."""
        specs = [FieldSpec("tmp_div")]
        specs += [FieldSpec(f"tmp_flux_{a}", (a,)) for a in self.axes]
        return tuple(specs)

    def gradient_specs(self) -> tuple[FieldSpec, ...]:
        """Accumulated gradients: dchi/d ln M, dchi/dQ (nodes), dchi/dbuoy_h (half nodes)."""
        specs = [FieldSpec("grad_mod", (), space_order=0)]
        if self.n_memory:
            specs.append(FieldSpec("grad_q", (), space_order=0))
        specs += [FieldSpec(f"grad_buoy_{a}", (a,), space_order=0) for a in self.axes]
        return tuple(specs)

    def adjoint_sources(self, component: Component) -> list[tuple]:
        """(adjoint field, weight, placement, receiver offset [ndim] m) per injection.

        Pressure receivers read p^n: their source enters p^ after step n. A velocity receiver
        reads (v^{n-1/2} + v^{n+1/2}) / 2, each averaged from its staggered points to the
        nodes (Devito's two-point mean) and interpolated there; by the translation invariance
        of linear interpolation that is the mean of the staggered field's own interpolation
        half a cell before and after the receiver along the staggered axis. Its transpose is
        two injections of half the source at the receiver -+ h/2 into v^, after step n (which
        produces the adjoint of v^{n-1/2}, read by samples n - 1 and n: the kernel pass
        averages the residual over those two samples and puts the last sample's half into
        the adjoint state before the first step). Under a free surface v_z is read from its
        4 half rows below the node (:meth:`~.rheology.Viscoacoustic.velocity_taps`): one
        injection per tap, at the receiver + (o + 1/2) h."""
        if component is Component.P:
            return [("adj_p", 1.0, AFTER_STEP, None)]
        axis = component.value[1]
        if axis not in self.axes:
            raise ValueError(f"component {component.value} does not exist in {len(self.axes)}-D")
        i = self.axes.index(axis)
        h = self.physics.model.grid.spacing[i]
        name = f"adj_{VELOCITY_NAMES[axis]}"
        taps = self.physics.velocity_taps(i)
        if taps is not None:  # v_z under a free surface: one injection per tap (weight w)
            offsets = [
                tuple((o + 0.5) * h * (k == i) for k in range(len(self.axes))) for o, _ in taps
            ]
            return [
                (name, w, STAGGERED_AFTER_STEP, offset)
                for (_, w), offset in zip(taps, offsets, strict=True)
            ]
        half = 0.5 * h
        return [
            (
                name,
                0.5,
                STAGGERED_AFTER_STEP,
                tuple(sign * half * (k == i) for k in range(len(self.axes))),
            )
            for sign in (-1.0, 1.0)
        ]

    # --- equations -----------------------------------------------------------------------
    def buffer_equations(
        self, fields: dict, buffers: dict, grid, coeffs: dict, regions=None
    ) -> list[Eq]:
        """The buffer frame of step n (p^n, w_M, w_Q), written after the step's updates;
        ``coeffs`` holds the scheme's and ``replay_coefficient_specs``' coefficients.
        ``regions``: the forward's regions, so Devito fuses the copies into the pressure
        update's loop nests (the fields are read once); None: one whole-grid nest."""
        div = 0
        for i, a in enumerate(self.axes):
            v = fields[VELOCITY_NAMES[a]]
            h = grid.dimensions[i].spacing
            div += derivative_at_node(lambda k, v=v, i=i: at(v, i, k, 1), self.weights, h)
        frame = [(buffers["p"], fields["p"]), *self._sensitivities(fields, buffers, coeffs, div)]
        eqs = on_regions([Eq(lhs, rhs) for lhs, rhs in frame], regions)
        if self.free_surface:
            eqs += self.surface_buffer_equations(fields, buffers, coeffs, grid)
        return eqs

    def _sensitivities(self, fields, buffers, coeffs, div) -> list[tuple]:
        """(buffer, expression) of w_M and (with attenuation) w_Q from ``div``."""
        memory = [fields[f"zeta{l}"] for l in range(self.n_memory)]
        w_mod = -coeffs["mod_dt"] * div + sum(
            self.physics.memory_coefficient(coeffs, l) * z for l, z in enumerate(memory)
        )
        frame = [(buffers["w_mod"], w_mod)]
        if memory:
            terms = sum(coeffs[f"dq_mem{l}"] * z for l, z in enumerate(memory))
            w_q = terms - coeffs["dq_mod"] * div
            frame.append((buffers["w_q"], coeffs["mod_dt"] * w_q if self.uniform else w_q))
        return frame

    def seam_layout(self, grid, pads):
        """Regions for the transposed velocity update: the forward's absorbing strips widened
        by the stencil half-width, so the interior band never reads C-PML terms (a band point
        next to a strip receives the transposed C-PML contributions of its neighbours)."""
        from anelastic.physics.boundary import AbsorbingLayout

        r = self.physics.config.space_order // 2
        last = len(pads) - 1
        widened = tuple(
            (lo + r if lo else 0, hi + r if hi else 0) if k < last else (lo, hi)
            for k, (lo, hi) in enumerate(pads)
        )
        return AbsorbingLayout(grid, widened, self.physics.config.boundary, prefix="seam")

    def adjoint_equations(
        self, adj, tmp, buffers, grads, coeffs, layout, halo_profiles, seams=None
    ) -> list:
        """One adjoint step (loop index t: slot t holds step n+1's adjoint, ``.backward``
        receives step n's), gradients included; the adjoint source is injected after.

        ``halo_profiles``: copies of the node C-PML profiles ``cpmla_<axis>`` with a stencil
        halo (the transposed derivative reads them at neighbouring points). ``seams``: the
        :meth:`seam_layout` (None: C-PML terms everywhere, the simplest correct form)."""
        pressure = self._sponge(layout, ()) * adj["adj_p"]
        eqs = self._pressure_step(adj, tmp, buffers, grads, coeffs, layout, seams, pressure)
        if self.free_surface:
            eqs += self.surface_row_equations(adj, tmp, grads, buffers, coeffs, layout, pressure)
        eqs += self._velocity_step(adj, tmp, buffers, grads, coeffs, layout, halo_profiles, seams)
        flux = sum(
            derivative_at_node(
                lambda k, i=i, a=a: at(tmp[f"tmp_flux_{a}"], i, k), self.weights, d.spacing
            )
            for i, (a, d) in enumerate(zip(self.axes, layout.grid.dimensions, strict=True))
        )
        eqs.append(Eq(adj["adj_p"].backward, pressure - flux))
        if self.free_surface:
            eqs += self.surface_pressure_equations(adj, tmp, layout, pressure)
        return eqs

    def _pressure_step(self, adj, tmp, buffers, grads, coeffs, layout, seams, pressure):
        """The transposed pressure and memory updates (adiv, zeta^, the M and Q gradients,
        psi^_v); ``pressure``: P = s_p p^'."""
        physics = self.physics
        pointwise = [Eq(tmp["tmp_div"], self._adjoint_divergence(adj, coeffs, pressure))]
        for l in range(self.n_memory):
            z = adj[f"adj_zeta{l}"]
            update = coeffs[f"zalpha{l}"] * z + physics.memory_coefficient(coeffs, l) * pressure
            pointwise.append(Eq(z.backward, update))
        pointwise.append(Eq(grads["grad_mod"], grads["grad_mod"] + pressure * buffers["w_mod"]))
        if self.n_memory:
            pointwise.append(Eq(grads["grad_q"], grads["grad_q"] + pressure * buffers["w_q"]))
        if not self.cpml or seams is None:
            return pointwise + self._memory_psi(adj, tmp, layout, None)
        # Per forward region, the pointwise updates and then the psi^_v of that region: one
        # loop nest per region reads adiv once (measured on P1: 13 -> 10 parallel regions).
        eqs = []
        for region in layout.regions:
            eqs += on_subdomain(pointwise, region.subdomain)
            eqs += self._memory_psi(adj, tmp, layout, region)
        return eqs

    def _velocity_step(self, adj, tmp, buffers, grads, coeffs, layout, halo_profiles, seams):
        """The transposed velocity updates, their fluxes F_a and the buoyancy gradients, on
        the seam regions (None: the whole grid)."""
        # Region-major: both axes of one region next to each other, so Devito fuses them into
        # one loop nest per region (axis-major, the strips took one nest per axis and side).
        updates, fluxes = [], []
        for region in seams.regions if seams is not None else [None]:
            for i, a in enumerate(self.axes):
                damped = self.cpml and (region is None or region.damps(i))
                where = region.subdomain if region is not None else None
                updates.append(
                    self._velocity_update(i, a, adj, tmp, layout, halo_profiles, damped, where)
                )
                fluxes.append(
                    self._velocity_flux(
                        i, a, adj, tmp, buffers, grads, coeffs, layout, damped, where
                    )
                )
        if not self.free_surface:
            return [e for u, f in zip(updates, fluxes, strict=True) for e in u + f]
        # The top rows' v^ is corrected before any flux reads it.
        eqs = [e for group in updates for e in group]
        eqs += self.surface_velocity_equations(adj, tmp, layout)
        eqs += [e for group in fluxes for e in group]
        return eqs + self.surface_gradient_equations(adj, buffers, grads, layout)

    def _adjoint_divergence(self, adj, coeffs, pressure):
        mixed = sum(coeffs[f"zbeta{l}"] * adj[f"adj_zeta{l}"] for l in range(self.n_memory))
        return mixed - coeffs["mod_dt"] * pressure

    def _memory_psi(self, adj, tmp, layout, region) -> list[Eq]:
        """psi^_v updates (C-PML only) on ``region``, for each axis it damps (None: every axis
        on the whole grid; correct too, the profiles ``b`` vanish where nothing damps)."""
        if not self.cpml:
            return []
        eqs = []
        for i, a in enumerate(self.axes):
            if region is None or region.damps(i):
                psi = adj[f"adj_psi_v{a}"]
                b = layout.profiles[f"cpmlb_{a}"]
                where = region.subdomain if region is not None else None
                eqs.append(Eq(psi.backward, b * (psi + tmp["tmp_div"]), subdomain=where))
        return eqs

    def _velocity_update(self, i, a, adj, tmp, layout, halo_profiles, damped, where) -> list[Eq]:
        """Transposed velocity update along axis ``a`` (index ``i``) on the subdomain ``where``
        (None: everywhere); ``damped``: with the C-PML terms of ``a``."""
        h = layout.grid.dimensions[i].spacing
        v = adj[f"adj_{VELOCITY_NAMES[a]}"]
        adiv = tmp["tmp_div"]
        if damped:
            prof_a = halo_profiles[f"cpmla_{a}"]
            psi_v = adj[f"adj_psi_v{a}"]

            def node_value(k):
                # a x apart from x: Devito would round (1 + a) to the profile's float32.
                a_k = at(prof_a, i, k)
                return at(adiv, i, k) + a_k * at(adiv, i, k) + a_k * at(psi_v, i, k)
        else:

            def node_value(k):
                return at(adiv, i, k)

        gradient = derivative_at_half(node_value, self.weights, h)
        return [Eq(v.backward, self._sponge(layout, (a,)) * (v - gradient), subdomain=where)]

    def _velocity_flux(self, i, a, adj, tmp, buffers, grads, coeffs, layout, damped, where):
        """The flux F_a of v^_a (through the C-PML where ``damped``) and the buoyancy gradient
        of axis ``a`` on ``where``."""
        h = layout.grid.dimensions[i].spacing
        v = adj[f"adj_{VELOCITY_NAMES[a]}"]
        eqs, buoy = [], coeffs["buoy_dt"]
        weight = 0.5 * (at(buoy, i, 0) + at(buoy, i, 1)) * v.backward
        flux = tmp[f"tmp_flux_{a}"]
        if damped:
            psi_p = adj[f"adj_psi_p{a}"]
            ah = layout.profiles[f"cpmlah_{a}"]
            bh = layout.profiles[f"cpmlbh_{a}"]
            eqs.append(Eq(psi_p.backward, bh * (psi_p - weight), subdomain=where))
            eqs.append(Eq(flux, -weight - ah * weight + ah * psi_p, subdomain=where))
        else:
            eqs.append(Eq(flux, -weight, subdomain=where))
        grad_p = derivative_at_half(lambda k: at(buffers["p"], i, k), self.weights, h)
        g = grads[f"grad_buoy_{a}"]
        eqs.append(Eq(g, g - v.backward * grad_p, subdomain=where))
        return eqs

    def _sponge(self, layout, staggered: tuple[str, ...]):
        if self.physics.config.boundary is BoundaryKind.SPONGE:
            return layout.sponge_factor(staggered)
        return 1

    # --- kernels -------------------------------------------------------------------------
    def parameter_gradients(self, grads: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """dchi/d(rho, vp, qp) per cell [*padded_shape] from the accumulated gradients.

        M = rho vp^2 gives ``dchi/dvp = 2 g_M / vp`` and ``dchi/drho = g_M / rho + g_buoy
        dbuoy/drho`` with ``buoy_dt = dt / rho``; ``dchi/dbuoy`` at node i collects half of the
        half-node gradients at i - 1/2 and i + 1/2 of every axis (the forward averages).
        """
        model = self.physics.model
        rho = np.asarray(model.rho, dtype=np.float64)
        vp = np.asarray(model.vp, dtype=np.float64)
        g_m = grads["grad_mod"]
        g_buoy = node_buoyancy_gradient(grads, self.axes)
        g_q = grads["grad_q"] if self.n_memory else np.zeros_like(g_m)
        return {
            "rho": g_m / rho - g_buoy * self.physics.dt / rho**2,
            "vp": 2.0 * g_m / vp,
            "qp": g_q,
        }
