"""Sensitivity kernels of one event: forward (with snapshots) -> misfit -> kernel pass.

``compute_kernels`` returns the gradient of the misfit with respect to the model's own
parameters per cell (``gradients``: dchi/d rho, vp [, vs], Qp [, Qs]) and the named kernels of
the literature as densities (``kernels``, per m^2 in 2-D, per m^3 in 3-D), defined by

    delta chi = sum_cells K_m (delta m / m) * cell volume

for each parametrisation (the other parameters of the set held fixed):

- (rho, kappa, mu, Q_kappa, Q_mu): ``K_rho``, ``K_kappa``, ``K_mu``, ``K_Qkappa``, ``K_Qmu``;
- (rho', alpha, beta) at fixed Q_kappa, Q_mu: ``K_rho_prime``, ``K_alpha``, ``K_beta``.

Viscoacoustic: kappa = rho vp^2, Q_kappa = Qp, and ``K_alpha = 2 K_kappa``. Viscoelastic
(d-dimensional bulk modulus, see :mod:`anelastic.physics.viscoelastic`): vp^2 = (kappa + c mu)
/ rho with c = 2 (d - 1) / d, vs^2 = mu / rho, Qs = Q_mu and 1 / Qp = (1 - L) / Q_kappa + L / Q_mu
with L = c mu / (kappa + c mu). Q kernels are ``K_Q = Q dchi/dQ`` (0 where Q = inf). Kernels are
derivatives with the relaxation mechanisms held fixed (they are fitted once, with a margin below
the smallest Q) and the absorbing layers held fixed (reported on the physical grid).
"""

from __future__ import annotations

import resource
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from anelastic.acquisition import Component, Receivers, Seismograms, Source
from anelastic.attenuation import default_band, fit_sls
from anelastic.forward.simulation import Simulation, TimeAxis
from anelastic.kernel.misfit import Misfit
from anelastic.kernel.schedule import chunk_length_for_budget, parse_bytes
from anelastic.kernel.snapshots import SnapshotStore
from anelastic.kernel.storage import (
    KernelRestart,
    PassLog,
    Storage,
    checkpoint_pass,
    disk_frames_pass,
    forward_with_snapshots,
    frames_to_disk,
    reconstruction_pass,
    residual_digest,
    store_identity,
)
from anelastic.model import Model
from anelastic.physics import PhysicsConfig, PhysicsKind

DEFAULT_BUDGET = "2GiB"
# The SLS weight table extends this factor below the smallest Q, so that kernels (and their
# finite-difference checks) differentiate the table inside its range.
Q_TABLE_MARGIN = 1.5


@dataclass(frozen=True)
class Event:
    """One forward problem and its observed data."""

    model: Model
    sources: list[Source]
    receivers: Receivers
    time: TimeAxis
    config: PhysicsConfig
    observed: Seismograms


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


@dataclass
class KernelResult:
    kernels: dict[str, np.ndarray]  # named kernel densities [*grid shape]
    gradients: dict[str, np.ndarray]  # dchi/d(parameter) per cell [*grid shape]
    chi: float
    synthetics: Seismograms
    summary: dict


def kernel_fit(model: Model, config: PhysicsConfig, f0: float):
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


def compute_kernels(event: Event, settings: KernelSettings, progress: bool = False):
    """Kernels of one event (see the module docstring); validates everything first."""
    _validate(event, settings)
    start = time.perf_counter()
    if settings.storage is Storage.DISPERSION_ONLY:
        chi, residual, synthetics, log = _data_run(event, settings, progress)
        kernel_event = _dispersed(event)
        grads, ops, log = _reconstructed(kernel_event, settings, residual, progress, log)
        info = {"chunk": _frames(ops.sim, settings, full=False), "store_bytes": 0}
    elif settings.storage is Storage.REVERSE:
        grads, ops, log, chi, synthetics = _reverse(event, settings, progress)
        info = {"chunk": _frames(ops.sim, settings, full=False), "store_bytes": 0}
    else:
        grads, ops, log, chi, synthetics, info = _checkpointed(event, settings, progress)
    gradients = _crop(ops.scheme.parameter_gradients(grads), ops.sim.pads)
    kernels = named_kernels(event.model, event.config.kind, gradients)
    summary = {
        "storage": settings.storage.value,
        "nt": event.time.nt,
        "time_steps": dict(log.steps, total=sum(log.steps.values())),
        "seconds": dict(log.seconds, total=time.perf_counter() - start),
        "buffer_bytes": ops.buffer_nbytes(),
        "peak_ram_bytes": peak_ram_bytes(),
        "misfit": chi,
        **info,
    }
    return KernelResult(kernels, gradients, chi, synthetics, summary)


def peak_ram_bytes() -> int:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def _validate(event: Event, settings: KernelSettings) -> None:
    comps = event.receivers.components
    if comps != (Component.P,):
        raise ValueError(
            f"kernels need pressure receivers only (components ('p',)), got "
            f"{tuple(c.value for c in comps)}; velocity adjoint sources are not implemented"
        )
    obs = event.observed.data.get(Component.P)
    shape = (event.time.nt, event.receivers.count)
    if obs is None or obs.shape != shape:
        got = None if obs is None else obs.shape
        raise ValueError(f"observed pressure traces must be [nt, nrec] = {shape}, got {got}")
    if not np.isclose(event.observed.dt, event.time.dt, rtol=1e-9):
        raise ValueError(f"observed dt {event.observed.dt} differs from the run's {event.time.dt}")
    attenuating = bool(np.isfinite(event.model.qp).any() or np.isfinite(event.model.qs).any())
    if settings.storage is Storage.REVERSE and attenuating:
        from anelastic.kernel.reconstruction import ReverseUnstableError

        raise ReverseUnstableError(
            "--storage reverse rebuilds the forward field by running the scheme backwards in "
            "time, which is only stable without attenuation: each memory variable decays by "
            "alpha_l < 1 per step forward, so backwards every step multiplies roundoff by "
            "1/alpha_l and the field blows up exponentially. This model has finite Q: use "
            "--storage checkpoint (exact) or dispersion-only (the approximation)."
        )


def _misfit(event, settings, traces):
    syn = traces[Component.P]
    chi, adjoint = settings.misfit.evaluate(syn, event.observed.data[Component.P], event.time.dt)
    residual = event.time.dt * adjoint  # dchi / d(recorded sample)
    synthetics = Seismograms(event.time.dt, event.receivers.positions.copy(), traces)
    return float(chi), residual, synthetics


def _simulation(event: Event, settings: KernelSettings, fit) -> Simulation:
    return Simulation(
        event.model, event.sources, event.receivers, event.time, event.config,
        threads=settings.threads, sls_fit=fit,
    )  # fmt: skip


def _frame_bytes(sim) -> int:
    """Bytes of one replay-buffer frame (the forward quantities the adjoint reads per step)."""
    specs = sim.physics.adjoint().buffer_specs()
    frame = len(specs) * int(np.prod(sim.physics.model.grid.shape))
    return frame * np.dtype(sim.config.dtype).itemsize


def _frames(sim, settings: KernelSettings, full: bool) -> int:
    """Chunk length N: nt for full storage in RAM, else --chunk, else what the budget holds
    (full storage that does not fit keeps every frame on disk, moved N at a time)."""
    nt = sim.time.nt
    frame = _frame_bytes(sim)
    if full and frame * nt <= settings.memory_budget:
        return nt
    if settings.chunk is not None:
        return min(int(settings.chunk), nt)
    return chunk_length_for_budget(settings.memory_budget, frame, nt)


def _bars(progress: bool, nt: int, phases: tuple[str, ...]):
    from tqdm.auto import tqdm

    return [tqdm(total=nt, desc=p, unit="step", disable=not progress, leave=False) for p in phases]


def _checkpointed(event, settings, progress):
    from anelastic.kernel.operators import kernel_operators

    sim = _simulation(event, settings, kernel_fit(event.model, event.config, _f0(event)))
    full = settings.storage is Storage.FULL
    n = _frames(sim, settings, full)
    temporary = None
    directory = settings.store
    if directory is None:
        temporary = tempfile.TemporaryDirectory(prefix="anelastic-store-")
        directory = Path(temporary.name)
    arrays = {k: getattr(event.model, k) for k in ("vp", "vs", "rho", "qp", "qs")}
    store = SnapshotStore.open(directory, store_identity(sim, n, settings.storage), arrays)
    log = PassLog()
    nt = event.time.nt
    on_disk = full and n < nt  # every frame kept, on disk: snapshot at step 0 only
    forward_bar, replay_bar, adjoint_bar = _bars(progress, nt, ("forward", "replay", "adjoint"))
    traces = forward_with_snapshots(sim, store, nt if on_disk else n, log, forward_bar)
    chi, residual, synthetics = _misfit(event, settings, traces)
    ops = kernel_operators(sim, n)
    ops.reset(event.receivers.positions)
    if on_disk:
        frames_to_disk(ops, n, store, log, replay_bar)
        disk_frames_pass(ops, n, store, residual, log, adjoint_bar)
    else:
        restart = KernelRestart(store, residual_digest(residual), settings.restart_interval)
        checkpoint_pass(ops, n, store, residual, restart, log, (replay_bar, adjoint_bar))
    info = {
        "chunk": n,
        "frames_on_disk": on_disk,
        "store_bytes": store.nbytes(),
        "snapshots": len(store.steps("forward")),
    }
    for bar in (forward_bar, replay_bar, adjoint_bar):
        bar.close()
    if temporary is not None:
        temporary.cleanup()
    return ops.gradients(), ops, log, chi, synthetics, info


def _f0(event: Event) -> float:
    return event.sources[0].wavelet.dominant_frequency


def _reverse(event, settings, progress):
    from anelastic.kernel.reconstruction import ForwardReconstruction

    sim = _simulation(event, settings, None)
    log = PassLog()
    begin = time.perf_counter()
    reconstruction = ForwardReconstruction(sim)
    reconstruction.run_forward(progress=progress)
    log.add("forward", event.time.nt, time.perf_counter() - begin)
    chi, residual, synthetics = _misfit(event, settings, sim.seismograms().data)
    grads, ops = _adjoint_from_reconstruction(
        sim, reconstruction, settings, residual, log, progress
    )
    return grads, ops, log, chi, synthetics


def _data_run(event, settings, progress):
    """The attenuating data run of dispersion-only storage: synthetics and adjoint source."""
    sim = _simulation(event, settings, kernel_fit(event.model, event.config, _f0(event)))
    log = PassLog()
    begin = time.perf_counter()
    traces = sim.run(progress=progress).data
    log.add("data", event.time.nt, time.perf_counter() - begin)
    chi, residual, synthetics = _misfit(event, settings, traces)
    return chi, residual, synthetics, log


def _dispersed(event: Event) -> Event:
    """The model with Q = inf at the velocities of f_ref (moduli dispersed to f_ref)."""
    lossless = event.model.replace(qp=np.inf, qs=np.inf)
    return Event(lossless, event.sources, event.receivers, event.time, event.config, event.observed)


def _reconstructed(event, settings, residual, progress, log):
    from anelastic.kernel.reconstruction import ForwardReconstruction

    sim = _simulation(event, settings, None)
    begin = time.perf_counter()
    reconstruction = ForwardReconstruction(sim)
    reconstruction.run_forward(progress=progress)
    log.add("forward", event.time.nt, time.perf_counter() - begin)
    grads, ops = _adjoint_from_reconstruction(
        sim, reconstruction, settings, residual, log, progress
    )
    return grads, ops, log


def _adjoint_from_reconstruction(sim, reconstruction, settings, residual, log, progress):
    from anelastic.kernel.operators import kernel_operators

    n = _frames(sim, settings, full=False)
    ops = kernel_operators(sim, n)
    ops.reset(sim.receivers.positions)
    bars = _bars(progress, sim.time.nt, ("reconstruction", "adjoint"))
    reconstruction_pass(ops, n, reconstruction, residual, log, bars)
    for bar in bars:
        bar.close()
    return ops.gradients(), ops


def _crop(arrays: dict[str, np.ndarray], pads) -> dict[str, np.ndarray]:
    """Arrays on the padded grid -> the physical grid."""
    out = {}
    for name, a in arrays.items():
        window = tuple(slice(lo, n - hi) for (lo, hi), n in zip(pads, a.shape, strict=True))
        out[name] = np.ascontiguousarray(a[window])
    return out


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


__all__ = ["Event", "KernelResult", "KernelSettings", "Storage", "compute_kernels", "named_kernels"]
