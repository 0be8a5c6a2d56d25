"""Sources, wavelets, receivers and seismograms.

Positions are physical coordinates in metres, ``[ndim]`` per point, axes (x, z) or (x, y, z).
Off-grid positions are handled by the solver with multilinear interpolation (injection and
recording use the same weights).

Source normalisation (the analytic solutions assume it):
- ``PRESSURE`` (explosive): ``dp/dt = ... + s(t) delta(x - xs)``: s is a volume-injection rate
  density, ``delta`` is ``1 / cell_volume`` on the grid.
- ``FORCE``: ``rho dv/dt = ... + s(t) f delta(x - xs)`` with unit direction ``f`` [ndim].
- ``MOMENT``: ``d sigma/dt = ... - s(t) M delta(x - xs)`` (moment-rate tensor ``M`` [ndim, ndim],
  symmetric); an isotropic ``M`` is an explosion. Only stress-based physics accept it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


class WaveletKind(enum.Enum):
    RICKER = "ricker"
    GAUSSIAN_DERIVATIVE = "gaussian_derivative"
    ARRAY = "array"


class SourceKind(enum.Enum):
    PRESSURE = "pressure"
    FORCE = "force"
    MOMENT = "moment"


class Component(enum.Enum):
    """What a receiver records: pressure or one particle-velocity component."""

    P = "p"
    VX = "vx"
    VY = "vy"
    VZ = "vz"


@dataclass(frozen=True, eq=False)
class Wavelet:
    """Source time function.

    RICKER: ``(1 - 2 a) exp(-a)``, ``a = (pi f0 (t - delay))^2``, peak 1 at ``delay``.
    GAUSSIAN_DERIVATIVE: ``-(t - delay) exp(-a) * sqrt(2 e) pi f0``, extremum 1 near ``delay``.
    ARRAY: ``samples`` [n] at times ``k * sample_dt``, linearly interpolated, 0 outside.
    ``delay`` defaults to ``1.5 / f0``.
    """

    kind: WaveletKind
    f0: float = 10.0
    delay: float | None = None
    amplitude: float = 1.0
    samples: np.ndarray | None = None
    sample_dt: float | None = None

    def __post_init__(self) -> None:
        if self.kind is WaveletKind.ARRAY:
            if self.samples is None or self.sample_dt is None or self.sample_dt <= 0:
                raise ValueError("an ARRAY wavelet needs samples [n] and sample_dt > 0")
            samples = np.asarray(self.samples, dtype=np.float64).ravel().copy()
            if not np.all(np.isfinite(samples)):
                raise ValueError("wavelet samples contain NaN or inf")
            object.__setattr__(self, "samples", samples)
        elif not np.isfinite(self.f0) or self.f0 <= 0:
            raise ValueError(f"wavelet peak frequency f0 must be > 0 Hz, got {self.f0}")

    @property
    def t0(self) -> float:
        return self.delay if self.delay is not None else 1.5 / self.f0

    @property
    def dominant_frequency(self) -> float:
        """f0 for analytic wavelets; the spectral peak for arrays."""
        if self.kind is not WaveletKind.ARRAY:
            return self.f0
        spectrum = np.abs(np.fft.rfft(self.samples, 8 * self.samples.size))
        freqs = np.fft.rfftfreq(8 * self.samples.size, self.sample_dt)
        return float(max(freqs[np.argmax(spectrum)], freqs[1]))

    def __call__(self, t: np.ndarray) -> np.ndarray:
        """Wavelet values at times ``t`` (any shape, seconds)."""
        t = np.asarray(t, dtype=np.float64)
        if self.kind is WaveletKind.ARRAY:
            grid_t = self.sample_dt * np.arange(self.samples.size)
            return self.amplitude * np.interp(t, grid_t, self.samples, left=0.0, right=0.0)
        tau = t - self.t0
        a = (np.pi * self.f0 * tau) ** 2
        if self.kind is WaveletKind.RICKER:
            return self.amplitude * (1.0 - 2.0 * a) * np.exp(-a)
        scale = np.sqrt(2.0 * np.e) * np.pi * self.f0
        return -self.amplitude * scale * tau * np.exp(-a)


def ricker(f0: float, delay: float | None = None, amplitude: float = 1.0) -> Wavelet:
    return Wavelet(WaveletKind.RICKER, f0, delay, amplitude)


@dataclass(frozen=True, eq=False)
class Source:
    """A point source at ``position`` [ndim] metres.

    ``direction`` [ndim] (FORCE, normalised to unit length) or ``moment`` [ndim, ndim] (MOMENT).
    """

    position: tuple[float, ...]
    wavelet: Wavelet
    kind: SourceKind = SourceKind.PRESSURE
    direction: tuple[float, ...] | None = None
    moment: np.ndarray | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "position", tuple(float(c) for c in self.position))
        if not np.all(np.isfinite(self.position)):
            raise ValueError(f"source position must be finite, got {self.position}")
        ndim = len(self.position)
        if self.kind is SourceKind.FORCE:
            d = np.asarray(self.direction if self.direction is not None else (), dtype=float)
            if d.shape != (ndim,) or not np.isfinite(d).all() or np.linalg.norm(d) == 0:
                raise ValueError(f"a FORCE source needs a nonzero direction of {ndim} components")
            object.__setattr__(self, "direction", tuple(d / np.linalg.norm(d)))
        if self.kind is SourceKind.MOMENT:
            m = np.asarray(self.moment if self.moment is not None else (), dtype=float)
            if m.shape != (ndim, ndim) or not np.allclose(m, m.T) or not np.isfinite(m).all():
                raise ValueError(f"a MOMENT source needs a symmetric {ndim}x{ndim} tensor")
            object.__setattr__(self, "moment", m.copy())


@dataclass(frozen=True, eq=False)
class Receivers:
    """Receiver positions [nrec, ndim] metres and the components each records."""

    positions: np.ndarray
    components: tuple[Component, ...] = (Component.P,)

    def __post_init__(self) -> None:
        pos = np.atleast_2d(np.asarray(self.positions, dtype=np.float64)).copy()
        if pos.ndim != 2 or pos.shape[1] not in (2, 3) or pos.shape[0] == 0:
            raise ValueError(f"receiver positions must be [nrec, ndim], got {pos.shape}")
        if not np.isfinite(pos).all():
            raise ValueError("receiver positions contain NaN or inf")
        if len(set(self.components)) != len(self.components) or not self.components:
            raise ValueError(f"receiver components must be distinct and non-empty: {self}")
        if pos.shape[1] == 2 and Component.VY in self.components:
            raise ValueError("a 2-D receiver cannot record vy (axes are x, z)")
        object.__setattr__(self, "positions", pos)

    @property
    def count(self) -> int:
        return int(self.positions.shape[0])


def receiver_line(start: tuple[float, ...], stop: tuple[float, ...], count: int) -> np.ndarray:
    """``count`` equally spaced positions [count, ndim] from start to stop (inclusive)."""
    return np.linspace(np.asarray(start, float), np.asarray(stop, float), int(count))


@dataclass(eq=False)
class Seismograms:
    """Recorded traces: ``data[component]`` is [nt, nrec], sampled at ``t_n = n dt``."""

    dt: float
    positions: np.ndarray
    data: dict[Component, np.ndarray] = field(default_factory=dict)

    @property
    def nt(self) -> int:
        return int(next(iter(self.data.values())).shape[0])

    @property
    def times(self) -> np.ndarray:
        return self.dt * np.arange(self.nt)

    def save_npz(self, path: str | Path) -> None:
        """Write ``dt``, ``positions`` [nrec, ndim] and one [nt, nrec] array per component."""
        arrays = {c.value: d for c, d in self.data.items()}
        np.savez(path, dt=np.array(self.dt), positions=self.positions, **arrays)

    @classmethod
    def load_npz(cls, path: str | Path) -> Seismograms:
        with np.load(path) as f:
            data = {c: f[c.value] for c in Component if c.value in f}
            return cls(float(f["dt"]), f["positions"], data)

    def to_stream(self, origin_time=None):
        """An ObsPy Stream, one SEED-named trace per receiver and component, starting at
        ``origin_time`` (:func:`anelastic.formats.to_stream`)."""
        from anelastic.formats import to_stream

        return to_stream(self, origin_time)

    def write(
        self, path: str | Path, format: str = "MSEED", origin_time=None, stations=None
    ) -> list[Path]:
        """MiniSEED or SAC (one file per trace) through ObsPy, SEED-named, SAC headers with
        the receiver coordinates (:func:`anelastic.formats.write_seismograms`)."""
        from anelastic.formats import write_seismograms

        return write_seismograms(self, path, format, origin_time, stations)
