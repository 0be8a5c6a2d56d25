"""Viscoelastic velocity-stress scheme (P-SV in 2-D, full 3-D) with L standard linear solids.

PDE (plane strain in 2-D; Fourier convention exp(-i w t), see
:mod:`anelastic.checks.solutions`)::

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
steps. Free surface (top, z = first grid row) by stress imaging (:mod:`.surface`); measured
(order 4, Poisson solid): Rayleigh speed +1 % and ellipticity H/V -5 % at 13 points per
Rayleigh wavelength. Sources and receivers: :mod:`.sources_receivers`.
"""

from __future__ import annotations

from anelastic.physics.base import PhysicsKind, Stage
from anelastic.physics.viscoelastic.adjoint import ViscoelasticAdjoint
from anelastic.physics.viscoelastic.inverse_step import inverse_stages
from anelastic.physics.viscoelastic.sources_receivers import ElasticSourcesReceivers
from anelastic.physics.viscoelastic.stages import ElasticStages
from anelastic.physics.viscoelastic.state import ElasticState
from anelastic.physics.viscoelastic.surface import FreeSurface


class Viscoelastic(ElasticSourcesReceivers, FreeSurface, ElasticStages, ElasticState):
    """Viscoelastic rheology; ``padded_model`` already includes the absorbing padding.

    By role: state and coefficients (:class:`~.state.ElasticState`), the interior and absorbing
    stages (:class:`~.stages.ElasticStages`), the free-surface rows
    (:class:`~.surface.FreeSurface`), injection and recording
    (:class:`~.sources_receivers.ElasticSourcesReceivers`).
    """

    kind = PhysicsKind.VISCOELASTIC

    @staticmethod
    def wavefield_arrays(ndim: int) -> int:
        """Velocity per axis and the stress tensor's d (d + 1) / 2 components."""
        return ndim + ndim * (ndim + 1) // 2

    @staticmethod
    def replay_frame_arrays(ndim: int, attenuating: bool) -> int:
        """div sigma per axis, normal strain rates, shear strain rates: d (d + 3) / 2."""
        return ndim * (ndim + 3) // 2

    def adjoint(self) -> ViscoelasticAdjoint:
        """The exact discrete adjoint (:mod:`.adjoint`; refuses the free surface)."""
        return ViscoelasticAdjoint(self)

    def inverse_stages(self, fields: dict, coeffs: dict, interiors: dict) -> list[Stage]:
        """The elastic inverse step (:mod:`.inverse_step`; Q = inf only)."""
        return inverse_stages(self, fields, coeffs, interiors)
