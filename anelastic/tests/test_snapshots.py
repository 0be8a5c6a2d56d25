"""The snapshot store: bit-exact round trips, atomic writes, resume points, refusal of a store
made for another run."""

import numpy as np
import pytest

from anelastic.kernel.snapshots import SnapshotDamaged, SnapshotStore, StoreMismatchError

IDENTITY = {"shape": [20, 30], "dt": 1e-3, "nt": 100, "chunk": 10, "physics": "viscoacoustic"}


def model_arrays(vp: float = 2000.0) -> dict[str, np.ndarray]:
    return {"vp": np.full((20, 30), vp, np.float32), "rho": np.full((20, 30), 2000.0, np.float32)}


def random_state(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "p": rng.standard_normal((2, 20, 30)).astype(np.float32),
        "memory": rng.standard_normal((3, 2, 20, 30)).astype(np.float32),
        "psi_x": rng.standard_normal((2, 4, 30)).astype(np.float64),
    }


def test_round_trip_is_bit_exact(tmp_path):
    store = SnapshotStore.open(tmp_path / "s", IDENTITY, model_arrays())
    state = random_state(0)
    store.write(40, state)
    back = store.read(40)
    assert back.keys() == state.keys()
    for name in state:
        assert back[name].dtype == state[name].dtype
        assert back[name].tobytes() == state[name].tobytes()


def test_steps_namespaces_and_resume_point(tmp_path):
    store = SnapshotStore.open(tmp_path, IDENTITY)
    for step in (0, 10, 20):
        store.write(step, random_state(step))
    store.write(90, random_state(9), namespace="kernel")
    reopened = SnapshotStore.open(tmp_path, IDENTITY)
    assert reopened.steps() == [0, 10, 20]
    assert reopened.latest() == 20
    assert reopened.latest("kernel") == 90
    assert not reopened.is_complete()
    reopened.mark_complete()
    assert SnapshotStore.open(tmp_path, IDENTITY).is_complete()
    reopened.clear("kernel")
    assert reopened.latest("kernel") is None and reopened.steps() == [0, 10, 20]
    assert reopened.nbytes() > 3 * sum(a.nbytes for a in random_state(0).values())


def test_crash_leftovers_never_read_as_snapshots(tmp_path):
    store = SnapshotStore.open(tmp_path, IDENTITY)
    store.write(0, random_state(0))
    # A crash in the middle of writing step 10 leaves only the hidden temporary file.
    (tmp_path / ".forward_00000010.snap.tmp").write_bytes(b"PK\x03\x04 half a zip")
    assert store.steps() == [0]
    SnapshotStore.open(tmp_path, IDENTITY)
    assert not (tmp_path / ".forward_00000010.snap.tmp").exists()


def test_corrupt_snapshot_is_reported_not_returned(tmp_path):
    store = SnapshotStore.open(tmp_path, IDENTITY)
    store.write(0, random_state(0))
    path = tmp_path / "forward_00000000.snap"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(OSError, match="unreadable"):
        store.read(0)
    with pytest.raises(SnapshotDamaged, match=r"holds steps \[0\]"):
        store.read(5)


def test_store_of_another_run_is_refused(tmp_path):
    SnapshotStore.open(tmp_path, IDENTITY, model_arrays())
    with pytest.raises(StoreMismatchError, match="chunk: store has 10, run has 20"):
        SnapshotStore.open(tmp_path, {**IDENTITY, "chunk": 20}, model_arrays())
    with pytest.raises(StoreMismatchError, match="model arrays differ"):
        SnapshotStore.open(tmp_path, IDENTITY, model_arrays(vp=2100.0))
    SnapshotStore.open(tmp_path, dict(reversed(IDENTITY.items())), model_arrays())


def test_bad_arguments(tmp_path):
    store = SnapshotStore.open(tmp_path, IDENTITY)
    with pytest.raises(ValueError, match="namespace"):
        store.write(0, random_state(0), namespace="../evil")
    with pytest.raises(ValueError, match="step"):
        store.write(-1, random_state(0))
