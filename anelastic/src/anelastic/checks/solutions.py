"""Analytic solutions for homogeneous (visco)acoustic and (visco)elastic media.

All solutions are built in the frequency domain and brought back to time by FFT. The
correspondence principle makes them exact for any linear viscoelastic rheology: replace each
real modulus by its complex modulus M(omega).

Conventions (the solver follows the same ones, so traces compare directly):

- Fourier transform ``F(omega) = integral f(t) exp(-i omega t) dt`` (numpy's ``rfft`` sign).
  A complex modulus satisfies ``sigma(omega) = M(omega) eps(omega)``; an attenuating medium has
  ``Im M(omega) > 0`` for ``omega > 0`` and ``Q(omega) = Re M / Im M``.
- Viscoacoustic: ``rho dv/dt = -grad p`` and ``dp/dt = -(M * div v) + s(t) delta(x - xs)``:
  the source is a volume-injection-rate density, in pressure units per second.
- Elastic (plane strain in 2-D): ``rho dv/dt = div sigma + s(t) f delta(x - xs)`` with a unit
  force direction ``f`` and ``sigma = lambda tr(eps) I + 2 mu eps``.

Waves are outgoing as ``exp(i (omega t - k r))`` with ``k = omega sqrt(rho / M)`` on the
principal branch, so ``Im k < 0`` and attenuated waves decay with distance.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import special

ModulusFn = Callable[[np.ndarray], np.ndarray]
"""A complex modulus: angular frequencies [nfreq] (rad/s, > 0) -> complex moduli [nfreq] (Pa)."""

PAD_FACTOR = 8
"""FFT length as a multiple of the trace length: keeps the slowly decaying 2-D tail from
wrapping around into the trace."""


def wavenumber(omega: np.ndarray, rho: float, modulus: np.ndarray) -> np.ndarray:
    """Complex wavenumber ``k = omega sqrt(rho / M)`` with ``Im k <= 0`` for ``omega > 0``.

    omega [nfreq] rad/s (> 0); modulus [nfreq] complex Pa. Returns [nfreq] complex, 1/m.
    """
    return omega * np.sqrt(rho / np.asarray(modulus, dtype=complex))


def scalar_green(k: np.ndarray, r: float, dim: int) -> np.ndarray:
    """Outgoing Green's function g of ``laplacian g + k^2 g = -delta``.

    2-D: ``g = (-i/4) H0^(2)(k r)``; 3-D: ``g = exp(-i k r) / (4 pi r)``.
    k [nfreq] complex; r > 0 in metres. Returns [nfreq] complex.
    """
    _check_positive("distance", r)
    if dim == 2:
        return -0.25j * special.hankel2(0, k * r)
    if dim == 3:
        return np.exp(-1j * k * r) / (4.0 * np.pi * r)
    raise ValueError(f"dim must be 2 or 3, got {dim}")


def acoustic_pressure_response(
    omega: np.ndarray, distance: float, rho: float, modulus: ModulusFn, dim: int
) -> np.ndarray:
    """Pressure transfer function H(omega) of a point volume-injection source.

    From ``i omega P = -M div V + S delta`` and ``i omega rho V = -grad P``:
    ``laplacian P + k^2 P = -(i omega rho S / M) delta``, hence
    ``H = (i omega rho / M(omega)) g(k r)`` with g from :func:`scalar_green`.

    omega [nfreq] rad/s, all > 0. Returns [nfreq] complex: ``P(omega) = H(omega) S(omega)``.
    """
    m = np.asarray(modulus(omega), dtype=complex)
    k = wavenumber(omega, rho, m)
    return 1j * omega * rho / m * scalar_green(k, distance, dim)


def elastic_green_2d(
    omega: np.ndarray,
    offset: tuple[float, float],
    rho: float,
    lam: ModulusFn,
    mu: ModulusFn,
) -> np.ndarray:
    """Displacement Green's tensor of the 2-D (plane-strain) elastic full space.

    Solves ``mu lap G + (lambda + mu) grad div G + rho omega^2 G = -delta I``; the solution is
    ``G_ij = g_S delta_ij / mu + d_i d_j (g_S - g_P) / (rho omega^2)`` with g_P, g_S the scalar
    Green's functions at the P and S wavenumbers (``rho omega^2 = (lambda + 2 mu) k_P^2 =
    mu k_S^2``). Second derivatives of a radial g(r) use
    ``d_i d_j g = g'' c_i c_j + g' (delta_ij - c_i c_j) / r`` with direction cosines c.

    omega [nfreq] rad/s (> 0); offset (x, z) receiver minus source, metres.
    Returns [2, 2, nfreq] complex, indices (x, z).
    """
    x, z = float(offset[0]), float(offset[1])
    r = float(np.hypot(x, z))
    _check_positive("source-receiver distance", r)
    lam_w = np.asarray(lam(omega), dtype=complex)
    mu_w = np.asarray(mu(omega), dtype=complex)
    k_p = wavenumber(omega, rho, lam_w + 2.0 * mu_w)
    k_s = wavenumber(omega, rho, mu_w)
    cos = np.array([x / r, z / r])
    outer = np.outer(cos, cos)[:, :, None]
    eye = np.eye(2)[:, :, None]

    def second_derivatives(k: np.ndarray) -> np.ndarray:
        h0 = special.hankel2(0, k * r)
        h1 = special.hankel2(1, k * r)
        d1 = 0.25j * k * h1  # g'(r) for g = (-i/4) H0^(2)(k r)
        d2 = 0.25j * k**2 * (h0 - h1 / (k * r))  # g''(r)
        return d2 * outer + d1 / r * (eye - outer)

    g_s = scalar_green(k_s, r, 2)
    hessian_diff = second_derivatives(k_s) - second_derivatives(k_p)
    return g_s / mu_w * eye + hessian_diff / (rho * omega**2)


def elastic_velocity_response_2d(
    omega: np.ndarray,
    offset: tuple[float, float],
    rho: float,
    lam: ModulusFn,
    mu: ModulusFn,
    force: tuple[float, float],
) -> np.ndarray:
    """Particle-velocity transfer function of a 2-D point force: ``V_i = i omega G_ij f_j``.

    Returns [2, nfreq] complex (vx, vz) per unit source spectrum.
    """
    green = elastic_green_2d(omega, offset, rho, lam, mu)
    f = np.asarray(force, dtype=float)
    return 1j * omega * np.einsum("ijf,j->if", green, f)


def apply_response(
    response: Callable[[np.ndarray], np.ndarray], wavelet: np.ndarray, dt: float
) -> np.ndarray:
    """Convolve a wavelet with a causal system given by its transfer function.

    response: maps omega [nfreq] (all > 0) to H [..., nfreq]. wavelet [nt] sampled every dt
    seconds. Returns the real traces [..., nt] on the wavelet's sample times. The zero frequency
    is set to 0 (every response here vanishes there).
    """
    w = np.asarray(wavelet, dtype=float)
    if w.ndim != 1 or w.size < 2:
        raise ValueError(f"wavelet must be a 1-D array of >= 2 samples, got shape {w.shape}")
    _check_positive("dt", dt)
    n_fft = _fft_length(w.size)
    omega = 2.0 * np.pi * np.fft.rfftfreq(n_fft, d=dt)
    spectrum = np.fft.rfft(w, n_fft)
    h = np.asarray(response(omega[1:]))
    out_spec = np.zeros(h.shape[:-1] + omega.shape, dtype=complex)
    out_spec[..., 1:] = h * spectrum[1:]
    return np.fft.irfft(out_spec, n_fft)[..., : w.size]


def acoustic_pressure_trace(
    t: np.ndarray,
    wavelet: np.ndarray,
    distance: float,
    rho: float,
    modulus: ModulusFn,
    dim: int,
) -> np.ndarray:
    """Pressure p(t) at ``distance`` from a point source with time function ``wavelet``.

    t [nt] uniformly spaced seconds; wavelet [nt] sampled at t. Returns [nt].
    """
    dt = _uniform_step(t)
    return apply_response(
        lambda om: acoustic_pressure_response(om, distance, rho, modulus, dim), wavelet, dt
    )


def elastic_velocity_trace_2d(
    t: np.ndarray,
    wavelet: np.ndarray,
    offset: tuple[float, float],
    rho: float,
    lam: ModulusFn,
    mu: ModulusFn,
    force: tuple[float, float],
) -> tuple[np.ndarray, np.ndarray]:
    """Particle velocity (vx(t), vz(t)) at ``offset`` from a 2-D point force ``force``.

    t [nt] uniform seconds; wavelet [nt]. Returns two arrays [nt].
    """
    dt = _uniform_step(t)
    traces = apply_response(
        lambda om: elastic_velocity_response_2d(om, offset, rho, lam, mu, force), wavelet, dt
    )
    return traces[0], traces[1]


def q_from_spectral_ratio(
    near: np.ndarray,
    far: np.ndarray,
    dt: float,
    r_near: float,
    r_far: float,
    velocity: float,
    fmin: float,
    fmax: float,
    dim: int,
) -> float:
    """Estimate Q from the amplitude spectra of one wave recorded at two distances.

    After correcting for geometrical spreading (exactly: the ratio of lossless Green's
    functions, ``|H0(k r_far)| / |H0(k r_near)|`` in 2-D, ``r_near / r_far`` in 3-D),
    ``ln(|A_far| / |A_near|) = -pi f (r_far - r_near) / (velocity Q)``; Q follows from the
    least-squares slope over [fmin, fmax] Hz. Each trace should hold that one wave only.

    near, far [nt] sampled every dt seconds. Returns Q (> 0).
    """
    if not 0 < r_near < r_far:
        raise ValueError(f"need 0 < r_near < r_far, got {r_near}, {r_far}")
    if not 0 < fmin < fmax:
        raise ValueError(f"need 0 < fmin < fmax, got {fmin}, {fmax}")
    n_fft = _fft_length(len(near))
    freq = np.fft.rfftfreq(n_fft, d=dt)
    band = (freq >= fmin) & (freq <= fmax)
    if band.sum() < 3:
        raise ValueError(f"band [{fmin}, {fmax}] Hz holds fewer than 3 frequencies")
    f = freq[band]
    a_near = np.abs(np.fft.rfft(near, n_fft))[band]
    a_far = np.abs(np.fft.rfft(far, n_fft))[band]
    k = 2.0 * np.pi * f / velocity
    spreading = np.abs(scalar_green(k, r_far, dim) / scalar_green(k, r_near, dim))
    log_ratio = np.log(a_far / (a_near * spreading))
    slope = np.polyfit(f, log_ratio, 1)[0]
    if slope >= 0:
        raise ValueError("amplitude ratio does not decay with frequency: no attenuation measurable")
    return float(-np.pi * (r_far - r_near) / (velocity * slope))


def _fft_length(nt: int) -> int:
    return int(2 ** np.ceil(np.log2(PAD_FACTOR * nt)))


def _uniform_step(t: np.ndarray) -> float:
    t = np.asarray(t, dtype=float)
    if t.ndim != 1 or t.size < 2:
        raise ValueError("t must be a 1-D array of >= 2 times")
    steps = np.diff(t)
    if not np.allclose(steps, steps[0], rtol=1e-6, atol=0.0) or steps[0] <= 0:
        raise ValueError("t must be uniformly spaced and increasing")
    return float(steps[0])


def _check_positive(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value}")
