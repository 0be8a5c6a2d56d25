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
  (:mod:`anelastic.kernel.reconstruction`); only possible without attenuation (running a dissipative
  scheme backwards amplifies roundoff exponentially); 3 nt steps.
- ``dispersion-only``: SPECFEM's approximation: the kernel run uses the model with Q = inf at
  the velocities of ``f_ref`` (dispersed moduli, no memory variables), rebuilt backwards like
  ``reverse``; the adjoint source comes from a data run with full attenuation. 4 nt steps.

Forward runs and kernel passes survive interruption: the forward resumes from its last
snapshot (receiver traces recorded so far are part of each snapshot), and the kernel pass
writes its own restart point (adjoint state + gradients) after chunks, at most every
``restart_interval`` seconds.
"""

from __future__ import annotations

import enum
import hashlib
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from anelastic.acquisition import Component
from anelastic.forward.state import SolverState
from anelastic.kernel.schedule import Chunk, chunks
from anelastic.kernel.snapshots import SnapshotStore

TRACE_PREFIX = "__traces_"


class Storage(enum.Enum):
    CHECKPOINT = "checkpoint"
    FULL = "full"
    REVERSE = "reverse"
    DISPERSION_ONLY = "dispersion-only"


@dataclass
class PassLog:
    """Steps and wall time per phase of one kernel computation."""

    steps: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, phase: str, steps: int, seconds: float) -> None:
        self.steps[phase] = self.steps.get(phase, 0) + int(steps)
        self.seconds[phase] = self.seconds.get(phase, 0.0) + float(seconds)


def store_identity(sim, n_frames: int, storage: Storage) -> dict:
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
        "physics": repr(sim.config),
        "problem": sim.fingerprint(),  # model, sources, wavelets, SLS fit, dt, nt
    }


def forward_with_snapshots(sim, store: SnapshotStore, n_frames: int, log: PassLog, bar) -> dict:
    """Run ``sim`` to nt writing the complete state at every chunk start; resume from the last
    snapshot of an interrupted run; returns the receiver traces {component: [nt, nrec]}."""
    nt = sim.time.nt
    if store.is_complete("forward"):
        saved = store.read(nt, "synthetics")
        bar.update(nt)
        log.add("forward", 0, 0.0)  # reused from a completed run in this store
        return {Component(k[len(TRACE_PREFIX) :]): v for k, v in saved.items()}
    starts = [c.start for c in chunks(nt, n_frames)]
    done = [s for s in store.steps("forward") if s in starts]
    if done:
        _resume(sim, store.read(done[-1]), done[-1])
        bar.update(done[-1])
    begin = time.perf_counter()
    executed = 0
    # Snapshots are written by one background thread while the next chunk computes (file I/O
    # and fsync release the GIL); at most one write is in flight, so at most one extra state is
    # held in memory, and an error in a write surfaces at the next snapshot.
    with ThreadPoolExecutor(max_workers=1) as writer:
        pending = None
        for start in starts:
            if start < sim.step:
                continue
            executed += start - sim.step
            sim.advance(start)
            bar.update(start - bar.n)
            state = {**sim.state().fields, **_prefixed(sim.seismograms().data)}
            if pending is not None:
                pending.result()
            pending = writer.submit(store.write, start, state)
        executed += nt - sim.step
        sim.advance(nt)
        bar.update(nt - bar.n)
        if pending is not None:
            pending.result()
    traces = sim.seismograms().data
    store.write(nt, _prefixed(traces), "synthetics")
    store.mark_complete("forward")
    log.add("forward", executed, time.perf_counter() - begin)
    return traces


def _prefixed(traces: dict) -> dict[str, np.ndarray]:
    """Receiver traces {Component: [nt, nrec]} as store arrays named TRACE_PREFIX + component."""
    return {TRACE_PREFIX + c.value: d for c, d in traces.items()}


def _resume(sim, saved: dict[str, np.ndarray], step: int) -> None:
    fields = _state_only(saved)
    sim.restore(SolverState(step, fields, sim.fingerprint()))
    traces = {Component(k[len(TRACE_PREFIX) :]): v for k, v in saved.items() if k not in fields}
    sim.restore_traces(traces)


def residual_digest(residual: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(residual).tobytes()).hexdigest()[:32]


@dataclass
class KernelRestart:
    """Restart points of the kernel pass in the store's ``adjoint`` namespace."""

    store: SnapshotStore | None
    digest: str
    interval: float
    _last: float = field(default_factory=time.perf_counter)

    def resume_step(self, ops) -> int | None:
        """Restore the most advanced restart point made with the same residual, if any."""
        if self.store is None:
            return None
        for step in self.store.steps("adjoint"):
            saved = self.store.read(step, "adjoint")
            if str(saved.pop("__residual__").reshape(-1)[0]) != self.digest:
                self.store.clear("adjoint")  # another misfit or data: start the pass over
                return None
            for name, f in ops.adjoint.items():
                f.data[1] = saved[name]
            for name, g in ops.grads.items():
                g.data[:] = saved[f"grad__{name}"]
            return step
        return None

    def maybe_save(self, ops, step: int, force: bool = False) -> None:
        if self.store is None or (not force and time.perf_counter() - self._last < self.interval):
            return
        arrays = {name: np.array(f.data[1]) for name, f in ops.adjoint.items()}
        arrays.update({f"grad__{n}": np.array(g.data) for n, g in ops.grads.items()})
        arrays["__residual__"] = np.array(self.digest)
        old = self.store.steps("adjoint")
        self.store.write(step, arrays, "adjoint")
        for s in old:  # keep only the newest restart point
            if s != step:
                self.store._path("adjoint", s).unlink(missing_ok=True)
        self._last = time.perf_counter()


def checkpoint_pass(ops, n: int, store, residual, restart: KernelRestart, log: PassLog, bars):
    """Chunks of ``n`` steps, last to first: restore, replay into the buffer, adjoint."""
    resume = restart.resume_step(ops)
    for chunk in reversed(chunks(ops.sim.time.nt, n)):
        if resume is not None and chunk.start >= resume:
            _advance_bars(bars, chunk.length)
            continue
        begin = time.perf_counter()
        ops.replay(chunk.start, chunk.stop, _state_only(store.read(chunk.start)))
        log.add("replay", chunk.length, time.perf_counter() - begin)
        bars[0].update(chunk.length)
        _adjoint(ops, chunk, residual, log, bars[1])
        restart.maybe_save(ops, chunk.start)


def frames_to_disk(ops, n: int, store: SnapshotStore, log: PassLog, bar) -> None:
    """Full storage that does not fit in RAM: replay the whole run once, first chunk to last,
    writing every frame to the store (namespace ``frames``, one file per chunk of ``n``)."""
    state = _state_only(store.read(0))
    for chunk in chunks(ops.sim.time.nt, n):
        begin = time.perf_counter()
        ops.replay(chunk.start, chunk.stop, state)
        state = ops.prop.read_state(chunk.length)  # the state at chunk.stop
        frames = {name: b.data[: chunk.length] for name, b in ops.buffers.items()}
        store.write(chunk.start, frames, "frames")
        log.add("replay", chunk.length, time.perf_counter() - begin)
        bar.update(chunk.length)


def disk_frames_pass(ops, n: int, store: SnapshotStore, residual, log: PassLog, bar) -> None:
    """The adjoint over chunks of ``n``, last to first, reading the frames from the store."""
    for chunk in reversed(chunks(ops.sim.time.nt, n)):
        for name, data in store.read(chunk.start, "frames").items():
            ops.buffers[name].data[: chunk.length] = data
        _adjoint(ops, chunk, residual, log, bar)


def _state_only(saved: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: v for k, v in saved.items() if not k.startswith(TRACE_PREFIX)}


def reconstruction_pass(ops, n: int, reconstruction, residual, log: PassLog, bars) -> None:
    """Chunks of ``n`` steps, last to first: rebuild the forward frames backwards, adjoint."""
    for chunk in reversed(chunks(ops.sim.time.nt, n)):
        begin = time.perf_counter()
        before = reconstruction.backward_steps
        states = dict(reconstruction.states_backward(chunk.stop, chunk.start))
        for tau in range(chunk.length):
            n = chunk.start + tau
            ops.fill_frame(tau, states[n], states[n + 1])
        log.add(
            "reconstruction", reconstruction.backward_steps - before, time.perf_counter() - begin
        )
        bars[0].update(chunk.length)
        _adjoint(ops, chunk, residual, log, bars[1])


def _adjoint(ops, chunk: Chunk, residual, log: PassLog, bar) -> None:
    begin = time.perf_counter()
    ops.adjoint_chunk(chunk.start, chunk.stop, residual)
    log.add("adjoint", chunk.length, time.perf_counter() - begin)
    bar.update(chunk.length)


def _advance_bars(bars, n: int) -> None:
    for bar in bars:
        bar.update(n)
