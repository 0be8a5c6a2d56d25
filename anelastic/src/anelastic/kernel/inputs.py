"""What a kernel run is given: one event (forward problem and observed data), the settings (misfit,
storage strategy, memory), and the SLS fit it holds fixed; and :func:`check_kernel_run`, which
refuses from these alone (before any simulation) what the kernel pass cannot do.
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
from anelastic.physics import PhysicsConfig, physics_class
from anelastic.physics.boundary import padding

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
class SyntheticObserved:
    """Observed data made by simulating ``model`` (a config's ``[observed_model]``): run
    when the kernel run needs them, after every check (so on the Dask worker of the event)."""

    model: Model

    def __call__(self, event: Event, threads: int | None, progress: bool) -> Seismograms:
        from anelastic.forward.simulation import Simulation

        sim = Simulation(
            self.model, event.sources, event.receivers, event.time, event.config,
            threads=threads, instance="observed",
        )  # fmt: skip
        return sim.run(progress=progress)


@dataclass(frozen=True)
class Event:
    """One forward problem and its observed data: recorded traces, or a
    :class:`SyntheticObserved` that makes them when needed (:meth:`observed_data`)."""

    model: Model
    sources: list[Source]
    receivers: Receivers
    time: TimeAxis
    config: PhysicsConfig
    observed: Seismograms | SyntheticObserved

    @property
    def f0(self) -> float:
        """Dominant frequency of the first source's wavelet (Hz)."""
        return self.sources[0].wavelet.dominant_frequency

    def observed_data(self, threads: int | None = None, progress: bool = False) -> Seismograms:
        """The observed traces (simulated now if synthetic, on ``threads``)."""
        if isinstance(self.observed, Seismograms):
            return self.observed
        return self.observed(self, threads, progress)


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


REVERSE_WITH_Q = (
    "--storage reverse rebuilds the forward field by running the scheme backwards in time, "
    "which is only stable without attenuation: each memory variable decays by alpha_l < 1 per "
    "step forward, so backwards every step multiplies roundoff by 1/alpha_l and the field "
    "blows up exponentially. This model has finite Q: use --storage checkpoint (exact) or "
    "dispersion-only (the approximation)."
)
REVERSE_WITH_FREE_SURFACE = (
    "--storage reverse rebuilds the forward field with the interior inverse step, which does "
    "not reproduce the free surface's stress-imaging rows: use --storage checkpoint (exact, the "
    "default) or full, or free_surface = false."
)


class KernelInputError(ValueError):
    """A kernel run the inputs make impossible, found before any compute."""


def check_kernel_run(
    model: Model, receivers: Receivers, time: TimeAxis, config: PhysicsConfig, settings
) -> None:
    """Refuse, from the configuration alone, what the kernel pass cannot do: receiver
    components, reverse storage vs attenuation or a free surface, the misfit's window and band
    against the time axis, and a memory budget below one replay frame. Each message says what
    would be right."""
    attenuating = bool(np.isfinite(model.qp).any() or np.isfinite(model.qs).any())
    _check_decomposed_storage(settings.storage)
    if settings.storage is Storage.REVERSE and (attenuating or config.free_surface):
        from anelastic.kernel.reconstruction import ReverseUnstableError

        reasons = [REVERSE_WITH_Q] if attenuating else []
        reasons += [REVERSE_WITH_FREE_SURFACE] if config.free_surface else []
        raise ReverseUnstableError(" Also: ".join(reasons))
    _check_misfit(settings.misfit, time)
    if settings.chunk is None:
        _check_budget(model, time, config, settings, attenuating)


def _check_decomposed_storage(storage: Storage) -> None:
    """Under MPI only the strategies that replay from complete states run (each rank keeps its
    box of them); the backward rebuild keeps a ring of the whole grid's boundary."""
    from anelastic.forward import decomposition

    if storage in (Storage.REVERSE, Storage.DISPERSION_ONLY) and decomposition.size() > 1:
        raise KernelInputError(
            f"--storage {storage.value} does not run decomposed over MPI ranks (its boundary "
            "ring is not split between them): use --storage checkpoint (exact, the default) or "
            "full, or run it without mpiexec"
        )


def _check_budget(model: Model, time: TimeAxis, config: PhysicsConfig, settings, attenuating):
    """The budget must hold one replay frame, plus reverse storage's boundary ring."""
    frame = replay_frame_bytes(model, config, attenuating)
    rebuilt = settings.storage in (Storage.REVERSE, Storage.DISPERSION_ONLY)
    ring = ring_bytes_bound(model, config, time.nt) if rebuilt else 0
    if settings.memory_budget >= frame + ring:
        return
    ring_text = (
        f" plus the boundary ring that {settings.storage.value} storage keeps for every step "
        f"({ring / 2**30:.2f} GiB)"
        if ring
        else ""
    )
    raise KernelInputError(
        f"memory budget {settings.memory_budget} bytes holds no replay frame: one frame of this "
        f"grid takes {frame} bytes ({frame / 2**20:.1f} MiB){ring_text}; raise --memory-budget "
        f"(memory_budget) to at least {frame + ring} bytes"
        + (", or use --storage checkpoint (no ring)" if ring else ", or set --chunk")
    )


def ring_bytes_bound(model: Model, config: PhysicsConfig, nt: int) -> int:
    """Upper bound on the bytes of reverse storage's ring buffers: per wavefield [nt + 1, nring],
    nring = cells within space_order / 2 of the undamped interior (the physical grid), inside
    the absorbing layers (:class:`anelastic.kernel.reconstruction.FieldRegion`; a staggered
    field's interior is one cell shorter, so its ring is at most this)."""
    radius = config.space_order // 2
    pads = padding(model.ndim, config.pml_width, config.free_surface)
    inner = [int(n) for n in model.grid.shape]
    outer = [n + min(lo, radius) + min(hi, radius) for n, (lo, hi) in zip(inner, pads, strict=True)]
    cells = int(np.prod(outer)) - int(np.prod(inner))
    arrays = physics_class(config.kind).wavefield_arrays(model.ndim)
    return arrays * cells * (nt + 1) * np.dtype(config.dtype).itemsize


def _check_misfit(misfit, time: TimeAxis) -> None:
    last = (time.nt - 1) * time.dt
    window = misfit.window
    if window is not None and window.t_end > last * (1 + 1e-9):
        raise KernelInputError(
            f"the misfit window ends at {window.t_end} s, after the last sample at {last:.6g} s "
            f"(nt = {time.nt}, dt = {time.dt}); end it by {last:.6g} s or raise nt"
        )
    nyquist = 0.5 / time.dt
    if misfit.band is not None and misfit.band.fmax >= nyquist:
        raise KernelInputError(
            f"the misfit band's fmax {misfit.band.fmax} Hz is not below the Nyquist frequency "
            f"{nyquist:.6g} Hz of dt = {time.dt} s; lower it"
        )


def replay_frame_bytes(model: Model, config: PhysicsConfig, attenuating: bool) -> int:
    """Bytes of one replay-buffer frame: the rheology's buffer arrays over the padded grid."""
    pads = padding(model.ndim, config.pml_width, config.free_surface)
    cells = int(np.prod([n + lo + hi for n, (lo, hi) in zip(model.grid.shape, pads, strict=True)]))
    arrays = physics_class(config.kind).replay_frame_arrays(model.ndim, attenuating)
    return arrays * cells * np.dtype(config.dtype).itemsize
