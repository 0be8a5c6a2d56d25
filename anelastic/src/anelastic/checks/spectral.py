"""Q measured from synthetic data: spectral ratio of the direct wave at two distances."""

from __future__ import annotations

import numpy as np

from anelastic.checks import solutions


def direct_wave_window(trace: np.ndarray, dt: float, arrival: float, f0: float) -> np.ndarray:
    """``trace`` [nt] kept up to ``arrival + 3 / f0`` s, then a half-cosine taper of ``1 / f0``.

    ``arrival`` is the time of the wavelet peak at that receiver; the window keeps the whole
    direct wave (with the 2-D tail's start) and removes later arrivals (reflections, scattering).
    """
    t = dt * np.arange(trace.size)
    end = arrival + 3.0 / f0
    ramp = np.clip((t - end) * f0, 0.0, 1.0)
    return trace * 0.5 * (1.0 + np.cos(np.pi * ramp))


def measure_q(
    near: np.ndarray,
    far: np.ndarray,
    dt: float,
    r_near: float,
    r_far: float,
    velocity: float,
    f0: float,
    delay: float,
    dim: int,
) -> float:
    """Q from two traces [nt] of one source at distances ``r_near < r_far`` (m).

    Each trace is windowed around its direct arrival (``delay + r / velocity``), then
    :func:`anelastic.checks.solutions.q_from_spectral_ratio` fits the log spectral ratio over
    ``[f0 / 2, 2 f0]``, corrected for geometrical spreading.
    """
    near_w = direct_wave_window(near, dt, delay + r_near / velocity, f0)
    far_w = direct_wave_window(far, dt, delay + r_far / velocity, f0)
    return solutions.q_from_spectral_ratio(
        near_w, far_w, dt, r_near, r_far, velocity, f0 / 2.0, 2.0 * f0, dim
    )
