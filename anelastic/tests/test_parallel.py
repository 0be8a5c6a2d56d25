"""Many events on Dask: the summed kernels equal the serial sum, whatever the completion
order; a failing event is reported by index and the others' results are kept."""

import numpy as np
import pytest

from anelastic.app.parallel import EventsFailed, run_events


def fake_event_kernels(event):
    seed, fail = event
    if fail:
        raise RuntimeError(f"source {seed} outside the grid")
    rng = np.random.default_rng(seed)
    return {"K_alpha": rng.standard_normal((4, 5)), "K_rho": rng.standard_normal((4, 5))}, seed**2


def test_sum_over_events_equals_serial_sum():
    events = [(s, False) for s in range(5)]
    result = run_events(fake_event_kernels, events, n_workers=2, processes=False, progress=False)
    expected = {}
    for event in events:
        for name, k in fake_event_kernels(event)[0].items():
            expected[name] = expected.get(name, 0) + k
    for name in expected:
        np.testing.assert_allclose(result.total[name], expected[name], rtol=1e-12)
    assert result.per_event == {i: i**2 for i in range(5)}


def test_failed_event_is_named_and_others_kept():
    events = [(0, False), (1, True), (2, False)]
    with pytest.raises(EventsFailed, match="event 1: RuntimeError: source 1 outside") as info:
        run_events(fake_event_kernels, events, n_workers=2, processes=False, progress=False)
    assert sorted(info.value.partial.per_event) == [0, 2]
    expected = (
        fake_event_kernels((0, False))[0]["K_rho"] + fake_event_kernels((2, False))[0]["K_rho"]
    )
    np.testing.assert_allclose(info.value.partial.total["K_rho"], expected)


def test_no_events_is_an_error():
    with pytest.raises(ValueError, match="no events"):
        run_events(fake_event_kernels, [])


def test_default_process_cluster_runs_events():
    # The path users take: a LocalCluster of worker processes.
    result = run_events(fake_event_kernels, [(3, False), (4, False)], n_workers=2, progress=False)
    assert result.per_event == {0: 9, 1: 16}
