"""Exact discrete adjoint of the viscoacoustic scheme and its coefficient gradients.

The forward step n (see :mod:`.viscoacoustic`), written on the whole grid (the C-PML terms are
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
attenuating as the forward), and the gradients of the misfit with respect to the coefficients
accumulate in the same loop nest from the forward frames of the replay buffer:

    dchi/dA      = -sum_n P div^{n+1/2}      dchi/dB_l = sum_n P zeta_l^n
    dchi/dbuoy_h = -sum_n v^_a (G_a p^n)     (the C-PML terms are dropped: kernels are
                                              reported on the physical domain only)
"""

from __future__ import annotations

import numpy as np
from devito import Eq

from anelastic.physics.base import BoundaryKind, FieldRole, FieldSpec
from anelastic.physics.stencils import at, derivative_at_half, derivative_at_node, staggered_stencil
from anelastic.physics.viscoacoustic import VELOCITY_NAMES

# Relative step of the central differences of the coefficient functions (float64).
COEFFICIENT_STEP = 1e-5


class ViscoacousticAdjoint:
    """Adjoint stencils of a :class:`~anelastic.physics.viscoacoustic.Viscoacoustic` rheology."""

    def __init__(self, physics) -> None:
        self.physics = physics
        self.axes = physics.axes
        self.n_memory = physics.n_memory
        self.weights = staggered_stencil(physics.config.space_order // 2)
        self.cpml = physics.config.boundary is BoundaryKind.CPML and physics.config.pml_width > 0

    # --- declarations --------------------------------------------------------------------
    def buffer_specs(self) -> tuple[FieldSpec, ...]:
        """Forward quantities the adjoint reads at each step (node fields): p^n, div v^{n+1/2},
        zeta_l^n. One frame costs ``(2 + L)`` arrays."""
        order = self.physics.config.space_order
        specs = [
            FieldSpec("p", (), FieldRole.WAVEFIELD, order),
            FieldSpec("div", (), space_order=0),
        ]
        specs += [FieldSpec(f"zeta{l}", (), FieldRole.MEMORY, 0) for l in range(self.n_memory)]
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
        """Accumulated coefficient gradients: dchi/dA, dchi/dB_l (nodes), dchi/dbuoy_h (half)."""
        specs = [FieldSpec("grad_mod", (), space_order=0)]
        specs += [FieldSpec(f"grad_mem{l}", (), space_order=0) for l in range(self.n_memory)]
        specs += [FieldSpec(f"grad_buoy_{a}", (a,), space_order=0) for a in self.axes]
        return tuple(specs)

    def adjoint_source_field(self) -> str:
        """Adjoint field that receives the adjoint source of pressure receivers."""
        return "adj_p"

    # --- equations -----------------------------------------------------------------------
    def buffer_equations(self, fields: dict, buffers: dict, grid) -> list[Eq]:
        """Copy the forward quantities of step n into the buffer frame (after the step)."""
        eqs = [Eq(buffers["p"], fields["p"])]
        div = 0
        for i, a in enumerate(self.axes):
            v = fields[VELOCITY_NAMES[a]]
            h = grid.dimensions[i].spacing
            div += derivative_at_node(lambda k, v=v, i=i: at(v, i, k, 1), self.weights, h)
        eqs.append(Eq(buffers["div"], div))
        eqs += [Eq(buffers[f"zeta{l}"], fields[f"zeta{l}"]) for l in range(self.n_memory)]
        return eqs

    def adjoint_equations(self, adj, tmp, buffers, grads, coeffs, layout, halo_profiles) -> list:
        """One adjoint step (loop index t: slot t holds step n+1's adjoint, ``.backward``
        receives step n's), gradients included; the adjoint source is injected after.

        ``halo_profiles``: copies of the node C-PML profiles ``cpmla_<axis>`` with a stencil
        halo (the transposed derivative reads them at neighbouring points)."""
        physics, dims = self.physics, layout.grid.dimensions
        sponge_p = self._sponge(layout, ())
        pressure = sponge_p * adj["adj_p"]
        eqs = [Eq(tmp["tmp_div"], self._adjoint_divergence(adj, coeffs, pressure))]
        for l in range(self.n_memory):
            z = adj[f"adj_zeta{l}"]
            update = coeffs[f"zalpha{l}"] * z + physics.memory_coefficient(coeffs, l) * pressure
            eqs.append(Eq(z.backward, update))
            eqs.append(
                Eq(grads[f"grad_mem{l}"], grads[f"grad_mem{l}"] + pressure * buffers[f"zeta{l}"])
            )
        eqs.append(Eq(grads["grad_mod"], grads["grad_mod"] - pressure * buffers["div"]))
        if self.cpml:
            for a in self.axes:
                psi = adj[f"adj_psi_v{a}"]
                b = layout.profiles[f"cpmlb_{a}"]
                eqs.append(Eq(psi.backward, b * (psi + tmp["tmp_div"])))
        for i, a in enumerate(self.axes):
            eqs += self._velocity_axis(
                i, a, adj, tmp, buffers, grads, coeffs, layout, halo_profiles
            )
        flux = sum(
            derivative_at_node(
                lambda k, i=i, a=a: at(tmp[f"tmp_flux_{a}"], i, k), self.weights, d.spacing
            )
            for i, (a, d) in enumerate(zip(self.axes, dims, strict=True))
        )
        eqs.append(Eq(adj["adj_p"].backward, pressure - flux))
        return eqs

    def _adjoint_divergence(self, adj, coeffs, pressure):
        mixed = sum(coeffs[f"zbeta{l}"] * adj[f"adj_zeta{l}"] for l in range(self.n_memory))
        return mixed - coeffs["mod_dt"] * pressure

    def _velocity_axis(self, i, a, adj, tmp, buffers, grads, coeffs, layout, halo_profiles):
        """Transposed velocity update along axis ``a`` (index ``i``) and its gradient."""
        h = layout.grid.dimensions[i].spacing
        v = adj[f"adj_{VELOCITY_NAMES[a]}"]
        adiv = tmp["tmp_div"]
        if self.cpml:
            prof_a = halo_profiles[f"cpmla_{a}"]
            psi_v = adj[f"adj_psi_v{a}"]

            def node_value(k):
                return (1 + at(prof_a, i, k)) * at(adiv, i, k) + at(prof_a, i, k) * at(psi_v, i, k)
        else:

            def node_value(k):
                return at(adiv, i, k)

        gradient = derivative_at_half(node_value, self.weights, h)
        eqs = [Eq(v.backward, self._sponge(layout, (a,)) * (v - gradient))]
        buoy = coeffs["buoy_dt"]
        weight = 0.5 * (at(buoy, i, 0) + at(buoy, i, 1)) * v.backward
        flux = tmp[f"tmp_flux_{a}"]
        if self.cpml:
            psi_p = adj[f"adj_psi_p{a}"]
            ah = layout.profiles[f"cpmlah_{a}"]
            bh = layout.profiles[f"cpmlbh_{a}"]
            eqs.append(Eq(psi_p.backward, bh * (psi_p - weight)))
            eqs.append(Eq(flux, -(1 + ah) * weight + ah * psi_p))
        else:
            eqs.append(Eq(flux, -weight))
        grad_p = derivative_at_half(lambda k: at(buffers["p"], i, k), self.weights, h)
        g = grads[f"grad_buoy_{a}"]
        eqs.append(Eq(g, g - v.backward * grad_p))
        return eqs

    def _sponge(self, layout, staggered: tuple[str, ...]):
        if self.physics.config.boundary is BoundaryKind.SPONGE:
            return layout.sponge_factor(staggered)
        return 1

    # --- kernels -------------------------------------------------------------------------
    def parameter_gradients(self, grads: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """dchi/d(rho, vp, qp) per cell [*padded_shape] from the coefficient gradients.

        The coefficients depend pointwise on (rho, vp, Q) through
        ``scheme_coefficients``; its derivatives are central differences in float64 (the
        relaxation mechanisms are fixed). ``dchi/dbuoy`` at node i collects half of the
        half-node gradients at i - 1/2 and i + 1/2 of every axis (the forward averages).
        """
        model = self.physics.model
        g_coeff = {
            "buoy_dt": node_buoyancy_gradient(grads, self.axes),
            "mod_dt": grads["grad_mod"],
        }
        if self.n_memory:
            g_coeff["mem_dt"] = np.stack([grads[f"grad_mem{l}"] for l in range(self.n_memory)])
        params = {"rho": model.rho, "vp": model.vp, "qp": model.qp}
        out = {}
        for name, value in params.items():
            if name == "qp" and not self.n_memory:
                out[name] = np.zeros_like(value)
                continue
            out[name] = self._chain(g_coeff, params, name)
        return out

    def _chain(self, g_coeff, params, name):
        """sum_c dchi/dc * dc/d(param) with the coefficient derivative by central differences."""
        value = np.asarray(params[name], dtype=np.float64)
        step = COEFFICIENT_STEP * np.abs(value)
        shifted_params = []
        for sign in (1.0, -1.0):
            p = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
            p[name] = value + sign * step
            shifted_params.append(self.physics.scheme_coefficients(p["rho"], p["vp"], p["qp"]))
        total = np.zeros_like(value)
        for key, g in g_coeff.items():
            derivative = (shifted_params[0][key] - shifted_params[1][key]) / (2 * step)
            contribution = np.asarray(g, dtype=np.float64) * derivative
            total += contribution.sum(axis=0) if contribution.ndim > value.ndim else contribution
        return total


def node_buoyancy_gradient(grads: dict[str, np.ndarray], axes) -> np.ndarray:
    """dchi/dbuoy at nodes [*shape] from ``grad_buoy_<axis>`` at half nodes: the half node
    i + 1/2 of each axis averaged buoy[i] and buoy[i + 1], so each gets half of its gradient."""
    total = 0.0
    for k, a in enumerate(axes):
        g = np.asarray(grads[f"grad_buoy_{a}"], dtype=np.float64)
        below = np.zeros_like(g)
        dst = [slice(None)] * g.ndim
        src = [slice(None)] * g.ndim
        dst[k], src[k] = slice(1, None), slice(None, -1)
        below[tuple(dst)] = g[tuple(src)]
        total = total + 0.5 * (g + below)
    return total
