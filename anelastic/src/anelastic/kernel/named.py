"""Named kernels of the literature from the gradients of the model's own parameters.

The kernel pass gives dchi/d(rho, vp [, vs], Qp [, Qs]) per cell; the named kernels are
densities (per m^2 in 2-D, per m^3 in 3-D), defined by

    delta chi = sum_cells K_m (delta m / m) * cell volume

for each parametrisation (the other parameters of the set held fixed):

- (rho, kappa, mu, Q_kappa, Q_mu): ``K_rho``, ``K_kappa``, ``K_mu``, ``K_Qkappa``, ``K_Qmu``;
- (rho', alpha, beta) at fixed Q_kappa, Q_mu: ``K_rho_prime``, ``K_alpha``, ``K_beta``.

Viscoacoustic: kappa = rho vp^2, Q_kappa = Qp, and ``K_alpha = 2 K_kappa``. Viscoelastic
(d-dimensional bulk modulus, see :mod:`anelastic.physics.viscoelastic`): vp^2 = (kappa + c mu)
/ rho with c = 2 (d - 1) / d, vs^2 = mu / rho, Qs = Q_mu and 1 / Qp = (1 - L) / Q_kappa + L / Q_mu
with L = c mu / (kappa + c mu). Q kernels are ``K_Q = Q dchi/dQ`` (0 where Q = inf).
"""

from __future__ import annotations

import numpy as np

from anelastic.model import Model
from anelastic.physics import PhysicsKind


def named_kernels(
    model: Model, kind: PhysicsKind, g: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Named kernel densities from dchi/d(rho, vp, [vs,] qp, [qs]) per cell (module docstring)."""
    volume = float(np.prod(model.grid.spacing))
    rho, vp = model.rho.astype(np.float64), model.vp.astype(np.float64)
    elastic = kind is PhysicsKind.VISCOELASTIC
    vs = model.vs.astype(np.float64) if elastic else np.zeros_like(vp)
    g_vs = g.get("vs", np.zeros_like(vp))
    d = model.ndim
    c = 2.0 * (d - 1) / d
    kappa = rho * vp**2 - c * rho * vs**2
    mu = rho * vs**2
    inv_qp = _inverse(model.qp)
    inv_qs = _inverse(model.qs) if elastic else np.zeros_like(vp)
    big_l = c * mu / (kappa + c * mu)
    inv_qk = (inv_qp - big_l * inv_qs) / (1.0 - big_l)
    g_inv_qp = _inverse_q_gradient(model.qp, g["qp"])
    g_inv_qs = _inverse_q_gradient(model.qs, g.get("qs", np.zeros_like(vp))) if elastic else 0.0
    spread = inv_qs - inv_qk  # d(1/Qp)/dL
    safe_vs = np.where(vs > 0, vs, 1.0)
    out = {
        "K_rho": rho * g["rho"] - vp * g["vp"] / 2 - vs * g_vs / 2,
        "K_kappa": kappa
        * (g["vp"] / (2 * rho * vp) - g_inv_qp * spread * c * mu / (kappa + c * mu) ** 2),
        "K_rho_prime": rho * g["rho"],
        "K_alpha": vp * g["vp"] - 2 * big_l * spread * g_inv_qp,
        "K_Qkappa": -inv_qk * g_inv_qp * (1.0 - big_l),
    }
    if elastic:
        out["K_mu"] = mu * (
            c * g["vp"] / (2 * rho * vp)
            + np.where(vs > 0, g_vs / (2 * rho * safe_vs), 0.0)
            + g_inv_qp * spread * c * kappa / (kappa + c * mu) ** 2
        )
        out["K_beta"] = vs * g_vs + 2 * big_l * spread * g_inv_qp
        out["K_Qmu"] = -inv_qs * (g_inv_qp * big_l + g_inv_qs)
    return {name: k / volume for name, k in out.items()}


def _inverse_q_gradient(q: np.ndarray, g_q: np.ndarray) -> np.ndarray:
    """dchi/d(1/Q) = -Q^2 dchi/dQ (0 where Q = inf: no mechanism, no Q sensitivity)."""
    q = np.asarray(q, dtype=np.float64)
    finite = np.isfinite(q)
    return np.where(finite, -(np.where(finite, q, 0.0) ** 2) * g_q, 0.0)


def _inverse(q: np.ndarray) -> np.ndarray:
    q = np.asarray(q, dtype=np.float64)
    return np.where(np.isfinite(q), 1.0 / q, 0.0)
