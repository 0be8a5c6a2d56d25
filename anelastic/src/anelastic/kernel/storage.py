"""Storage strategies of the kernel pass: how the adjoint gets the forward field, backwards.

Every strategy ends with the same adjoint over chunks, last chunk first, reading a RAM buffer of
forward frames (:class:`anelastic.kernel.operators.KernelOperators`); they differ in how a
chunk's buffer is filled:

- ``checkpoint`` (the paper's method, the default): the forward run writes the complete solver
  state at the start of every chunk of N steps to a :class:`SnapshotStore`; the kernel pass
  restores it and replays the chunk into the buffer. nt + nt + nt = 3 nt steps, ceil(nt/N)
  states on disk, N frames in RAM.
- ``full``: every frame kept: one chunk of nt frames in RAM when the budget holds them (the
  exact reference), else the whole run is replayed once into frame files on disk, N at a time,
  which the adjoint then reads back last to first; 3 nt steps either way.
- ``reverse``: the forward field is rebuilt backwards from the final state and a boundary ring
  (:mod:`anelastic.kernel.reconstruction`); only possible without attenuation (running a
  dissipative scheme backwards amplifies roundoff exponentially); 3 nt steps.
- ``dispersion-only``: SPECFEM's approximation: the kernel run uses the model with Q = inf at
  the velocities of ``f_ref`` (dispersed moduli, no memory variables), rebuilt backwards like
  ``reverse``; the adjoint source comes from a data run with full attenuation. 4 nt steps.

Each strategy is one :class:`StorageStrategy` (``STRATEGIES`` maps the ``Storage`` choice to
it); the kernel pass (:func:`anelastic.kernel.compute.compute_kernels`) drives them all alike:

1. ``forward()``: the forward run(s), keeping what the strategy needs later (snapshots, or the
   boundary ring and final state); returns a :class:`ForwardRun`;
2. ``start_pass(ops, sources)``: before the first chunk; returns the step from which an
   interrupted pass already got (those chunks are skipped), or None;
3. ``fill(ops, chunk)``: the chunk's forward frames into the replay buffer;
4. ``chunk_done(ops, chunk)``: after the chunk's adjoint;
5. ``report()``: what the run summary records; ``close()``: release temporary files.

Forward runs and kernel passes survive interruption: the forward resumes from its last
snapshot (receiver traces recorded so far are part of each snapshot), and the kernel pass
writes its own restart point (adjoint state + gradients, :mod:`anelastic.kernel.restart`) after
chunks, at most every ``restart_interval`` seconds.
"""

from __future__ import annotations

import tempfile
import time
import warnings
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from anelastic.acquisition import Component
from anelastic.forward import decomposition
from anelastic.forward.simulation import Simulation
from anelastic.forward.state import SolverState, problem_identity
from anelastic.kernel.inputs import Event, KernelSettings, Storage, kernel_fit
from anelastic.kernel.progress import PassLog, PhaseBars
from anelastic.kernel.reconstruction import ForwardReconstruction
from anelastic.kernel.restart import KernelRestart, residual_digest
from anelastic.kernel.schedule import Chunk, chunk_length_for_budget, chunks
from anelastic.kernel.snapshots import SnapshotDamaged, SnapshotStore, rank_directory

if TYPE_CHECKING:
    from anelastic.attenuation import SLSFit
    from anelastic.kernel.operators import KernelOperators

TRACE_PREFIX = "__traces_"
Traces = dict[Component, np.ndarray]
"""Receiver traces: component -> [nt, nrec]."""


@dataclass(frozen=True)
class ForwardRun:
    """What a strategy's forward leaves for the kernel pass."""

    sim: Simulation  # the simulation whose propagator the kernel operators replay
    traces: Traces  # the synthetics the misfit compares with the observed data
    chunk: int  # N: frames in the replay buffer, steps per chunk


@dataclass(frozen=True)
class StorageReport:
    """What a strategy used, for the run summary (``None``: not applicable)."""

    chunk: int
    store_bytes: int
    frames_on_disk: bool | None = None
    snapshots: int | None = None

    def as_dict(self) -> dict:
        out: dict = {"chunk": self.chunk}
        if self.frames_on_disk is not None:
            out["frames_on_disk"] = self.frames_on_disk
        out["store_bytes"] = self.store_bytes
        if self.snapshots is not None:
            out["snapshots"] = self.snapshots
        return out


class StorageStrategy(ABC):
    """How the kernel pass gets the forward frames of each chunk (see the module docstring).

    ``log`` and ``bars`` record the steps, wall time and progress of the strategy's phases;
    ``fill_phase`` names the phase of ``fill``'s steps.
    """

    storage: Storage
    fill_phase: str

    def __init__(
        self, event: Event, settings: KernelSettings, log: PassLog, bars: PhaseBars
    ) -> None:
        self.event, self.settings, self.log, self.bars = event, settings, log, bars

    def prepare(self) -> None:  # noqa: B027 (a hook)
        """Before any simulation: what can refuse the run early (opening a snapshot store
        made for another run). Nothing by default."""

    @abstractmethod
    def forward(self) -> ForwardRun: ...

    def start_pass(self, ops: KernelOperators, sources) -> int | None:
        """Before the first chunk (nothing by default); see the module docstring."""
        return None

    @abstractmethod
    def fill(self, ops: KernelOperators, chunk: Chunk) -> None: ...

    def chunk_done(self, ops: KernelOperators, chunk: Chunk) -> None:  # noqa: B027 (a hook)
        """After the adjoint of ``chunk`` (nothing by default)."""

    @abstractmethod
    def report(self) -> StorageReport: ...

    def close(self) -> None:  # noqa: B027 (a hook)
        """Release what the strategy holds (nothing by default)."""

    def simulation(self, event: Event, fit: SLSFit | None) -> Simulation:
        """The forward simulation of ``event`` with the relaxation mechanisms ``fit``."""
        return Simulation(
            event.model, event.sources, event.receivers, event.time, event.config,
            threads=self.settings.threads, sls_fit=fit,
        )  # fmt: skip

    def chunk_length(self, sim: Simulation, every_frame: bool = False, reserved: int = 0) -> int:
        """N: --chunk, else what the memory budget holds beside ``reserved`` bytes (reverse
        storage's ring); ``every_frame``: nt when the budget holds all nt frames (else frames go
        to disk, moved N at a time)."""
        nt = sim.time.nt
        frame = frame_bytes(sim)
        budget = self.settings.memory_budget - reserved
        if every_frame and frame * nt <= budget:
            return nt
        if self.settings.chunk is not None:
            return min(int(self.settings.chunk), nt)
        return chunk_length_for_budget(budget, frame, nt)


def frame_bytes(sim: Simulation) -> int:
    """Bytes of one replay-buffer frame (the forward quantities the adjoint reads per step)."""
    specs = sim.physics.adjoint().buffer_specs()
    frame = len(specs) * int(np.prod(sim.physics.model.grid.shape))
    return frame * np.dtype(sim.config.dtype).itemsize


class CheckpointStorage(StorageStrategy):
    """Complete states every N steps in a snapshot store; per chunk: restore, replay."""

    storage = Storage.CHECKPOINT
    fill_phase = "replay"
    every_frame = False

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.n = 0
        self.sim: Simulation | None = None
        self.store: SnapshotStore | None = None
        self.restart: KernelRestart | None = None
        self._temporary: tempfile.TemporaryDirectory | None = None

    def prepare(self) -> None:
        """The simulation (operators built, no step run), N, and the snapshot store, which
        refuses a store of another run naming what differs."""
        event = self.event
        self.sim = self.simulation(event, kernel_fit(event.model, event.config, event.f0))
        self.n = self.chunk_length(self.sim, self.every_frame)
        self.store = self._open_store(self.sim)

    def forward(self) -> ForwardRun:
        if self.store is None:
            self.prepare()
        sim, interval = self.sim, self.snapshot_interval()
        traces = forward_with_snapshots(sim, self.store, interval, self.log, self.bars["forward"])
        return ForwardRun(sim, traces, self.n)

    def snapshot_interval(self) -> int:
        return self.n

    def _open_store(self, sim: Simulation) -> SnapshotStore:
        directory = self.settings.store
        if directory is None:
            self._temporary = tempfile.TemporaryDirectory(prefix="anelastic-store-")
            directory = Path(self._temporary.name)
        directory = rank_directory(directory, decomposition.rank(), decomposition.size())
        arrays = {k: getattr(self.event.model, k) for k in ("vp", "vs", "rho", "qp", "qs")}
        return SnapshotStore.open(directory, store_identity(sim, self.n, self.storage), arrays)

    def start_pass(self, ops: KernelOperators, sources) -> int | None:
        interval = self.settings.restart_interval
        self.restart = KernelRestart(self.store, residual_digest(sources), interval)
        return self.restart.resume_step(ops)

    def fill(self, ops: KernelOperators, chunk: Chunk) -> None:
        begin = time.perf_counter()
        ops.replay(chunk.start, chunk.stop, state_only(self._snapshot(chunk.start)))
        self.log.add("replay", chunk.length, time.perf_counter() - begin)
        self.bars["replay"].update(chunk.length)

    def chunk_done(self, ops: KernelOperators, chunk: Chunk) -> None:
        self.restart.maybe_save(ops, chunk.start)

    def _snapshot(self, step: int) -> dict[str, np.ndarray]:
        """The snapshot of ``step``; one found damaged now (its bytes changed since the
        forward; under MPI, on any rank) is reported and rebuilt from the nearest good one
        before it."""
        saved = _read_or_warn(self.store, step, stacklevel=4)
        if decomposition.all_ranks(saved is not None):
            return saved
        starts = [c.start for c in chunks(self.event.time.nt, self.snapshot_interval())]
        rebuild_snapshots(self.sim, self.store, starts, [step], self.log)
        return self.store.read(step)

    def report(self) -> StorageReport:
        steps = len(self.store.steps("forward"))
        return StorageReport(self.n, self.store.nbytes(), frames_on_disk=False, snapshots=steps)

    def close(self) -> None:
        if self._temporary is not None:
            self._temporary.cleanup()
            self._temporary = None


class FullStorage(CheckpointStorage):
    """Every frame kept. In RAM when the budget holds nt frames: one chunk of nt, restored from
    the snapshot of step 0 and replayed. Otherwise on disk: the forward keeps the snapshot of
    step 0 only, the whole run is replayed once into frame files (N frames each) before the
    first chunk, and ``fill`` reads a chunk's frames back."""

    storage = Storage.FULL
    every_frame = True

    @property
    def on_disk(self) -> bool:
        return self.n < self.event.time.nt

    def snapshot_interval(self) -> int:
        return self.event.time.nt if self.on_disk else self.n

    def start_pass(self, ops: KernelOperators, sources) -> int | None:
        if not self.on_disk:
            return super().start_pass(ops, sources)
        frames_to_disk(ops, self.n, self.store, self.log, self.bars["replay"])
        return None

    def fill(self, ops: KernelOperators, chunk: Chunk) -> None:
        if not self.on_disk:
            super().fill(ops, chunk)
            return
        for name, data in self.store.read(chunk.start, "frames").items():
            ops.buffers[name].data[: chunk.length] = data

    def chunk_done(self, ops: KernelOperators, chunk: Chunk) -> None:
        if not self.on_disk:
            super().chunk_done(ops, chunk)

    def report(self) -> StorageReport:
        return replace(super().report(), frames_on_disk=self.on_disk)


class ReverseStorage(StorageStrategy):
    """The lossless forward field rebuilt backwards, chunk by chunk, from its final state and a
    boundary ring (only without attenuation: ``ForwardReconstruction`` refuses it)."""

    storage = Storage.REVERSE
    fill_phase = "reconstruction"

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.n = 0
        self.reconstruction: ForwardReconstruction | None = None

    def forward(self) -> ForwardRun:
        sim = self.simulation(self.event, None)
        self._forward_keeping_ring(sim)
        return ForwardRun(sim, sim.seismograms().data, self.n)

    def _forward_keeping_ring(self, sim: Simulation) -> None:
        begin = time.perf_counter()
        self.reconstruction = ForwardReconstruction(sim)
        self.reconstruction.run_forward(progress=self.bars.enabled)
        self.log.add("forward", sim.time.nt, time.perf_counter() - begin)
        # The ring stays in RAM for the whole pass: the frames get what the budget leaves.
        self.n = self.chunk_length(sim, reserved=self.reconstruction.boundary_nbytes())

    def fill(self, ops: KernelOperators, chunk: Chunk) -> None:
        begin = time.perf_counter()
        rebuilt = self.reconstruction
        before = rebuilt.backward_steps
        # Streamed: frame n needs states n and n + 1 only, so two states are alive at a time
        # (holding the chunk's states took N of them: 7.7 GB on the P1 benchmark).
        newer = None
        for n, state in rebuilt.states_backward(chunk.stop, chunk.start, copy=False):
            if newer is not None:
                ops.fill_frame(n - chunk.start, state, newer)
            newer = {name: array.copy() for name, array in state.items()}
        seconds = time.perf_counter() - begin
        self.log.add("reconstruction", rebuilt.backward_steps - before, seconds)
        self.bars["reconstruction"].update(chunk.length)

    def report(self) -> StorageReport:
        return StorageReport(self.n, 0)


class DispersionOnlyStorage(ReverseStorage):
    """SPECFEM's approximation: synthetics and adjoint source from an attenuating data run; the
    kernel run on the model with Q = inf at the velocities of f_ref, rebuilt backwards."""

    storage = Storage.DISPERSION_ONLY

    def forward(self) -> ForwardRun:
        event = self.event
        data = self.simulation(event, kernel_fit(event.model, event.config, event.f0))
        begin = time.perf_counter()
        traces = data.run(progress=self.bars.enabled).data
        self.log.add("data", event.time.nt, time.perf_counter() - begin)
        sim = self.simulation(dispersed(event), None)  # after the data run: it may share shapes
        self._forward_keeping_ring(sim)
        return ForwardRun(sim, traces, self.n)


STRATEGIES: dict[Storage, type[StorageStrategy]] = {
    Storage.CHECKPOINT: CheckpointStorage,
    Storage.FULL: FullStorage,
    Storage.REVERSE: ReverseStorage,
    Storage.DISPERSION_ONLY: DispersionOnlyStorage,
}


def dispersed(event: Event) -> Event:
    """The event on its model with Q = inf at the velocities of f_ref (moduli dispersed to
    f_ref)."""
    return replace(event, model=event.model.replace(qp=np.inf, qs=np.inf))


def store_identity(sim: Simulation, n_frames: int, storage: Storage) -> dict:
    """What a snapshot store belongs to (with the model arrays, see ``SnapshotStore.open``)."""
    from anelastic import __version__

    grid = sim.model.grid
    return {
        "package": "anelastic",
        "version": __version__,
        "storage": storage.value,
        "grid": [list(grid.shape), list(grid.spacing), list(grid.origin)],
        "dt": sim.time.dt,
        "nt": sim.time.nt,
        "chunk": n_frames,
        **problem_identity(sim),  # physics, precision, model, sources, wavelets, SLS fit
        "decomposition": decomposition.describe(sim.propagator.grid),
    }


class SnapshotRebuilt(UserWarning):
    """A damaged or missing snapshot was found and is being rebuilt by re-running the forward."""


def forward_with_snapshots(
    sim: Simulation, store: SnapshotStore, n_frames: int, log: PassLog, bar
) -> Traces:
    """Run ``sim`` to nt writing the complete state at every chunk start; returns the receiver
    traces {component: [nt, nrec]}. A store left by an earlier run is reused: a completed
    forward is not run again, an interrupted one resumes from its last snapshot, and damaged
    or missing snapshots (reported by name, :class:`SnapshotRebuilt`) are rebuilt by running
    the forward from the nearest good snapshot before them (or from the start)."""
    nt = sim.time.nt
    starts = [c.start for c in chunks(nt, n_frames)]
    damaged = decomposition.union(_damaged(store, starts))  # MPI: what any rank must rebuild
    if decomposition.all_ranks(store.is_complete("forward")):
        traces = _completed_traces(store, nt)
        if decomposition.all_ranks(traces is not None):
            if damaged:
                rebuild_snapshots(sim, store, starts, damaged, log, bar)
            bar.update(nt - bar.n)
            log.add("forward", 0, 0.0)  # reused from a completed run in this store
            return traces
    begin = time.perf_counter()
    _resume_before(sim, store, starts, damaged)
    bar.update(sim.step - bar.n)
    executed = nt - sim.step
    _advance_writing(sim, store, [s for s in starts if s >= sim.step], nt, bar)
    traces = sim.seismograms().data
    store.write(nt, _prefixed(traces), "synthetics")
    store.mark_complete("forward")
    log.add("forward", executed, time.perf_counter() - begin)
    return traces


def rebuild_snapshots(
    sim: Simulation, store: SnapshotStore, starts: list[int], damaged: list[int], log, bar=None
) -> None:
    """Write the snapshots of ``damaged`` steps again: the forward from the nearest good
    snapshot before the first of them (or from step 0) up to the last, bitwise as before
    (logged as the phase ``rebuild``)."""
    begin = time.perf_counter()
    _resume_before(sim, store, starts, damaged)
    first = sim.step
    _advance_writing(sim, store, sorted(damaged), max(damaged), bar)
    log.add("rebuild", sim.step - first, time.perf_counter() - begin)


def _damaged(store: SnapshotStore, starts: list[int]) -> list[int]:
    """Chunk starts whose snapshot should be there (all of a completed forward; up to the last
    one written of an interrupted one) but is missing or of the wrong size (each reported)."""
    latest = store.latest("forward")
    if not store.is_complete("forward"):
        starts = [s for s in starts if latest is not None and s <= latest]
    damaged = []
    for step in starts:
        problem = store.check(step)
        if problem is not None:
            warnings.warn(
                f"{problem} in {store.directory}; rebuilding it", SnapshotRebuilt, stacklevel=3
            )
            damaged.append(step)
    return damaged


def _completed_traces(store: SnapshotStore, nt: int) -> Traces | None:
    """The synthetics of a completed forward, or None when their file is damaged."""
    try:
        saved = store.read(nt, "synthetics")
    except SnapshotDamaged as err:
        warnings.warn(f"{err}; running the forward again", SnapshotRebuilt, stacklevel=3)
        return None
    return {Component(k[len(TRACE_PREFIX) :]): v for k, v in saved.items()}


def _resume_before(sim: Simulation, store: SnapshotStore, starts: list[int], damaged: list[int]):
    """Put ``sim`` in the state of the last good snapshot before the first damaged step (the
    last snapshot if none is damaged; step 0's zero state if there is none)."""
    limit = min(damaged) if damaged else sim.time.nt + 1
    candidates = [s for s in store.steps("forward") if s in starts and s < limit]
    for step in reversed(decomposition.common(candidates)):  # MPI: snapshots every rank has
        saved = _read_or_warn(store, step, stacklevel=4)
        if decomposition.all_ranks(saved is not None):
            _resume(sim, saved, step)
            return
        damaged.append(step)  # its bytes changed (on some rank): rebuild it too
    _resume_at_start(sim)


def _read_or_warn(store: SnapshotStore, step: int, stacklevel: int) -> dict | None:
    """The snapshot of ``step``, or None (with a :class:`SnapshotRebuilt` warning) when its
    bytes changed since it was written."""
    try:
        return store.read(step)
    except SnapshotDamaged as err:
        warnings.warn(f"{err}; rebuilding it", SnapshotRebuilt, stacklevel=stacklevel)
        return None


def _resume_at_start(sim: Simulation) -> None:
    state = sim.state()
    zeros = {name: np.zeros_like(a) for name, a in state.fields.items()}
    sim.restore(SolverState(0, zeros, state.fingerprint))
    sim.restore_traces({c: np.zeros_like(d) for c, d in sim.seismograms().data.items()})


def _advance_writing(sim: Simulation, store: SnapshotStore, steps: list[int], stop: int, bar):
    """Advance ``sim`` to ``stop``, writing its complete state (and traces so far) at each of
    ``steps``. Snapshots are written by one background thread while the next chunk computes
    (file I/O and fsync release the GIL); at most one write is in flight, so at most one extra
    state is held in memory, and an error in a write surfaces at the next snapshot."""
    with ThreadPoolExecutor(max_workers=1) as writer:
        pending = None
        for step in steps:
            sim.advance(step)
            if bar is not None:
                bar.update(max(0, step - bar.n))
            state = {**sim.state().fields, **_prefixed(sim.seismograms().data)}
            if pending is not None:
                pending.result()
            pending = writer.submit(store.write, step, state)
        sim.advance(stop)
        if bar is not None:
            bar.update(max(0, stop - bar.n))
        if pending is not None:
            pending.result()


def _prefixed(traces: Traces) -> dict[str, np.ndarray]:
    """Receiver traces {Component: [nt, nrec]} as store arrays named TRACE_PREFIX + component."""
    return {TRACE_PREFIX + c.value: d for c, d in traces.items()}


def _resume(sim: Simulation, saved: dict[str, np.ndarray], step: int) -> None:
    fields = state_only(saved)
    sim.restore(SolverState(step, fields, sim.fingerprint()))
    traces = {Component(k[len(TRACE_PREFIX) :]): v for k, v in saved.items() if k not in fields}
    sim.restore_traces(traces)


def state_only(saved: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The solver-state arrays of a forward snapshot (without its receiver traces)."""
    return {k: v for k, v in saved.items() if not k.startswith(TRACE_PREFIX)}


def frames_to_disk(ops: KernelOperators, n: int, store: SnapshotStore, log: PassLog, bar) -> None:
    """Full storage that does not fit in RAM: replay the whole run once, first chunk to last,
    writing every frame to the store (namespace ``frames``, one file per chunk of ``n``)."""
    state = state_only(store.read(0))
    for chunk in chunks(ops.sim.time.nt, n):
        begin = time.perf_counter()
        ops.replay(chunk.start, chunk.stop, state)
        state = ops.prop.read_state(chunk.length)  # the state at chunk.stop
        frames = {name: b.data[: chunk.length] for name, b in ops.buffers.items()}
        store.write(chunk.start, frames, "frames")
        log.add("replay", chunk.length, time.perf_counter() - begin)
        bar.update(chunk.length)
