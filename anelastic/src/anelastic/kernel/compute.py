"""Sensitivity kernels of one event: forward (with storage) -> misfit -> kernel pass -> kernels.

``compute_kernels`` returns the gradient of the misfit with respect to the model's own
parameters per cell (``gradients``: dchi/d rho, vp [, vs], Qp [, Qs]) and the named kernels of
the literature as densities (``kernels``, :mod:`anelastic.kernel.named`). Kernels are
derivatives with the relaxation mechanisms held fixed (they are fitted once, with a margin below
the smallest Q: :func:`anelastic.kernel.inputs.kernel_fit`) and the absorbing layers held fixed
(reported on the physical grid).

The steps, whatever the storage strategy (:mod:`anelastic.kernel.storage`):

1. the strategy's forward run(s) give the synthetics and keep what the strategy needs;
2. the misfit of the synthetics against the observed data gives the adjoint source;
3. the kernel pass: for each chunk of N steps, last first, the strategy fills the replay
   buffer, the adjoint runs backwards over it and accumulates the coefficient gradients
   (:class:`~anelastic.kernel.operators.KernelOperators`);
4. the rheology's adjoint turns coefficient gradients into parameter gradients, cropped to the
   physical grid; the named kernels follow.
"""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from anelastic.acquisition import Seismograms
from anelastic.kernel.inputs import Event, KernelSettings, check_kernel_run
from anelastic.kernel.misfit import Misfit
from anelastic.kernel.named import named_kernels
from anelastic.kernel.operators import (
    KernelOperators,
    adjoint_sources,
    kernel_operators,
)
from anelastic.kernel.progress import PassLog, PhaseBars
from anelastic.kernel.schedule import chunks
from anelastic.kernel.storage import STRATEGIES, StorageStrategy, Traces

if TYPE_CHECKING:
    from anelastic.forward.simulation import Simulation


@dataclass
class KernelResult:
    kernels: dict[str, np.ndarray]  # named kernel densities [*grid shape]
    gradients: dict[str, np.ndarray]  # dchi/d(parameter) per cell [*grid shape]
    chi: float
    synthetics: Seismograms
    summary: dict


@dataclass(frozen=True)
class EventMisfit:
    """The misfit of one event's synthetics and its adjoint source."""

    chi: float
    residual: dict  # per component, dchi / d(recorded sample) [nt, nrec]
    synthetics: Seismograms


def compute_kernels(event: Event, settings: KernelSettings, progress: bool = False) -> KernelResult:
    """Kernels of one event (see the module docstring). Everything is checked before any
    simulation: the configuration, recorded observed data, the snapshot store; synthetic
    observed data are made after that."""
    validate(event, settings)
    start = time.perf_counter()
    log, bars = PassLog(), PhaseBars(progress, event.time.nt)
    strategy = STRATEGIES[settings.storage](event, settings, log, bars)
    try:
        strategy.prepare()
        observed = event.observed_data(settings.threads, progress)
        check_observed(observed, event.receivers, event.time)
        run = strategy.forward()
        misfit = evaluate_misfit(event, observed, settings.misfit, run.traces)
        ops = kernel_operators(run.sim, run.chunk)
        ops.reset(event.receivers.positions)
        kernel_pass(strategy, ops, adjoint_sources(ops.scheme, misfit.residual), run.chunk)
        report = strategy.report()
    finally:
        strategy.close()
        bars.close()
    gradients = crop(ops.scheme.parameter_gradients(ops.gradients()), run.sim.pads)
    kernels = named_kernels(event.model, event.config.kind, gradients)
    summary = {
        "storage": settings.storage.value,
        "nt": event.time.nt,
        "time_steps": dict(log.steps, total=sum(log.steps.values())),
        "seconds": dict(log.seconds, total=time.perf_counter() - start),
        "cell_updates_per_second": cell_update_rates(log, int(np.prod(event.model.grid.shape))),
        "threads": thread_choices(settings.threads, run.sim, ops),
        "buffer_bytes": ops.buffer_nbytes(),
        "peak_ram_bytes": peak_ram_bytes(),
        "misfit": misfit.chi,
        **report.as_dict(),
    }
    return KernelResult(kernels, gradients, misfit.chi, misfit.synthetics, summary)


def kernel_pass(strategy: StorageStrategy, ops: KernelOperators, sources: dict, n: int) -> None:
    """Chunks of ``n`` steps, last to first: the strategy fills the replay buffer, the adjoint
    runs over the chunk (``sources``: what it injects, :func:`adjoint_sources`), gradients
    accumulate in
    ``ops``. Chunks an interrupted pass already did are skipped."""
    log, bars = strategy.log, strategy.bars
    done = strategy.start_pass(ops, sources)
    if done is None:  # a fresh pass (a restart point already holds the seeded state)
        ops.seed(sources)
    for chunk in reversed(chunks(ops.sim.time.nt, n)):
        if done is not None and chunk.start >= done:
            bars[strategy.fill_phase].update(chunk.length)
            bars["adjoint"].update(chunk.length)
            continue
        strategy.fill(ops, chunk)
        begin = time.perf_counter()
        ops.adjoint_chunk(chunk.start, chunk.stop, sources)
        log.add("adjoint", chunk.length, time.perf_counter() - begin)
        bars["adjoint"].update(chunk.length)
        strategy.chunk_done(ops, chunk)


def cell_update_rates(log: PassLog, cells: int) -> dict[str, float]:
    """Model cells (PML excluded) times steps per second of wall time, per phase."""
    return {
        phase: cells * steps / log.seconds[phase]
        for phase, steps in log.steps.items()
        if log.seconds.get(phase, 0.0) > 0
    }


def thread_choices(requested: int | None, sim: Simulation, ops: KernelOperators) -> dict:
    """The thread count each phase's operator ran on at the end (``requested``: the user's
    setting; None means chosen by measurement, see :mod:`anelastic.forward.threads`)."""
    return {
        "requested": requested,
        "forward": sim.propagator.threads_for(sim).best(),
        "replay": ops.threads_for("replay").best(),
        "adjoint": ops.threads_for("adjoint").best(),
    }


def evaluate_misfit(
    event: Event, observed: Seismograms, misfit: Misfit, traces: Traces
) -> EventMisfit:
    """The misfit of the synthetic ``traces`` against the ``observed`` data, summed over the
    receivers' components, and per component its adjoint source dchi/d(recorded sample)."""
    chi, residual = 0.0, {}
    for comp in event.receivers.components:
        value, adjoint = misfit.evaluate(traces[comp], observed.data[comp], event.time.dt)
        chi += float(value)
        residual[comp] = event.time.dt * adjoint
    synthetics = Seismograms(event.time.dt, event.receivers.positions.copy(), traces)
    return EventMisfit(chi, residual, synthetics)


def peak_ram_bytes() -> int:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def validate(event: Event, settings: KernelSettings) -> None:
    """Refuse, before any compute, what the kernel pass cannot do with ``event``: the
    configuration (:func:`~anelastic.kernel.inputs.check_kernel_run`), then the observed data."""
    check_kernel_run(event.model, event.receivers, event.time, event.config, settings)
    if isinstance(event.observed, Seismograms):
        check_observed(event.observed, event.receivers, event.time)


def check_observed(observed: Seismograms, receivers, time, source: str = "observed data") -> None:
    """Observed traces [nt, nrec] of every receiver component at the run's dt, or an error
    saying what differs."""
    shape = (time.nt, receivers.count)
    for comp in receivers.components:
        obs = observed.data.get(comp)
        if obs is None or obs.shape != shape:
            got = None if obs is None else obs.shape
            raise ValueError(
                f"{source}: {comp.value} traces must be [nt, nrec] = {shape}, got {got}"
            )
    if not np.isclose(observed.dt, time.dt, rtol=1e-9):
        raise ValueError(f"{source}: dt {observed.dt} differs from the run's {time.dt}")


def crop(arrays: dict[str, np.ndarray], pads) -> dict[str, np.ndarray]:
    """Arrays on the padded grid -> the physical grid (``pads``: (before, after) per axis)."""
    out = {}
    for name, a in arrays.items():
        window = tuple(slice(lo, n - hi) for (lo, hi), n in zip(pads, a.shape, strict=True))
        out[name] = np.ascontiguousarray(a[window])
    return out
