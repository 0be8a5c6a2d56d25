"""Misfit functions and their adjoint sources.

Every misfit acts on the processed traces ``P s = w . (F s)``: F a zero-phase band-pass, w a
tapered time window. Both are real symmetric linear operators (F is applied in the frequency
domain with a real, even response; w is a diagonal), so the adjoint of the processing is
``P^T r = F (w . r)`` and adjoint sources are exact.

Adjoint sources are defined with respect to the continuous inner product
``delta chi = dt * sum_n sum_r adjoint[n, r] * delta_synthetic[n, r]``.

Misfits (summed over receivers):

- ``waveform``: ``chi = 1/2 dt sum (P s - P d)^2``.
- ``cc_traveltime``: ``chi = 1/2 sum_r dT_r^2`` where dT maximises the cross-correlation
  ``C(tau) = int (P s)(t) (P d)(t + tau) dt`` (positive dT: the observed wave arrives later).
  dT is found to machine precision by band-limited (Fourier) interpolation and Newton steps, and
  its derivative is exact by the implicit-function theorem:
  ``delta dT = -int P(delta s)(t) (P d)'(t + dT) dt / int (P s)(t) (P d)''(t + dT) dt``.
- ``log_amplitude``: ``chi = 1/2 sum_r ln(A_syn / A_obs)^2`` with ``A = sqrt(int (P s)^2)``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np


class MisfitKind(enum.Enum):
    WAVEFORM = "waveform"
    CC_TRAVELTIME = "cc_traveltime"
    LOG_AMPLITUDE = "log_amplitude"


@dataclass(frozen=True)
class TimeWindow:
    """Window [t_start, t_end] seconds (times measured from the first sample) with cosine
    tapers covering ``taper_fraction`` of its length at each end."""

    t_start: float
    t_end: float
    taper_fraction: float = 0.1

    def __post_init__(self) -> None:
        if not self.t_end > self.t_start >= 0:
            raise ValueError(f"window needs 0 <= t_start < t_end, got {self.t_start}, {self.t_end}")
        if not 0 <= self.taper_fraction <= 0.5:
            raise ValueError(f"taper_fraction must be in [0, 0.5], got {self.taper_fraction}")

    def weights(self, nt: int, dt: float) -> np.ndarray:
        """Window weights [nt] in [0, 1]."""
        if self.t_end > (nt - 1) * dt * (1 + 1e-9):
            raise ValueError(
                f"window end {self.t_end} s is after the last sample at {(nt - 1) * dt:.6g} s"
            )
        t = np.arange(nt) * dt
        length = self.t_end - self.t_start
        taper = self.taper_fraction * length
        w = ((t >= self.t_start) & (t <= self.t_end)).astype(float)
        if taper > 0:
            rise = (t - self.t_start) / taper
            fall = (self.t_end - t) / taper
            w *= 0.5 - 0.5 * np.cos(np.pi * np.clip(np.minimum(rise, fall), 0.0, 1.0))
        return w


@dataclass(frozen=True)
class BandPass:
    """Zero-phase band-pass with the squared magnitude of a Butterworth filter of this order
    (as a forward-backward Butterworth filter would give); ``fmin = 0`` makes it a low-pass."""

    fmin: float
    fmax: float
    order: int = 4

    def __post_init__(self) -> None:
        if not 0 <= self.fmin < self.fmax:
            raise ValueError(f"band-pass needs 0 <= fmin < fmax, got {self.fmin}, {self.fmax}")
        if self.order < 1:
            raise ValueError(f"filter order must be >= 1, got {self.order}")

    def apply(self, traces: np.ndarray, dt: float) -> np.ndarray:
        """Filter traces [nt, ...] along time; returns the same shape."""
        nyquist = 0.5 / dt
        if self.fmax >= nyquist:
            raise ValueError(f"fmax {self.fmax} Hz must be below the Nyquist {nyquist:.6g} Hz")
        nt = traces.shape[0]
        n_fft = 2 * nt  # zero padding: no wrap-around of the filter's response
        f = np.fft.rfftfreq(n_fft, d=dt)
        gain = 1.0 / (1.0 + (f / self.fmax) ** (2 * self.order))
        if self.fmin > 0:
            ratio = (f / self.fmin) ** (2 * self.order)
            gain *= ratio / (1.0 + ratio)
        spectrum = np.fft.rfft(traces, n_fft, axis=0)
        spectrum *= gain.reshape((-1,) + (1,) * (traces.ndim - 1))
        return np.fft.irfft(spectrum, n_fft, axis=0)[:nt]


@dataclass(frozen=True)
class Misfit:
    """A misfit definition: kind, optional window and optional band-pass."""

    kind: MisfitKind = MisfitKind.WAVEFORM
    window: TimeWindow | None = None
    band: BandPass | None = None

    def process(self, traces: np.ndarray, dt: float) -> np.ndarray:
        """P s = w . (F s) for traces [nt, nrec]."""
        out = self.band.apply(traces, dt) if self.band else np.array(traces, dtype=float)
        if self.window:
            out *= self.window.weights(out.shape[0], dt)[:, None]
        return out

    def process_adjoint(self, traces: np.ndarray, dt: float) -> np.ndarray:
        """P^T r = F (w . r) for traces [nt, nrec] (F and the diagonal w are symmetric)."""
        out = np.array(traces, dtype=float)
        if self.window:
            out *= self.window.weights(out.shape[0], dt)[:, None]
        return self.band.apply(out, dt) if self.band else out

    def evaluate(
        self, synthetic: np.ndarray, observed: np.ndarray, dt: float
    ) -> tuple[float, np.ndarray]:
        """Misfit value and adjoint source.

        synthetic, observed [nt, nrec] sampled every dt seconds.
        Returns (chi, adjoint [nt, nrec]) with the inner product of the module docstring.
        """
        synthetic, observed = _check_traces(synthetic, observed, dt)
        s = self.process(synthetic, dt)
        d = self.process(observed, dt)
        if self.kind is MisfitKind.WAVEFORM:
            chi, residual_adjoint = _waveform(s, d, dt)
        elif self.kind is MisfitKind.CC_TRAVELTIME:
            chi, residual_adjoint = _cc_traveltime(s, d, dt)
        else:
            chi, residual_adjoint = _log_amplitude(s, d, dt)
        return chi, self.process_adjoint(residual_adjoint, dt)

    def measurements(self, synthetic: np.ndarray, observed: np.ndarray, dt: float) -> np.ndarray:
        """Per-receiver measurement [nrec]: residual energy, dT (s) or ln(A_syn / A_obs)."""
        synthetic, observed = _check_traces(synthetic, observed, dt)
        s, d = self.process(synthetic, dt), self.process(observed, dt)
        if self.kind is MisfitKind.WAVEFORM:
            return 0.5 * dt * np.sum((s - d) ** 2, axis=0)
        if self.kind is MisfitKind.CC_TRAVELTIME:
            return np.array([_cc_shift(s[:, r], d[:, r], dt) for r in range(s.shape[1])])
        return 0.5 * np.log(np.sum(s**2, axis=0) / _energy(d, "observed"))


def _waveform(s: np.ndarray, d: np.ndarray, dt: float) -> tuple[float, np.ndarray]:
    residual = s - d
    return 0.5 * dt * float(np.sum(residual**2)), residual


def _log_amplitude(s: np.ndarray, d: np.ndarray, dt: float) -> tuple[float, np.ndarray]:
    energy_s = _energy(s, "synthetic")
    dlna = 0.5 * np.log(energy_s / _energy(d, "observed"))
    # d ln A_syn = int s ds / int s^2 (the dt factors cancel against the inner product's)
    adjoint = dlna * s / (energy_s * dt)
    return 0.5 * float(np.sum(dlna**2)), adjoint


def _cc_traveltime(s: np.ndarray, d: np.ndarray, dt: float) -> tuple[float, np.ndarray]:
    nt, nrec = s.shape
    adjoint = np.zeros_like(s)
    chi = 0.0
    for r in range(nrec):
        shift = _cc_shift(s[:, r], d[:, r], dt)
        d_dot, d_ddot = _shifted_derivatives(d[:, r], shift, dt)
        curvature = dt * float(np.dot(s[:, r], d_ddot))
        if curvature >= 0:
            raise ValueError(f"receiver {r}: cross-correlation has no maximum (flat or no wave)")
        chi += 0.5 * shift**2
        adjoint[:, r] = -shift * d_dot / curvature
    return chi, adjoint


def _cc_shift(s: np.ndarray, d: np.ndarray, dt: float) -> float:
    """The lag tau (s) maximising int s(t) d(t + tau) dt, to machine precision."""
    _energy(s[:, None], "synthetic")
    _energy(d[:, None], "observed")
    n = len(s)
    corr = np.fft.irfft(np.conj(np.fft.rfft(s, 2 * n)) * np.fft.rfft(d, 2 * n), 2 * n)
    lag = int(np.argmax(corr))
    tau = (lag if lag < n else lag - 2 * n) * dt
    for _ in range(20):  # Newton on C'(tau) = 0 with band-limited derivatives
        d_dot, d_ddot = _shifted_derivatives(d, tau, dt)
        step = float(np.dot(s, d_dot)) / float(np.dot(s, d_ddot))
        tau -= step
        if abs(step) < 1e-12 * dt:
            break
    return tau


def _shifted_derivatives(d: np.ndarray, tau: float, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """First and second time derivatives of d(t + tau) [nt] by Fourier interpolation."""
    n = len(d)
    n_fft = 2 * n
    omega = 2 * np.pi * np.fft.rfftfreq(n_fft, d=dt)
    spec = np.fft.rfft(d, n_fft) * np.exp(1j * omega * tau)
    first = np.fft.irfft(1j * omega * spec, n_fft)[:n]
    second = np.fft.irfft(-(omega**2) * spec, n_fft)[:n]
    return first, second


def _energy(traces: np.ndarray, name: str) -> np.ndarray:
    energy = np.sum(traces**2, axis=0)
    if np.any(energy <= 0):
        bad = int(np.argmin(energy))
        raise ValueError(f"{name} trace {bad} is zero inside the window: nothing to measure")
    return energy


def _check_traces(
    synthetic: np.ndarray, observed: np.ndarray, dt: float
) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(synthetic, dtype=float)
    d = np.asarray(observed, dtype=float)
    s = s[:, None] if s.ndim == 1 else s
    d = d[:, None] if d.ndim == 1 else d
    if s.shape != d.shape or s.ndim != 2:
        raise ValueError(
            f"synthetic and observed must both be [nt, nrec]; got {s.shape} and {d.shape}"
        )
    if not dt > 0:
        raise ValueError(f"dt must be > 0, got {dt}")
    if not (np.all(np.isfinite(s)) and np.all(np.isfinite(d))):
        raise ValueError("traces contain NaN or inf")
    return s, d
