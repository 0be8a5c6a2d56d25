"""The feature store: bit-exact round trip, resume after an interruption without losing or
repeating a record, skipped records counted, another target's store refused."""

import pytest
import torch

from hivis.train.features import (
    PER_ROW,
    FeatureStore,
    FeatureStoreMismatch,
    RecordFeatures,
    SkipRecord,
    generate_feature_stores,
    generate_features,
)

TARGET = {"family": "llava", "path": "/models/tiny", "hidden_size": 8, "vocab_size": 50}


def fake_extract(record: int) -> RecordFeatures:
    if record % 5 == 4:
        raise SkipRecord("too long")
    g = torch.Generator().manual_seed(record)
    s = 3 + record % 4
    return RecordFeatures(
        f"r{record}",
        input_ids=torch.randint(0, 50, (s,), generator=g),
        loss_mask=torch.rand(s, generator=g) > 0.5,
        hidden_in=torch.randn(s, 8, generator=g, dtype=torch.float32),
        hidden_out=torch.randn(s, 8, generator=g, dtype=torch.float32),
        positions=torch.arange(s).repeat(3, 1) + record,
        contiguous=torch.arange(s) > 0,
    )


class Interrupt(Exception):
    pass


def test_round_trip_and_resume_equal_an_uninterrupted_run(tmp_path):
    records = list(range(17))
    reference = generate_features(
        records, fake_extract, FeatureStore.open(tmp_path / "a", TARGET, 3)
    )

    def crashing(record):
        if record == 11:
            raise Interrupt
        return fake_extract(record)

    with pytest.raises(Interrupt):
        generate_features(records, crashing, FeatureStore.open(tmp_path / "b", TARGET, 3))
    partial = FeatureStore.open(tmp_path / "b", TARGET)
    assert partial.records_done == 11 and "complete" not in partial.manifest
    seen = []

    def counting(record):
        seen.append(record)
        return fake_extract(record)

    resumed = generate_features(records, counting, partial)
    assert seen == list(range(11, 17))
    assert resumed.manifest["skipped"] == {"too long": 3} == reference.manifest["skipped"]
    a, b = reference.load_all(), resumed.load_all()
    assert (
        [f.record_id for f in a]
        == [f.record_id for f in b]
        == [f"r{i}" for i in records if i % 5 != 4]
    )
    for x, y in zip(a, b, strict=True):
        for name in PER_ROW:
            assert torch.equal(getattr(x, name), getattr(y, name))
        assert torch.equal(x.hidden_out, fake_extract(int(x.record_id[1:])).hidden_out)


def test_several_stores_from_one_extraction_each_resume_on_their_own(tmp_path):
    """Two stores filled by one pass equal each filled alone; a store that is ahead is not
    written again, and records both have are not extracted again."""
    records = list(range(13))
    alone = generate_features(records, fake_extract, FeatureStore.open(tmp_path / "a", TARGET, 3))
    ahead = FeatureStore.open(tmp_path / "ahead", TARGET, 3)
    with pytest.raises(Interrupt):
        generate_features(records, lambda r: _crash_at(r, 8), ahead)
    behind = FeatureStore.open(tmp_path / "behind", TARGET, 3)
    with pytest.raises(Interrupt):
        generate_features(records, lambda r: _crash_at(r, 5), behind)
    seen = []

    def both(record):
        seen.append(record)
        return {"ahead": fake_extract(record), "behind": fake_extract(record)}

    stores = {"ahead": FeatureStore.open(tmp_path / "ahead", TARGET), "behind": behind}
    assert (stores["ahead"].records_done, behind.records_done) == (7, 3)  # whole shards of 3 rows
    generate_feature_stores(records, both, stores)
    assert seen == list(range(3, 13))
    for store in stores.values():
        assert store.manifest["complete"] and store.manifest["skipped"] == {"too long": 2}
        ids = [f.record_id for f in store.load_all()]
        assert ids == [f.record_id for f in alone.load_all()]


def _crash_at(record: int, where: int) -> RecordFeatures:
    if record == where:
        raise Interrupt
    return fake_extract(record)


def test_store_of_another_target_is_refused(tmp_path):
    FeatureStore.open(tmp_path, TARGET)
    with pytest.raises(FeatureStoreMismatch, match="hidden_size: store 8 vs 16"):
        FeatureStore.open(tmp_path, {**TARGET, "hidden_size": 16})


def test_inconsistent_shapes_are_refused():
    with pytest.raises(ValueError, match="inconsistent feature shapes"):
        RecordFeatures(
            "x",
            input_ids=torch.zeros(3),
            loss_mask=torch.zeros(3, dtype=torch.bool),
            hidden_in=torch.zeros(4, 8),
            hidden_out=torch.zeros(4, 8),
            positions=torch.zeros(1, 3),
            contiguous=torch.zeros(3, dtype=torch.bool),
        )
