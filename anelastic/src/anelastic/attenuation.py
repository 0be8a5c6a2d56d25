"""Constant-Q attenuation with L standard linear solids (generalised Maxwell body form).

Fourier convention ``F(w) = int f(t) exp(-i w t) dt`` (so ``d/dt -> i w``). The modulus of L
relaxation mechanisms with angular relaxation frequencies ``w_l`` and weights ``Y_l`` is

    M(w) = M_U [1 - sum_l Y_l w_l / (w_l + i w)]

with ``M_U`` the unrelaxed (infinite-frequency) modulus and ``M_R = M_U (1 - sum Y_l)`` the
relaxed one; ``Im M(w) > 0`` for ``w > 0`` (attenuating). In the time domain this is the memory
variable form used by the solver:

    sigma_rate = M_U (eps_rate - sum_l Y_l zeta_l),   d zeta_l/dt = w_l (eps_rate - zeta_l)

(``zeta_l`` is the memory variable scaled by ``1/(M_U Y_l)``).

``Q(w) = Re M / Im M``. The relaxation frequencies are fitted once (log-spaced start, then
nonlinear least squares on ``1/Q`` at the smallest Q of the model) and shared by every grid point;
the weights are fitted per Q value by least squares on ``1/Q(w) - 1/Q`` over the band and
interpolated linearly in ``1/Q`` between table entries. ``Q = inf`` gives ``Y = 0`` exactly.

Physical dispersion: the velocity of the model is the phase velocity at ``f_ref``, so
``M_U = rho v^2 [Re (M(w_ref)/M_U)^(-1/2)]^2`` (see :func:`unrelaxed_modulus`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

N_FIT_FREQUENCIES = 60
N_Q_TABLE = 24


@dataclass(frozen=True, eq=False)
class SLSFit:
    """Fitted mechanisms: ``omega`` [L] rad/s, weights ``y_table`` [K, L] for ``q_table`` [K].

    ``max_rel_error`` is the largest ``|Q_sls(w) / Q - 1|`` over the band and over the table.
    """

    band: tuple[float, float]
    omega: np.ndarray
    q_table: np.ndarray
    y_table: np.ndarray
    max_rel_error: float

    @property
    def n_sls(self) -> int:
        return int(self.omega.size)

    def weights(self, q: np.ndarray) -> np.ndarray:
        """SLS weights for quality factors ``q`` (any shape S): returns [L, *S]; 0 where Q=inf."""
        q = np.asarray(q, dtype=np.float64)
        inv_q = np.where(np.isinf(q), 0.0, 1.0 / q)
        inv_table = 1.0 / self.q_table
        order = np.argsort(inv_table)
        out = np.empty((self.n_sls, *q.shape))
        for l in range(self.n_sls):
            # Linear interpolation in 1/Q, with Y(1/Q = 0) = 0 as the anchor for large Q.
            xs = np.concatenate([[0.0], inv_table[order]])
            ys = np.concatenate([[0.0], self.y_table[order, l]])
            out[l] = np.interp(inv_q, xs, ys)
        return out


def fit_sls(q_values: np.ndarray, band: tuple[float, float], n_sls: int = 3) -> SLSFit:
    """Fit ``n_sls`` mechanisms to constant Q over ``band`` (Hz) for the finite ``q_values``.

    q_values: any array of quality factors (inf entries ignored). Raises ValueError on Q <= 0.
    """
    fmin, fmax = float(band[0]), float(band[1])
    if not (0 < fmin < fmax):
        raise ValueError(f"attenuation band must satisfy 0 < fmin < fmax, got {band}")
    if n_sls < 1:
        raise ValueError(f"need at least one standard linear solid, got n_sls={n_sls}")
    q = np.asarray(q_values, dtype=np.float64).ravel()
    if (q <= 0).any() or np.isnan(q).any():
        raise ValueError("quality factors must be > 0 (inf for no attenuation)")
    finite = np.unique(q[np.isfinite(q)])
    w_fit = 2 * np.pi * np.geomspace(fmin, fmax, N_FIT_FREQUENCIES)
    if finite.size == 0:
        omega = 2 * np.pi * np.geomspace(fmin, fmax, n_sls)
        return SLSFit((fmin, fmax), omega, np.array([1e30]), np.zeros((1, n_sls)), 0.0)
    omega = _fit_frequencies(float(finite.min()), w_fit, n_sls)
    table = _q_table(finite)
    y_table = np.stack([_fit_weights(qk, omega, w_fit) for qk in table])
    errors = [
        np.max(np.abs(sls_quality(w_fit, y, omega) / qk - 1.0))
        for qk, y in zip(table, y_table, strict=True)
    ]
    return SLSFit((fmin, fmax), omega, table, y_table, float(max(errors)))


def _q_table(finite_q: np.ndarray) -> np.ndarray:
    if finite_q.size <= N_Q_TABLE:
        return finite_q
    return np.geomspace(finite_q.min(), finite_q.max(), N_Q_TABLE)


def _fit_frequencies(q: float, w_fit: np.ndarray, n_sls: int) -> np.ndarray:
    """Relaxation frequencies [L] minimising the 1/Q misfit at quality factor ``q``."""
    log_w0 = np.log(np.geomspace(w_fit[0], w_fit[-1], n_sls))
    y0 = np.full(n_sls, 2.0 / (np.pi * q) * np.log(w_fit[-1] / w_fit[0]) / n_sls)

    def residual(params: np.ndarray) -> np.ndarray:
        omega, y = np.exp(params[:n_sls]), params[n_sls:]
        return q / sls_quality(w_fit, y, omega) - 1.0

    sol = least_squares(residual, np.concatenate([log_w0, y0]), method="lm")
    return np.sort(np.exp(sol.x[:n_sls]))


def _fit_weights(q: float, omega: np.ndarray, w_fit: np.ndarray) -> np.ndarray:
    """Weights [L] for fixed relaxation frequencies: least squares on Q/Q_sls(w) - 1."""
    # Linearised start (1/Q ~ sum Y_l w_l w / (w_l^2 + w^2)), then the exact ratio.
    design = omega[None, :] * w_fit[:, None] / (omega[None, :] ** 2 + w_fit[:, None] ** 2)
    y0 = np.linalg.lstsq(design, np.full(w_fit.size, 1.0 / q), rcond=None)[0]
    sol = least_squares(lambda y: q / sls_quality(w_fit, y, omega) - 1.0, y0, method="lm")
    return sol.x


def modulus_ratio(w: np.ndarray, y: np.ndarray, omega: np.ndarray) -> np.ndarray:
    """``M(w) / M_U`` for weights ``y`` [L] and relaxation frequencies ``omega`` [L]."""
    w = np.asarray(w, dtype=np.float64)
    terms = y[None, :] * omega[None, :] / (omega[None, :] + 1j * w.reshape(-1, 1))
    return (1.0 - terms.sum(axis=1)).reshape(w.shape)


def sls_quality(w: np.ndarray, y: np.ndarray, omega: np.ndarray) -> np.ndarray:
    """Exact quality factor ``Re M / Im M`` of the mechanisms at angular frequencies ``w``."""
    ratio = modulus_ratio(w, y, omega)
    return ratio.real / ratio.imag


def dispersion_factor(f_ref: float, y: np.ndarray, omega: np.ndarray) -> float:
    """``M_U / (rho c(f_ref)^2)`` for one point: ``[Re (M/M_U)^(-1/2)]^2`` at ``f_ref``."""
    h = modulus_ratio(np.array([2 * np.pi * f_ref]), y, omega)[0]
    return float(np.real(h ** (-0.5)) ** 2)


def unrelaxed_modulus(
    elastic_modulus: np.ndarray, weights: np.ndarray, omega: np.ndarray, f_ref: float
) -> np.ndarray:
    """Unrelaxed modulus [S] from ``rho v(f_ref)^2`` [S] and weights [L, *S].

    ``v(f_ref)`` is the phase velocity ``w / Re k`` with ``k = w sqrt(rho / M(w))``.
    """
    w_ref = 2 * np.pi * f_ref
    terms = weights * (omega / (omega + 1j * w_ref)).reshape((-1,) + (1,) * elastic_modulus.ndim)
    h = 1.0 - terms.sum(axis=0)
    return elastic_modulus * np.real(h ** (-0.5)) ** 2


def complex_modulus(
    m_unrelaxed: float, y: np.ndarray, omega: np.ndarray
) -> Callable[[np.ndarray], np.ndarray]:
    """The exact complex modulus ``w -> M(w)`` (rad/s -> Pa) of the discretised rheology."""
    y = np.asarray(y, dtype=np.float64).copy()
    omega = np.asarray(omega, dtype=np.float64).copy()

    def modulus(w: np.ndarray) -> np.ndarray:
        return m_unrelaxed * modulus_ratio(np.asarray(w, dtype=np.float64), y, omega)

    return modulus


def default_band(f0: float) -> tuple[float, float]:
    """The default constant-Q band ``[f0 / 10, 10 f0]`` around a dominant frequency ``f0``."""
    if f0 <= 0:
        raise ValueError(f"dominant frequency must be > 0 Hz, got {f0}")
    return (f0 / 10.0, f0 * 10.0)
