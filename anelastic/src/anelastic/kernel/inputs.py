"""What a kernel run is given: one event (forward problem and observed data), the settings (misfit,
storage strategy, memory), and the SLS fit it holds fixed.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from anelastic.acquisition import Receivers, Seismograms, Source
from anelastic.attenuation import SLSFit, default_band, fit_sls
from anelastic.forward.simulation import TimeAxis
from anelastic.kernel.misfit import Misfit
from anelastic.kernel.schedule import parse_bytes
from anelastic.model import Model
from anelastic.physics import PhysicsConfig

DEFAULT_BUDGET = "2GiB"
# The SLS weight table extends this factor below the smallest Q, so that kernels (and their
# finite-difference checks) differentiate the table inside its range.
Q_TABLE_MARGIN = 1.5


class Storage(enum.Enum):
    """How the kernel pass gets the forward field (see :mod:`anelastic.kernel.storage`)."""

    CHECKPOINT = "checkpoint"
    FULL = "full"
    REVERSE = "reverse"
    DISPERSION_ONLY = "dispersion-only"


@dataclass(frozen=True)
class Event:
    """One forward problem and its observed data."""

    model: Model
    sources: list[Source]
    receivers: Receivers
    time: TimeAxis
    config: PhysicsConfig
    observed: Seismograms

    @property
    def f0(self) -> float:
        """Dominant frequency of the first source's wavelet (Hz)."""
        return self.sources[0].wavelet.dominant_frequency


@dataclass(frozen=True)
class KernelSettings:
    """How the kernel pass stores the forward field (see :mod:`anelastic.kernel.storage`)."""

    misfit: Misfit
    storage: Storage = Storage.CHECKPOINT
    chunk: int | None = None  # N; None: from memory_budget
    memory_budget: int = field(default_factory=lambda: parse_bytes(DEFAULT_BUDGET))
    store: Path | None = None  # snapshot directory; None: a temporary one
    restart_interval: float = 60.0  # seconds between kernel-pass restart points
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.chunk is not None and int(self.chunk) < 1:
            raise ValueError(f"--chunk must be >= 1 time step, got {self.chunk}")
        if self.memory_budget <= 0:
            raise ValueError(f"--memory-budget must be > 0 bytes, got {self.memory_budget}")


def kernel_fit(model: Model, config: PhysicsConfig, f0: float) -> SLSFit | None:
    """The fixed SLS fit of a kernel run (None without attenuation): the model's finite Qp and
    Qs values plus a margin below the smallest (see ``Q_TABLE_MARGIN``)."""
    q = np.concatenate([model.qp.ravel(), model.qs.ravel()])
    finite = np.unique(q[np.isfinite(q) & (q > 0)])
    if finite.size == 0:
        return None
    # A dense geometric table (more values than attenuation.N_Q_TABLE) whose nodes do not fall
    # on the model's own Q values, where the interpolated weights have kinks.
    values = np.geomspace(finite.min() / Q_TABLE_MARGIN, finite.max() * Q_TABLE_MARGIN, 97)
    return fit_sls(values, config.band or default_band(f0), config.n_sls)
