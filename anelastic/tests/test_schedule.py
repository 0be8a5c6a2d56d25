"""Checkpoint schedule arithmetic: chunks tile [0, nt) exactly, budgets give the right N."""

import pytest

from anelastic.kernel.schedule import (
    checkpoint_cost,
    chunk_length_for_budget,
    chunks,
    parse_bytes,
    snapshot_steps,
)


@pytest.mark.parametrize(("nt", "n"), [(100, 10), (101, 10), (7, 7), (7, 100), (1, 1)])
def test_chunks_tile_the_time_axis(nt, n):
    cs = chunks(nt, n)
    assert cs[0].start == 0 and cs[-1].stop == nt
    assert all(a.stop == b.start for a, b in zip(cs, cs[1:], strict=False))
    assert all(0 < c.length <= n for c in cs)
    assert len(cs) == -(-nt // n) == checkpoint_cost(nt, n)["snapshots_on_disk"]
    assert snapshot_steps(nt, n) == [c.start for c in cs]
    assert sum(c.length for c in cs) == nt


def test_parse_bytes():
    assert parse_bytes("2GiB") == 2 * 2**30
    assert parse_bytes("512 MiB") == 512 * 2**20
    assert parse_bytes("1.5gb") == 1_500_000_000
    assert parse_bytes(4096) == 4096
    for bad in ("two gigs", "5 parsecs", "0GiB", ""):
        with pytest.raises(ValueError, match="memory size"):
            parse_bytes(bad)


def test_chunk_length_for_budget():
    assert chunk_length_for_budget(1000, 100, nt=50) == 10
    assert chunk_length_for_budget(10**9, 100, nt=50) == 50
    with pytest.raises(ValueError, match="raise --memory-budget"):
        chunk_length_for_budget(99, 100, nt=50)


def test_costs_are_three_nt():
    cost = checkpoint_cost(2000, 45)
    assert cost["forward_steps"] + cost["replay_steps"] + cost["adjoint_steps"] == 3 * 2000
