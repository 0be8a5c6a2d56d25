"""The thread count of each operator call, chosen by measurement when the user sets none.

Why measure: on a 2-core machine two OpenMP threads beat one only while the second core is free.
A time step has several short parallel loops; when another process holds a core, the thread that
shares it reaches each loop's barrier a scheduler slice late and the step waits for it (measured
on benchmark P1 with one competing process: 2 threads 1.2-40x slower than 1 thread, depending on
the wait policy). No fixed count is right on a shared machine, so a :class:`ThreadChooser` times
real work: after one short untimed call per count (OpenMP starts its threads, pages are first
touched), the first calls try each candidate once, later calls use the fastest per step, and
every few calls the others are re-timed (always in short calls), so a process that starts or
stops competing mid-run changes the choice within seconds. Results do not depend on the
count: each grid point is updated by one thread with the same arithmetic, and sparse injection
runs on one thread (``nthreads_nonaffine=1``).

A user who sets ``threads`` gets exactly that count (:class:`ThreadChooser` with ``fixed``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from functools import partial

from anelastic.forward import decomposition

PROBE_STEPS = 32  # steps per probing call: long enough to time, short enough to waste little
REPROBE_EVERY = 12  # timed calls between re-timings of the candidates not in use ...
MAX_REPROBE_EVERY = 96  # ... doubled (up to this) each time a re-timing confirms the choice
MIN_TIMED_STEPS = 16  # shorter calls are not timed: a call's fixed cost (~ms) would dominate
PROBES_PER_COUNT = 2  # first timings per count, alternated; the fastest of them counts
WARMUP_STEPS = 4  # an untimed first call per count: it starts OpenMP's threads, touches pages


def available_cores() -> int:
    """Cores this process may run on (the affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_candidates(cores: int | None = None) -> tuple[int, ...]:
    """1 thread and, if there are more cores, 2 and the core count (at most three candidates)."""
    cores = available_cores() if cores is None else cores
    return tuple(sorted({1, min(2, cores), cores}))


class ThreadChooser:
    """Thread count per operator call: ``fixed`` if given, else the fastest measured candidate.

    Seconds per step are kept per candidate as the latest measurement (a machine's load changes,
    so old figures are replaced, not averaged).
    """

    def __init__(self, fixed: int | None = None, candidates: tuple[int, ...] | None = None):
        if fixed is not None and fixed < 1:
            raise ValueError(f"threads must be >= 1 (got {fixed})")
        self.fixed = fixed
        self.candidates = (fixed,) if fixed is not None else (candidates or default_candidates())
        self.per_step: dict[int, float] = {}
        self._first_timings: dict[int, list[float]] = {c: [] for c in self.candidates}
        self.calls = 0  # timed calls
        self.reprobe_every = REPROBE_EVERY
        self._next_reprobe = REPROBE_EVERY
        self._warmed: set[int] = set()  # counts that have run once (untimed)
        self.history: list[tuple[int, int, float]] = []  # (threads, steps, seconds) per call

    @property
    def probing(self) -> bool:
        """True while some candidate has fewer than :data:`PROBES_PER_COUNT` timings (never with
        one candidate)."""
        counts = self._first_timings.values()
        return len(self.candidates) > 1 and any(len(t) < PROBES_PER_COUNT for t in counts)

    def best(self) -> int:
        """The fastest candidate measured so far; while probing, the least-timed one (so the
        first timings alternate between the counts: one noisy timing cannot decide)."""
        if len(self.candidates) == 1:
            return self.candidates[0]
        if self.probing:
            return min(self.candidates, key=lambda c: len(self._first_timings[c]))
        return min(self.candidates, key=lambda c: self.per_step[c])

    def next_call(self) -> tuple[int, bool]:
        """(threads, is_probe) for the next call: untimed candidates first, then the best,
        re-timing one of the others when :attr:`reprobe_every` timed calls have passed. Probe
        calls are kept short by :meth:`run` (a candidate may be many times slower)."""
        if self.probing:
            return self.best(), True
        if len(self.candidates) > 1 and self.calls >= self._next_reprobe:
            others = [c for c in self.candidates if c != self.best()]
            return others[(self.calls // REPROBE_EVERY) % len(others)], True
        return self.best(), False

    def record(self, threads: int, steps: int, seconds: float) -> None:
        """One call's measurement: ``steps`` time steps on ``threads`` threads took ``seconds``.
        A re-timing that leaves the choice as it was doubles the interval to the next one (a
        machine that stays busy costs few slow probes); one that changes it resets it."""
        self.history.append((threads, steps, seconds))
        if steps < MIN_TIMED_STEPS:
            return
        before = self.best()
        reprobe = not self.probing and threads != before
        self.calls += 1
        first = self._first_timings.setdefault(threads, [])
        if len(first) < PROBES_PER_COUNT:
            first.append(seconds / steps)
            self.per_step[threads] = min(first)
        else:
            self.per_step[threads] = seconds / steps
        if reprobe:
            changed = self.best() != before
            self.reprobe_every = (
                REPROBE_EVERY if changed else min(2 * self.reprobe_every, MAX_REPROBE_EVERY)
            )
            self._next_reprobe = self.calls + self.reprobe_every

    def _needs_warmup(self, threads: int) -> bool:
        """A count's first call is not timed (with one candidate nothing is compared)."""
        return len(self.candidates) > 1 and threads not in self._warmed

    def run(self, call: Callable[[int, int, int], None], start: int, stop: int) -> None:
        """Steps ``start .. stop-1`` as timed ``call(first, last_plus_one, threads)`` pieces;
        a probing piece is at most :data:`PROBE_STEPS` long."""
        while start < stop:
            threads, probe = self.next_call()
            warmup = self._needs_warmup(threads)
            length = WARMUP_STEPS if warmup else PROBE_STEPS if probe else stop - start
            end = min(stop, start + length)
            self._call_and_record(partial(call, start, end, threads), threads, end - start, warmup)
            start = end

    def timed(self, call: Callable[[int], None], steps: int) -> None:
        """One timed ``call(threads)`` of ``steps`` time steps, never split (an operator whose
        calls cannot be cut, e.g. a backward chunk; probing then uses whole calls)."""
        threads, _ = self.next_call()
        self._call_and_record(partial(call, threads), threads, steps, self._needs_warmup(threads))

    def _call_and_record(self, call: Callable[[], None], threads: int, steps: int, warmup: bool):
        """Run ``call``; record its time, or only log it if it is a count's warm-up call."""
        t0 = time.perf_counter()
        call()
        seconds = time.perf_counter() - t0
        if warmup:
            self._warmed.add(threads)
            self.history.append((threads, steps, seconds))
        else:
            self.record(threads, steps, seconds)

    def or_fixed(self, fixed: int | None) -> ThreadChooser:
        """A chooser of exactly ``fixed`` threads if the user set a count, else this one.

        Under MPI the count is fixed too (the node's cores shared among its ranks): ranks wait
        for each other's halos at every step, so one rank's timing says little about a count,
        and one count per operator keeps one set of scattered sparse data (traces)."""
        if fixed is None and decomposition.mpi_active():
            fixed = decomposition.threads_per_rank()
        return ThreadChooser(fixed) if fixed is not None else self

    def summary(self) -> dict:
        """Steps and seconds per thread count over all calls, and the current choice."""
        out: dict[str, dict] = {}
        for threads, steps, seconds in self.history:
            entry = out.setdefault(str(threads), {"calls": 0, "steps": 0, "seconds": 0.0})
            entry["calls"] += 1
            entry["steps"] += steps
            entry["seconds"] += seconds
        return {"fixed": self.fixed, "choice": self.best(), "by_threads": out}
