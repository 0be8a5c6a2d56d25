"""Elastic moduli with standard linear solids for the viscoelastic physics.

The model's (Qp, Qs) become ``Q_mu = Qs`` and, with ``L_d = 2 (d - 1) / d (vs / vp)^2``,
``1 / Q_kappa = (1 / Qp - L_d / Qs) / (1 - L_d)`` (kappa the d-dimensional bulk modulus).
Unrelaxed moduli reproduce the model's vs and vp as phase velocities at ``f_ref`` exactly:
``mu_U`` from the S dispersion, then ``kappa_U`` by Newton on the P phase velocity. See
:mod:`anelastic.physics.viscoelastic` for the scheme that uses them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from anelastic.attenuation import fit_sls

NEWTON_STEPS = 40


@dataclass(frozen=True, eq=False)
class ElasticModuli:
    """Unrelaxed moduli and SLS weights on the padded grid.

    kappa_u, mu_u: [*shape] Pa (kappa the d-dimensional bulk modulus); y_kappa, y_mu:
    [L, *shape]; omega [L] rad/s (shared); q_kappa, q_mu [*shape] (inf = elastic); ``fit`` the
    ``SLSFit`` the weights come from (None when the model is elastic).
    """

    kappa_u: np.ndarray
    mu_u: np.ndarray
    y_kappa: np.ndarray
    y_mu: np.ndarray
    omega: np.ndarray
    q_kappa: np.ndarray
    q_mu: np.ndarray
    fit_error: float
    fit: object = None


def shear_fraction(vp: np.ndarray, vs: np.ndarray, ndim: int) -> np.ndarray:
    """``L_d = 2 (d - 1) / d (vs / vp)^2``: the share of mu in the P modulus."""
    return 2.0 * (ndim - 1) / ndim * (vs / vp) ** 2


def bulk_quality(qp, qs, vp, vs, ndim: int) -> np.ndarray:
    """Q_kappa [*shape] from Qp, Qs (inf allowed); raises if Q_kappa would be negative."""
    frac = shear_fraction(vp, vs, ndim)
    inv_qp = np.where(np.isinf(qp), 0.0, 1.0 / qp)
    inv_qs = np.where(np.isinf(qs) | (vs == 0), 0.0, 1.0 / qs)
    inv_qk = (inv_qp - frac * inv_qs) / (1.0 - frac)
    bad = inv_qk < -1e-12 * np.maximum(inv_qp, 1e-300)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"Qp = {qp[where]:g} and Qs = {qs[where]:g} (vp {vp[where]:g}, vs {vs[where]:g} m/s) "
            f"at {where} imply a negative bulk Q_kappa: 1/Qp must be >= {frac[where]:.4g}/Qs "
            f"(Qp <= {qs[where] / frac[where]:.4g})"
        )
    # Rounded so that a constant vs/vp ratio gives exactly one Q_kappa (fewer coefficient arrays).
    inv_qk = np.round(np.clip(inv_qk, 0.0, None), 12)
    with np.errstate(divide="ignore"):
        return np.where(inv_qk > 0, 1.0 / np.where(inv_qk > 0, inv_qk, 1.0), np.inf)


def _ratio_at(y: np.ndarray, omega: np.ndarray, w: float) -> np.ndarray:
    """``M(w) / M_U`` [*shape] for weights y [L, *shape]."""
    factor = (omega / (omega + 1j * w)).reshape((-1,) + (1,) * (y.ndim - 1))
    return 1.0 - (y * factor).sum(axis=0)


def elastic_moduli(model, band, n_sls: int, fit=None) -> ElasticModuli:
    """Fit the SLS weights for Q_kappa and Q_mu and set the unrelaxed moduli (see module doc).

    ``fit``: a fixed ``SLSFit`` (relaxation mechanisms and weight table) to use instead of
    fitting this model's Q values (kernels are derivatives at fixed mechanisms)."""
    d = model.ndim
    vp, vs, rho = model.vp, model.vs, model.rho
    q_mu = np.where(vs > 0, model.qs, np.inf)
    q_kappa = bulk_quality(model.qp, model.qs, vp, vs, d)
    frac_mu = 2.0 * (d - 1) / d
    if np.all(np.isinf(q_kappa)) and np.all(np.isinf(q_mu)):
        zeros = np.zeros((0, *vp.shape))
        kappa = rho * (vp**2 - frac_mu * vs**2)
        return ElasticModuli(kappa, rho * vs**2, zeros, zeros, np.zeros(0), q_kappa, q_mu, 0.0)
    if fit is None:
        fit = fit_sls(np.concatenate([q_kappa.ravel(), q_mu.ravel()]), band, n_sls)
    y_k, y_mu = fit.weights(q_kappa), fit.weights(q_mu)
    w_ref = 2.0 * np.pi * model.f_ref
    h_k, h_mu = _ratio_at(y_k, fit.omega, w_ref), _ratio_at(y_mu, fit.omega, w_ref)
    mu_u = rho * vs**2 * np.real(h_mu ** (-0.5)) ** 2
    shear_part = frac_mu * mu_u * h_mu
    kappa_u = rho * (vp**2 - frac_mu * vs**2) * np.real(h_k ** (-0.5)) ** 2
    target = 1.0 / (np.sqrt(rho) * vp)
    for _ in range(NEWTON_STEPS):
        m_p = kappa_u * h_k + shear_part
        residual = np.real(m_p ** (-0.5)) - target
        slope = np.real(-0.5 * m_p ** (-1.5) * h_k)
        update = residual / slope
        kappa_u = kappa_u - update
        if np.all(np.abs(update) <= 1e-13 * np.abs(kappa_u)):
            break  # converged to rounding (quadratically, a few steps): the rest cost seconds
    m_p = kappa_u * h_k + shear_part
    if np.max(np.abs(np.real(m_p ** (-0.5)) / target - 1.0)) > 1e-9 or (kappa_u <= 0).any():
        raise ValueError("could not set the unrelaxed bulk modulus from vp at f_ref (check Q)")
    return ElasticModuli(kappa_u, mu_u, y_k, y_mu, fit.omega, q_kappa, q_mu, fit.max_rel_error, fit)
