"""Thread counts chosen by measurement: the chooser's policy, and results independent of it."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import small_problem

from anelastic.forward import threads as T
from anelastic.forward.simulation import Simulation
from anelastic.forward.threads import ThreadChooser


def fake_call(seconds_per_step: dict[int, float], log: list, clock: list):
    """A call(first, stop, threads) that logs its range and advances a fake clock."""

    def call(first: int, stop: int, threads: int) -> None:
        log.append((first, stop, threads))
        clock[0] += (stop - first) * seconds_per_step[threads]

    return call


def warm(chooser: ThreadChooser) -> ThreadChooser:
    """As after each count's untimed first call (the policy tests start from there)."""
    chooser._warmed.update(chooser.candidates)
    return chooser


@pytest.fixture
def fake_clock(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(T.time, "perf_counter", lambda: clock[0])
    return clock


def test_fixed_count_never_probes_and_runs_one_call(fake_clock):
    log: list = []
    chooser = ThreadChooser(fixed=3)
    chooser.run(fake_call({3: 1.0}, log, fake_clock), 0, 500)
    assert log == [(0, 500, 3)]
    assert not chooser.probing and chooser.best() == 3


def test_probes_each_candidate_in_short_calls_then_uses_the_fastest(fake_clock):
    log: list = []
    chooser = warm(ThreadChooser(candidates=(1, 2)))
    chooser.run(fake_call({1: 1.0, 2: 3.0}, log, fake_clock), 0, 1000)
    p = T.PROBE_STEPS
    assert T.PROBES_PER_COUNT == 2  # the first timings alternate: 1, 2, 1, 2
    assert log[:4] == [(0, p, 1), (p, 2 * p, 2), (2 * p, 3 * p, 1), (3 * p, 4 * p, 2)]
    assert log[4] == (4 * p, 1000, 1)  # the rest in one call on the faster count
    assert chooser.best() == 1
    assert chooser.per_step == {1: 1.0, 2: 3.0}


def test_each_count_first_runs_a_short_untimed_call(fake_clock):
    """Thread start-up and first page touches would make the first timing of a count slow."""
    log: list = []
    chooser = ThreadChooser(candidates=(1, 2))
    chooser.run(fake_call({1: 1.0, 2: 0.5}, log, fake_clock), 0, 300)
    w, p = T.WARMUP_STEPS, T.PROBE_STEPS
    assert log[:4] == [
        (0, w, 1),
        (w, w + p, 1),
        (w + p, 2 * w + p, 2),
        (2 * w + p, 2 * w + 2 * p, 2),
    ]
    assert chooser.per_step == {1: 1.0, 2: 0.5} and chooser.best() == 2


def test_steps_are_covered_once_in_order(fake_clock):
    log: list = []
    chooser = warm(ThreadChooser(candidates=(1, 2, 4)))
    call = fake_call({1: 2.0, 2: 1.0, 4: 1.5}, log, fake_clock)
    for start in range(0, 3000, 250):
        chooser.run(call, start, start + 250)
    covered = [n for first, stop, _ in log for n in range(first, stop)]
    assert covered == list(range(3000))
    assert chooser.best() == 2


def test_reprobes_and_follows_a_change_of_load(fake_clock):
    """Two threads are slow under competition, so one is chosen; when the competing process ends,
    only a re-timing of the count not in use (a short call) can see it: the choice moves back."""
    speeds = {1: 2.0, 2: 10.0}
    log: list = []
    chooser = warm(ThreadChooser(candidates=(1, 2)))
    call = fake_call(speeds, log, fake_clock)
    chooser.run(call, 0, 250)
    assert chooser.best() == 1
    speeds[2] = 1.0  # the competing process ended
    for start in range(250, 250 * (T.REPROBE_EVERY + 2), 250):
        chooser.run(call, start, start + 250)
    assert chooser.best() == 2
    retimings = [stop - first for first, stop, threads in log[2:] if threads == 2]
    assert retimings[0] <= T.PROBE_STEPS
    assert log[-1][1] - log[-1][0] == 250 and log[-1][2] == 2  # back to whole calls on 2


def test_unsplittable_calls_are_timed_whole(fake_clock):
    chooser = warm(ThreadChooser(candidates=(1, 2)))
    seen = []

    def call(threads: int) -> None:
        seen.append(threads)
        fake_clock[0] += 45 * (1.0 if threads == 2 else 1.5)

    for _ in range(6):
        chooser.timed(call, 45)
    assert seen == [1, 2, 1, 2, 2, 2]


def test_short_calls_are_not_timed(fake_clock):
    """A call's fixed cost would dominate a few steps: such calls leave the choice open."""
    chooser = warm(ThreadChooser(candidates=(1, 2)))
    chooser.run(fake_call({1: 1.0, 2: 1.0}, [], fake_clock), 0, T.MIN_TIMED_STEPS - 1)
    assert chooser.probing and chooser.per_step == {}


def test_invalid_thread_counts_refused():
    with pytest.raises(ValueError, match="threads must be >= 1"):
        ThreadChooser(fixed=0)
    model, sources, receivers, time, config = small_problem()
    with pytest.raises(ValueError, match="threads must be >= 1"):
        Simulation(model, sources, receivers, time, config, threads=0)


def test_measured_thread_counts_give_the_fixed_count_result(monkeypatch):
    """Bitwise: every grid point is updated by one thread with the same arithmetic."""
    monkeypatch.setattr(T, "PROBE_STEPS", 7)  # several probing calls within 200 steps
    monkeypatch.setattr(T, "MIN_TIMED_STEPS", 1)
    monkeypatch.setattr(T, "REPROBE_EVERY", 3)
    problem = small_problem()
    fixed = Simulation(*problem, threads=1).run()
    auto_sim = Simulation(*problem)
    auto_sim.propagator.auto_threads = ThreadChooser(candidates=(1, 2))
    auto = auto_sim.run()
    assert {threads for threads, _, _ in auto_sim.propagator.auto_threads.history} == {1, 2}
    for comp in fixed.data:
        np.testing.assert_array_equal(fixed.data[comp], auto.data[comp])


def test_confirmed_choice_backs_off_the_retimings(fake_clock):
    """On a machine that stays busy, each re-timing of the slow count doubles the interval."""
    log: list = []
    chooser = warm(ThreadChooser(candidates=(1, 2)))
    call = fake_call({1: 1.0, 2: 5.0}, log, fake_clock)
    for start in range(0, 250 * 200, 250):
        chooser.run(call, start, start + 250)
    retimings = [k for k, (_, _, threads) in enumerate(log) if threads == 2][T.PROBES_PER_COUNT :]
    gaps = np.diff(retimings)
    intervals = [2 * T.REPROBE_EVERY, 4 * T.REPROBE_EVERY, T.MAX_REPROBE_EVERY]
    assert list(gaps[:3]) == [n + 1 for n in intervals]  # + the rest of the probe's chunk
    assert chooser.best() == 1
