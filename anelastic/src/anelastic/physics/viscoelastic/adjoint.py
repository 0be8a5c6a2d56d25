"""Exact discrete adjoint of the viscoelastic velocity-stress scheme and its coefficient gradients.

The forward step n (see :mod:`.rheology`), with D / G the staggered derivatives half->node /
node->half (``D^T = -G``), ``s`` the sponge factors (1 with C-PML), ``bh_a`` the buoyancy averaged
to v_a's half node, and every derivative ``q`` of an absorbing region replaced by ``q + psi'``
with ``psi' = b psi + a q`` (the region's own profiles; a region that does not damp an axis
has no such term, which the adjoint reproduces region by region):

    velocity  q_ab  = d sigma_ab / d b at v_a              v_a' = s_a (v_a + bh_a sum_b q_ab)
    stress    E_a   = D_a v_a',  S_ab = G_b v_a' + G_a v_b',  theta = sum_a E_a
              sigma_aa' = s (sigma_aa + K theta + M2 (E_a - theta/d) - sum_l h_l (Rk_l + Rd_a,l))
              sigma_ab' = s (sigma_ab + M_ab S_ab - sum_l h_l R_ab,l)
              Rk_l' = alpha_l Rk_l + ck_l theta,  Rd_a,l' = alpha_l Rd_a,l + cd_l (E_a - theta/d)
              R_ab,l' = alpha_l R_ab,l + cs_ab,l S_ab

(``Rd_last = -sum`` of the others, ``h_l = (1 + alpha_l)/2``). The adjoint step applies the
transposed sub-updates in reverse order; with ^ the adjoint, primes the step-(n+1) values it
reads (slot t) and no prime the step-n values it writes (``.backward``), ``P = s sigma^'``:

    E^_a   = K sum_b P_bb + sum_l ck_l Rk^_l' + Pd_a - mean_b Pd_b,
             Pd_a = M2 P_aa + sum_l cd_l Rd^_a,l'                       (nodes)
    S^_ab  = M_ab P_ab + sum_l cs_ab,l R^_ab,l'
    R^     = alpha R^' - h (the stress terms they entered, e.g. Rk^_l = alpha Rk^_l' - h sum P)
    v^_a   = s_a (v^_a' - G_a e^_a - sum_{b!=a} D_b g^_ab)   e^, g^: E^, S^ through the C-PML
    q^_ab  = bh_a v^_a through the C-PML        sigma^_aa = P_aa - D_a q^_aa
    sigma^_ab = P_ab - G_b q^_ab - G_a q^_ba  (+ the adjoint source of pressure receivers)

where "through the C-PML" is ``x -> x + a (psi^' + x)`` with ``psi^ = b (psi^' + x)``. The
values e^, g^, q^ are read at neighbouring points, so they go through temporaries (with a halo;
the C-PML is applied before they are stored, so no profile is read off its point). Gradients of
the misfit w.r.t. the coefficients accumulate in the same loop nest from the replay buffer
(forward strain rates E_a, S_ab of v^{n+1/2} and divergences F_a of sigma^n, C-PML terms
dropped: kernels are reported on the physical domain, where psi = 0):

    dchi/dK = sum_n theta sum_a P_aa     dchi/dM2 = sum_n sum_a P_aa dev_a
    dchi/dM_ab = sum_n P_ab S_ab          dchi/dbh_a = sum_n v^_a F_a
    dchi/dck_l = sum_n Rk^_l' theta,  dchi/dcd_l = sum_n sum_a Rd^_a,l' dev_a,
    dchi/dcs_ab,l = sum_n R^_ab,l' S_ab

Every stencil uses the weights of Devito's generated forward code (rounded to 9 digits, see
:func:`devito_staggered_weights`): the adjoint step is then the transpose of the forward step to
rounding (dot-product test, 1e-16). The free surface (stress imaging, one-sided stencils) is
transposed by corrections on the top rows (:mod:`.surface_adjoint`).
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
from anelastic.physics.averaging import (
    corner_mean,
    corner_transpose,
    harmonic_mean,
    harmonic_mean_transpose,
    node_buoyancy_gradient,
)
from anelastic.physics.base import BoundaryKind, FieldSpec
from anelastic.physics.stencils import (
    at,
    derivative_at_half,
    derivative_at_node,
    devito_staggered_weights,
)
from anelastic.physics.viscoelastic.state import sponge_name
from anelastic.physics.viscoelastic.surface_adjoint import FreeSurfaceAdjoint

if TYPE_CHECKING:
    from anelastic.physics.viscoelastic.rheology import Viscoelastic

PARAMETERS = ("rho", "vp", "vs", "qp", "qs")


class ViscoelasticAdjoint(FreeSurfaceAdjoint, AdjointScheme):
    """Adjoint stencils of a :class:`~anelastic.physics.viscoelastic.Viscoelastic` rheology."""

    def __init__(self, physics: Viscoelastic) -> None:
        super().__init__(physics)
        self.free_surface = physics.config.free_surface
        self.axes = physics.axes
        self.ndim = physics.ndim
        self.pairs = physics.pairs
        self.n_memory = physics.n_memory
        self.bulk = physics.bulk_memory
        self.shear = physics.shear_memory
        self.weights = devito_staggered_weights(physics.config.space_order // 2)
        self.cpml = physics.config.boundary is BoundaryKind.CPML and physics.config.pml_width > 0

    # --- names ---------------------------------------------------------------------------
    def _pair(self, a: str, b: str) -> tuple[str, str]:
        return (a, b) if self.axes.index(a) < self.axes.index(b) else (b, a)

    def _g_name(self, a: str, b: str) -> str:
        """Temporary of the adjoint of dv_a/db at the (a, b) point (one per pair without
        C-PML, where dv_a/db and dv_b/da have the same adjoint)."""
        return f"tmp_g_{a}{b}" if self.cpml else "tmp_g_{}{}".format(*self._pair(a, b))

    def _q_name(self, a: str, b: str) -> str:
        """Temporary of the adjoint of d sigma_ab/db at v_a (one per v_a without C-PML)."""
        return f"tmp_q_{a}{b}" if self.cpml else f"tmp_q_{a}"

    def _derivative(self, f, axis: int, h, to_half: bool, time_offset: int = 0):
        """Staggered derivative of ``f`` along ``axis`` (explicit accesses): node -> half
        (``to_half``) or half -> node; ``time_offset`` selects f's slot (t + offset)."""
        stencil = derivative_at_half if to_half else derivative_at_node
        return stencil(lambda k: at(f, axis, k, time_offset), self.weights, h)

    # --- declarations --------------------------------------------------------------------
    def buffer_specs(self) -> tuple[FieldSpec, ...]:
        """Forward quantities of step n: F_a = (div sigma^n)_a at v_a, E_a = d v_a^{n+1/2}/da
        (nodes), S_ab = dv_a/db + dv_b/da (at the (a, b) point): d (d + 3) / 2 arrays a frame."""
        specs = [FieldSpec(f"div_{a}", (a,), space_order=0) for a in self.axes]
        specs += [FieldSpec(f"strain_{a}", (), space_order=0) for a in self.axes]
        specs += [FieldSpec(f"shear_{a}{b}", (a, b), space_order=0) for a, b in self.pairs]
        return tuple(specs)

    def adjoint_specs(self) -> tuple[FieldSpec, ...]:
        """One adjoint time function ``adj_<name>`` per forward state field (same staggering)."""
        return tuple(
            FieldSpec(f"adj_{s.name}", s.staggered, s.role, s.space_order)
            for s in self.physics.field_specs()
        )

    def temporary_specs(self) -> tuple[FieldSpec, ...]:
        """Per-step adjoint strain rates (e^, g^) and stress derivatives (q^), read at
        neighbouring points (physics-order halo)."""
        specs = [FieldSpec(f"tmp_e_{a}") for a in self.axes]
        names = {}
        for a, b in self.pairs:
            for u, w in ((a, b), (b, a)):
                names[self._g_name(u, w)] = (a, b)
        for a in self.axes:
            for b in self.axes:
                names[self._q_name(a, b)] = (a,)
        specs += [FieldSpec(n, stag) for n, stag in names.items()]
        return tuple(specs)

    def gradient_specs(self) -> tuple[FieldSpec, ...]:
        """Accumulated dchi/d(coefficient) at each coefficient's own position."""
        specs = [FieldSpec(f"grad_buoy_{a}", (a,), space_order=0) for a in self.axes]
        specs += [FieldSpec("grad_kappa", (), space_order=0)]
        specs += [FieldSpec("grad_mu2", (), space_order=0)]
        specs += [FieldSpec(f"grad_mu_{a}{b}", (a, b), space_order=0) for a, b in self.pairs]
        for l in range(self.n_memory):
            if self.bulk:
                specs.append(FieldSpec(f"grad_rkappa{l}", (), space_order=0))
            if self.shear:
                specs.append(FieldSpec(f"grad_rdev{l}", (), space_order=0))
                specs += [
                    FieldSpec(f"grad_rshear_{a}{b}{l}", (a, b), space_order=0)
                    for a, b in self.pairs
                ]
        return tuple(specs)

    def adjoint_sources(self, component: Component) -> list[tuple]:
        """(adjoint field, weight, placement, receiver offset [ndim] m) per injection.

        Pressure receivers read p = -tr(sigma) / d at step n: each normal stress gets -1/d of
        their source after the step. A velocity receiver reads, at the nodes around it, the
        weighted staggered points ``v[i + o]`` (the record's taps), averaged over v^{n-1/2}
        and v^{n+1/2}, interpolated bilinearly by Devito: by the translation invariance of
        linear interpolation, each tap is the staggered field's own interpolation at the
        receiver + (o + 1/2) h. Its transpose: one injection per tap with the tap's weight at
        that point, into v^ after step n (the adjoint of v^{n-1/2}; the kernel pass averages
        the residual over the two samples that read it, as for the viscoacoustic physics)."""
        if component is Component.P:
            return [(f"adj_s{a}{a}", -1.0 / self.ndim, AFTER_STEP, None) for a in self.axes]
        axis = component.value[1]
        if axis not in self.axes:
            raise ValueError(f"component {component.value} does not exist in {self.ndim}-D")
        i = self.axes.index(axis)
        h = self.physics.model.grid.spacing[i]
        return [
            (
                f"adj_v{axis}",
                w,
                STAGGERED_AFTER_STEP,
                tuple((o + 0.5) * h * (k == i) for k in range(self.ndim)),
            )  # fmt: skip
            for o, w in self.physics.velocity_taps(i)
        ]

    # --- replay buffer -------------------------------------------------------------------
    def replay_coefficient_specs(self) -> tuple:
        """No model coefficients beyond the forward's are needed by the buffer."""
        return ()

    def seam_layout(self, grid, pads) -> None:
        """None: the C-PML is transposed region by region inside ``adjoint_equations``."""
        return None

    def buffer_equations(
        self, fields: dict, buffers: dict, grid, coeffs: dict | None = None, regions=None
    ) -> list[Eq]:
        """Copy F_a (from sigma^n, slot t), E_a and S_ab (from v^{n+1/2}, slot t + 1) into the
        buffer frame, after the forward step; C-PML terms are not included. ``coeffs`` (the
        interface of the viscoacoustic buffer) is not needed here; ``regions``: the forward's
        regions, so Devito fuses the frame into their stress nests (None: one whole-grid nest)."""
        h = dict(zip(self.axes, (d.spacing for d in grid.dimensions), strict=True))
        eqs = []
        for a in self.axes:
            div = 0
            for j, b in enumerate(self.axes):
                s = fields[self.physics.stress_name(a, b)]
                div += self._derivative(s, j, h[b], a == b)
            eqs.append(Eq(buffers[f"div_{a}"], div))
        for i, a in enumerate(self.axes):
            v = fields[f"v{a}"]
            strain = self._derivative(v, i, h[a], False, 1)
            eqs.append(Eq(buffers[f"strain_{a}"], strain))
        for a, b in self.pairs:
            i, j = self.axes.index(a), self.axes.index(b)
            va, vb = fields[f"v{a}"], fields[f"v{b}"]
            shear = self._derivative(va, j, h[b], True, 1) + self._derivative(vb, i, h[a], True, 1)
            eqs.append(Eq(buffers[f"shear_{a}{b}"], shear))
        eqs = on_regions(eqs, regions)
        if self.free_surface:  # the top rows as the surface equations computed them
            eqs += self.surface_buffer_equations(fields, buffers, coeffs, grid, h)
        return eqs

    # --- adjoint step --------------------------------------------------------------------
    def adjoint_equations(
        self, adj, tmp, buffers, grads, coeffs, layout, halo_profiles, seams=None
    ) -> list:
        """One adjoint step (loop index t: slot t holds step n+1's adjoint, ``.backward``
        receives step n's), gradients included; the adjoint source is injected after.
        ``halo_profiles`` is not needed (profiles are only read at their own points)."""
        weighted = self._weighted_stresses(adj, coeffs)
        normal, shear = self._strain_adjoints(adj, coeffs, weighted)
        # The memory variables and the stress gradients are pointwise: per forward region they
        # join the region's strain temporaries in one loop nest (the stresses read once).
        pointwise = self._memory_adjoint(adj, coeffs, weighted)
        pointwise += self._stress_gradients(adj, grads, buffers, weighted)
        eqs = []
        for subdomain, damped in self._regions(layout):
            eqs += self._strain_temporaries(adj, tmp, layout, subdomain, damped, normal, shear)
            eqs += on_subdomain(pointwise, subdomain)
        if self.free_surface:  # the surface row's strain, memory and K / M2 adjoints
            eqs += self.surface_strain_equations(adj, tmp, coeffs, layout, weighted, normal)
            eqs += self.surface_memory_equations(adj, coeffs, layout, weighted)
            eqs += self.surface_gradient_equations(adj, grads, buffers, coeffs, layout, weighted)
        eqs += self._velocity_adjoint(adj, tmp, coeffs, layout)
        if self.free_surface:
            eqs += self.surface_velocity_equations(adj, tmp, coeffs, layout)
        for a in self.axes:
            g = grads[f"grad_buoy_{a}"]
            eqs.append(Eq(g, g + adj[f"adj_v{a}"].backward * buffers[f"div_{a}"]))
        for subdomain, damped in self._regions(layout):
            eqs += self._stress_temporaries(adj, tmp, coeffs, layout, subdomain, damped)
        eqs += self._stress_adjoint(adj, tmp, layout, weighted)
        if self.free_surface:
            eqs += self.surface_stress_equations(adj, tmp, layout, weighted)
        return eqs

    def _regions(self, layout) -> list[tuple[object, tuple[int, ...]]]:
        """(subdomain, damped axes) of the forward's regions (the whole grid without C-PML)."""
        if not self.cpml:
            return [(None, ())]
        return [(r.subdomain, r.damped_axes) for r in layout.regions]

    def _sponge(self, coeffs, staggered: tuple[str, ...]):
        if self.physics.config.boundary is BoundaryKind.SPONGE:
            return coeffs[sponge_name(staggered)]
        return 1

    def _weighted_stresses(self, adj, coeffs) -> dict:
        """P = s sigma^' for each stress: keys (a, a) and the pairs."""
        out = {(a, a): self._sponge(coeffs, ()) * adj[f"adj_s{a}{a}"] for a in self.axes}
        for a, b in self.pairs:
            out[(a, b)] = self._sponge(coeffs, (a, b)) * adj[f"adj_s{a}{b}"]
        return out

    def _strain_adjoints(self, adj, coeffs, weighted) -> tuple[dict, dict]:
        """E^_a (nodes) and S^_ab (pair points) before the C-PML (see the module docstring)."""
        trace = sum(weighted[(a, a)] for a in self.axes)
        theta = coeffs["kappa_dt"] * trace
        dev = {a: coeffs["mu2_dt"] * weighted[(a, a)] for a in self.axes}
        shear = {(a, b): coeffs[f"mu_dt_{a}{b}"] * weighted[(a, b)] for a, b in self.pairs}
        for l in range(self.n_memory):
            rates = self.physics.memory_rates(coeffs, l)
            if self.bulk:
                theta += rates["kappa"] * adj[f"adj_mem_kappa{l}"]
            if self.shear:
                for a in self.axes[:-1]:
                    dev[a] += rates["dev"] * adj[f"adj_mem_dev{a}{l}"]
                for a, b in self.pairs:
                    shear[(a, b)] += rates[(a, b)] * adj[f"adj_mem_{a}{b}{l}"]
        mean = sum(dev.values()) / self.ndim
        normal = {a: theta + dev[a] - mean for a in self.axes}
        return normal, shear

    def _through_cpml(self, value, psi_name, axis, half, damped, adj, layout, subdomain, eqs):
        """Adjoint of ``q + psi'`` (``psi' = b psi + a q``) given the adjoint ``value`` of the
        sum: returns q's adjoint and appends the psi^ update, where the region damps ``axis``."""
        if axis not in damped:
            return value
        tag, name = ("h" if half else ""), self.axes[axis]
        a_prof = layout.profiles[f"cpmla{tag}_{name}"]
        b_prof = layout.profiles[f"cpmlb{tag}_{name}"]
        psi = adj[f"adj_{psi_name}"]
        eqs.append(Eq(psi.backward, b_prof * (psi + value), subdomain=subdomain))
        return value + a_prof * (psi + value)

    def _strain_temporaries(self, adj, tmp, layout, subdomain, damped, normal, shear) -> list:
        eqs = []
        for i, a in enumerate(self.axes):
            value = self._through_cpml(
                normal[a], f"psi_v{a}_{a}", i, False, damped, adj, layout, subdomain, eqs
            )
            eqs.append(Eq(tmp[f"tmp_e_{a}"], value, subdomain=subdomain))
        for a, b in self.pairs:
            for u, w in ((a, b), (b, a)):
                if not self.cpml and (u, w) != (a, b):
                    continue
                k = self.axes.index(w)
                value = self._through_cpml(
                    shear[(a, b)], f"psi_v{u}_{w}", k, True, damped, adj, layout, subdomain, eqs
                )
                eqs.append(Eq(tmp[self._g_name(u, w)], value, subdomain=subdomain))
        return eqs

    def _memory_adjoint(self, adj, coeffs, weighted) -> list[Eq]:
        eqs, last = [], self.axes[-1]
        for l in range(self.n_memory):
            alpha, half = coeffs[f"malpha{l}"], coeffs[f"mhalf{l}"]
            terms = {}
            if self.bulk:
                terms[f"adj_mem_kappa{l}"] = sum(weighted[(a, a)] for a in self.axes)
            if self.shear:
                for a in self.axes[:-1]:
                    terms[f"adj_mem_dev{a}{l}"] = weighted[(a, a)] - weighted[(last, last)]
                for a, b in self.pairs:
                    terms[f"adj_mem_{a}{b}{l}"] = weighted[(a, b)]
            for name, stress in terms.items():
                r = adj[name]
                eqs.append(Eq(r.backward, alpha * r - half * stress))
        return eqs

    def _stress_gradients(self, adj, grads, buffers, weighted) -> list[Eq]:
        theta = sum(buffers[f"strain_{a}"] for a in self.axes)
        dev = {a: buffers[f"strain_{a}"] - theta / self.ndim for a in self.axes}
        updates = {
            "grad_kappa": theta * sum(weighted[(a, a)] for a in self.axes),
            "grad_mu2": sum(weighted[(a, a)] * dev[a] for a in self.axes),
        }
        for a, b in self.pairs:
            updates[f"grad_mu_{a}{b}"] = weighted[(a, b)] * buffers[f"shear_{a}{b}"]
        for l in range(self.n_memory):
            if self.bulk:
                updates[f"grad_rkappa{l}"] = adj[f"adj_mem_kappa{l}"] * theta
            if self.shear:
                updates[f"grad_rdev{l}"] = sum(
                    adj[f"adj_mem_dev{a}{l}"] * dev[a] for a in self.axes[:-1]
                )
                for a, b in self.pairs:
                    shear = buffers[f"shear_{a}{b}"]
                    updates[f"grad_rshear_{a}{b}{l}"] = adj[f"adj_mem_{a}{b}{l}"] * shear
        return [Eq(grads[name], grads[name] + value) for name, value in updates.items()]

    def _velocity_adjoint(self, adj, tmp, coeffs, layout) -> list[Eq]:
        """v^_a = s_a (v^_a' - G_a e^_a - sum_{b != a} D_b g^_ab) (whole grid)."""
        eqs = []
        h = dict(zip(self.axes, (d.spacing for d in layout.grid.dimensions), strict=True))
        for i, a in enumerate(self.axes):
            e = tmp[f"tmp_e_{a}"]
            flux = self._derivative(e, i, h[a], True)
            for j, b in enumerate(self.axes):
                if b != a:
                    g = tmp[self._g_name(a, b)]
                    flux += self._derivative(g, j, h[b], False)
            v = adj[f"adj_v{a}"]
            eqs.append(Eq(v.backward, self._sponge(coeffs, (a,)) * (v - flux)))
        return eqs

    def _stress_temporaries(self, adj, tmp, coeffs, layout, subdomain, damped) -> list[Eq]:
        """q^_ab = (bh_a v^_a) through the C-PML of d sigma_ab / db, at v_a."""
        eqs, buoy = [], coeffs["buoy_dt"]
        for i, a in enumerate(self.axes):
            # The forward interpolates the node buoyancy to v_a (2 points, halo value 0).
            value = 0.5 * (at(buoy, i, 0) + at(buoy, i, 1)) * adj[f"adj_v{a}"].backward
            for j, b in enumerate(self.axes):
                if not self.cpml and b != a:
                    continue
                psi = f"psi_{self.physics.stress_name(a, b)}_{b}"
                q = self._through_cpml(value, psi, j, a == b, damped, adj, layout, subdomain, eqs)
                eqs.append(Eq(tmp[self._q_name(a, b)], q, subdomain=subdomain))
        return eqs

    def _stress_adjoint(self, adj, tmp, layout, weighted) -> list[Eq]:
        """sigma^_aa = P_aa - D_a q^_aa; sigma^_ab = P_ab - G_b q^_ab - G_a q^_ba."""
        eqs = []
        h = dict(zip(self.axes, (d.spacing for d in layout.grid.dimensions), strict=True))
        for i, a in enumerate(self.axes):
            q = tmp[self._q_name(a, a)]
            flux = self._derivative(q, i, h[a], False)
            s = adj[f"adj_s{a}{a}"]
            eqs.append(Eq(s.backward, weighted[(a, a)] - flux))
        for a, b in self.pairs:
            i, j = self.axes.index(a), self.axes.index(b)
            qa, qb = tmp[self._q_name(a, b)], tmp[self._q_name(b, a)]
            flux = self._derivative(qa, j, h[b], True) + self._derivative(qb, i, h[a], True)
            s = adj[f"adj_s{a}{b}"]
            eqs.append(Eq(s.backward, weighted[(a, b)] - flux))
        return eqs

    # --- kernels -------------------------------------------------------------------------
    def parameter_gradients(self, grads: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """dchi/d(rho, vp, vs, qp, qs) per cell [*padded_shape] from the coefficient gradients.

        First to the node quantities of ``Viscoelastic.scheme_coefficients`` (the staggered
        coefficients are harmonic / arithmetic means of the 4 surrounding nodes, edge-replicated:
        their gradients are scattered back to those nodes exactly), then to each parameter by
        central differences in float64 at fixed relaxation mechanisms. Qp / Qs gradients are 0
        without memory variables (Q = inf everywhere)."""
        model = self.physics.model
        params = {name: np.asarray(getattr(model, name), dtype=np.float64) for name in PARAMETERS}
        base = self.physics.scheme_coefficients(*(params[n] for n in PARAMETERS))
        g_nodes = self._node_gradients(grads, base)
        out = {}
        for name in PARAMETERS:
            if name in ("qp", "qs") and not self.n_memory:
                out[name] = np.zeros_like(params[name])
                continue
            out[name] = self._chain(g_nodes, params, name)
        return out

    def _node_gradients(self, grads, base) -> dict[str, np.ndarray]:
        """dchi/d(node quantity) for each key of ``scheme_coefficients``."""
        g = {
            "buoy_dt": node_buoyancy_gradient(grads, self.axes),
            "kappa_dt": grads["grad_kappa"].astype(np.float64),
            "mu_dt": 2.0 * grads["grad_mu2"],
        }
        for a, b in self.pairs:
            i, j = self.axes.index(a), self.axes.index(b)
            g["mu_dt"] = g["mu_dt"] + harmonic_mean_transpose(
                grads[f"grad_mu_{a}{b}"], base["mu_dt"], i, j
            )
        if not self.n_memory:
            return g
        shape = base["rate_kappa"].shape
        g["rate_kappa"] = np.zeros(shape)
        g["rate_mu"] = np.zeros(shape)
        g["y_mu"] = np.zeros(shape)
        g["mu_u_dt"] = np.zeros(shape[1:])
        beta = self.physics.beta
        for l in range(self.n_memory):
            if self.bulk:
                g["rate_kappa"][l] = grads[f"grad_rkappa{l}"]
            if not self.shear:
                continue
            g["rate_mu"][l] = 2.0 * grads[f"grad_rdev{l}"]
            for a, b in self.pairs:
                i, j = self.axes.index(a), self.axes.index(b)
                grad = beta[l] * np.asarray(grads[f"grad_rshear_{a}{b}{l}"], dtype=np.float64)
                mean_y = corner_mean(base["y_mu"][l], i, j)
                harmonic = harmonic_mean(base["mu_u_dt"], i, j)
                g["mu_u_dt"] += harmonic_mean_transpose(grad * mean_y, base["mu_u_dt"], i, j)
                for corner in range(4):
                    g["y_mu"][l] += corner_transpose(grad * harmonic / 4.0, i, j, corner)
        return g

    def _chain(self, g_nodes, params, name) -> np.ndarray:
        """sum_c dchi/dc dc/d(param) with dc/d(param) by central differences (pointwise)."""
        value = params[name]
        finite = np.isfinite(value)
        step = COEFFICIENT_STEP * np.where(finite & (value != 0), np.abs(value), 1.0)
        step = np.where(finite, step, 0.0)
        shifted = []
        for sign in (1.0, -1.0):
            p = dict(params)
            p[name] = value + sign * step
            shifted.append(self.physics.scheme_coefficients(*(p[n] for n in PARAMETERS)))
        total = np.zeros_like(value)
        denominator = np.where(finite, 2 * step, 1.0)
        for key, g in g_nodes.items():
            derivative = np.where(finite, (shifted[0][key] - shifted[1][key]) / denominator, 0.0)
            contribution = np.asarray(g, dtype=np.float64) * derivative
            total += contribution.sum(axis=0) if contribution.ndim > value.ndim else contribution
        return total
