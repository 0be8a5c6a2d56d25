"""The feature store: what the target computes once per record, for drafter training.

A store is a directory::

    manifest.json           format, the target it was made with, the shards, the skip log
    shard_00000.safetensors tensors of up to ``shard_size`` records, concatenated along text
    shard_00001.safetensors positions, with per-record offsets

Per record, one entry per drafter row j (the drafter's row convention, see
:mod:`hivis.drafter` and :mod:`hivis.train.extract`; visual rows removed for HiViS):

- ``input_ids`` [S] int64: the row's token x_j;
- ``loss_mask`` [S] bool: True where the row's prediction (token x_{j+1}) is an assistant token;
- ``hidden_in`` [S, H]: the target's last-layer hidden state f_{j-1} fed with x_j;
- ``hidden_out`` [S, H]: f_j, the state the row must predict (its LM-head distribution is the
  target's distribution of x_{j+1});
- ``positions`` [P, S] int64: the positions the target gave the tokens (P = 1, or 3 for
  M-RoPE), so the drafter sees the same positions as at inference;
- ``contiguous`` [S] bool: row j-1 is sequence position j-1, so a multi-step trajectory may
  continue from it (false after a removed visual span and at row 0).

Shards are written atomically (temporary file, then rename) and the manifest last, so an
interrupted run resumes after the last complete shard without losing or repeating a record.
A store made by another target is refused: features are only meaningful for their target.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

FORMAT_VERSION = 1
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class RecordFeatures:
    """Features of one record; shapes as in the module docstring."""

    record_id: str
    input_ids: torch.Tensor
    loss_mask: torch.Tensor
    hidden_in: torch.Tensor
    hidden_out: torch.Tensor
    positions: torch.Tensor
    contiguous: torch.Tensor

    def __post_init__(self) -> None:
        s = self.input_ids.shape[0]
        shapes_ok = (
            self.input_ids.ndim == 1
            and self.loss_mask.shape == (s,)
            and self.contiguous.shape == (s,)
            and self.hidden_in.ndim == 2
            and self.hidden_in.shape[0] == s
            and self.hidden_out.shape == self.hidden_in.shape
            and self.positions.ndim == 2
            and self.positions.shape[1] == s
        )
        if not shapes_ok:
            shapes = {name: tuple(getattr(self, name).shape) for name in PER_ROW}
            raise ValueError(f"record {self.record_id}: inconsistent feature shapes {shapes}")


PER_ROW = ("input_ids", "loss_mask", "hidden_in", "hidden_out", "positions", "contiguous")
"""Per-row tensors of a record; ``positions`` has rows on its last axis, the others first."""


class FeatureStoreMismatch(ValueError):
    """The store was made with another target."""


class FeatureStore:
    """Sharded safetensors features with a manifest naming the target."""

    def __init__(self, directory: Path, manifest: dict[str, Any]) -> None:
        self.directory = directory
        self.manifest = manifest

    @classmethod
    def open(cls, directory: str | Path, target: Mapping[str, Any], shard_size: int = 256):
        """Open or create the store for ``target`` (a JSON-able description: family, path,
        hidden size, vocabulary size, ...). Refuses a store made for another target."""
        if shard_size < 1:
            raise ValueError(f"shard_size must be >= 1, got {shard_size}")
        directory = Path(directory)
        target = json.loads(json.dumps(dict(target)))
        path = directory / MANIFEST
        if path.exists():
            manifest = json.loads(path.read_text())
            check_target(manifest, target, directory)
            return cls(directory, manifest)
        directory.mkdir(parents=True, exist_ok=True)
        manifest = {
            "format": FORMAT_VERSION,
            "target": target,
            "shard_size": shard_size,
            "shards": [],
            "records": 0,
            "skipped": {},
        }
        store = cls(directory, manifest)
        store._write_manifest()
        return store

    @property
    def records_done(self) -> int:
        """Input records already handled (stored or skipped): where a resumed run continues."""
        return int(self.manifest["records"])

    @property
    def num_features(self) -> int:
        return sum(s["count"] for s in self.manifest["shards"])

    def append_shard(self, features: list[RecordFeatures], records_handled: int, skipped) -> None:
        """Write one shard atomically, then record it (and the input records it consumed,
        stored or skipped, and the skip counts) in the manifest."""
        name = f"shard_{len(self.manifest['shards']):05d}.safetensors"
        if features:
            tensors = pack(features)
            tmp = self.directory / f".{name}.tmp"
            save_file(
                tensors, str(tmp), metadata={"ids": json.dumps([f.record_id for f in features])}
            )
            os.replace(tmp, self.directory / name)
            self.manifest["shards"].append({"file": name, "count": len(features)})
        self.manifest["records"] += records_handled
        for reason, n in dict(skipped).items():
            self.manifest["skipped"][reason] = self.manifest["skipped"].get(reason, 0) + n
        self._write_manifest()

    def record_read_skips(self, counts: Mapping[str, int], examples: Mapping[str, str]) -> None:
        """Records refused while reading the input (invalid JSON, no image, ...), by reason,
        with one example each, in ``skipped_when_read`` (replaced, not added: reading is
        deterministic, so a resumed run reads the same skips)."""
        self.manifest["skipped_when_read"] = {
            reason: {"count": int(n), "example": examples.get(reason, "")}
            for reason, n in counts.items()
        }
        self._write_manifest()

    def skipped_by_reason(self) -> dict[str, int]:
        """Every record skipped so far, when read or when extracted, by reason."""
        total = dict(self.manifest["skipped"])
        for reason, entry in self.manifest.get("skipped_when_read", {}).items():
            total[reason] = total.get(reason, 0) + int(entry["count"])
        return total

    def mark_complete(self) -> None:
        self.manifest["complete"] = True
        self._write_manifest()

    def load_all(self) -> list[RecordFeatures]:
        """Every stored record's features, in the order they were written."""
        out: list[RecordFeatures] = []
        for shard in self.manifest["shards"]:
            out.extend(unpack(self.directory / shard["file"]))
        return out

    def _write_manifest(self) -> None:
        tmp = self.directory / f".{MANIFEST}.tmp"
        tmp.write_text(json.dumps(self.manifest, indent=2))
        os.replace(tmp, self.directory / MANIFEST)


def check_target(manifest: Mapping[str, Any], target: Mapping[str, Any], where: Path) -> None:
    """Refuse features made by another target, naming what differs."""
    if manifest.get("format") != FORMAT_VERSION:
        raise FeatureStoreMismatch(
            f"{where} has feature format {manifest.get('format')}, expected {FORMAT_VERSION}"
        )
    stored = manifest.get("target", {})
    differing = sorted(k for k in set(stored) | set(target) if stored.get(k) != target.get(k))
    if differing:
        detail = ", ".join(f"{k}: store {stored.get(k)!r} vs {target.get(k)!r}" for k in differing)
        raise FeatureStoreMismatch(f"feature store {where} was made by another target ({detail})")


def pack(features: list[RecordFeatures]) -> dict[str, torch.Tensor]:
    """Concatenate records along positions; ``offsets`` [n+1] delimits record r as
    ``offsets[r]:offsets[r+1]``."""
    lengths = torch.tensor([f.input_ids.shape[0] for f in features])
    offsets = torch.zeros(len(features) + 1, dtype=torch.int64)
    offsets[1:] = torch.cumsum(lengths, 0)
    packed = {"offsets": offsets}
    for name in PER_ROW:
        dim = 1 if name == "positions" else 0
        packed[name] = torch.cat([getattr(f, name) for f in features], dim=dim).contiguous()
    return packed


def unpack(path: Path) -> list[RecordFeatures]:
    """Inverse of :func:`pack` for one shard file."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        ids = json.loads(handle.metadata()["ids"])
    tensors = load_file(str(path))
    o = tensors["offsets"].tolist()
    records = []
    for r, record_id in enumerate(ids):
        rows = slice(o[r], o[r + 1])
        fields = {n: tensors[n][:, rows] if n == "positions" else tensors[n][rows] for n in PER_ROW}
        records.append(RecordFeatures(record_id, **fields))
    return records


class SkipRecord(Exception):
    """Raised by an extractor for a record that cannot be used; the message is the reason."""


def generate_features(
    records: Iterable[Any],
    extract: Callable[[Any], RecordFeatures],
    store: FeatureStore,
    progress: Callable[[Iterable[Any]], Iterable[Any]] | None = None,
) -> FeatureStore:
    """Run ``extract`` on every record not yet in the store and write shards as they fill.

    records: the full, deterministic record sequence (a resumed run passes the same one; the
    first ``store.records_done`` are skipped). extract: record -> RecordFeatures, raising
    :class:`SkipRecord` for a record to skip and count (e.g. longer than the context).
    """
    stores = generate_feature_stores(records, lambda r: {0: extract(r)}, {0: store}, progress)
    return stores[0]


def generate_feature_stores(
    records: Iterable[Any],
    extract: Callable[[Any], dict[Any, RecordFeatures]],
    stores: dict[Any, FeatureStore],
    progress: Callable[[Iterable[Any]], Iterable[Any]] | None = None,
) -> dict[Any, FeatureStore]:
    """:func:`generate_features` into several stores at once, ``extract`` giving each key's
    features of a record (one target pass for several row modes). Each store resumes on its
    own: a record is extracted while any store still lacks it."""
    done = {key: store.records_done for key, store in stores.items()}
    state = {key: ([], 0, {}) for key in stores}  # pending features, handled, skipped
    iterator = enumerate(records)
    for index, record in progress(iterator) if progress else iterator:
        wanted = [key for key in stores if index >= done[key]]
        if not wanted:
            continue
        try:
            features, reason = extract(record), None
        except SkipRecord as skip:
            features, reason = {}, str(skip)
        for key in wanted:
            pending, handled, skipped = state[key]
            if reason is None:
                pending.append(features[key])
            else:
                skipped[reason] = skipped.get(reason, 0) + 1
            handled += 1
            if len(pending) == int(stores[key].manifest["shard_size"]):
                stores[key].append_shard(pending, handled, skipped)
                pending, handled, skipped = [], 0, {}
            state[key] = (pending, handled, skipped)
    for key, store in stores.items():
        pending, handled, skipped = state[key]
        if pending or handled:
            store.append_shard(pending, handled, skipped)
        store.mark_complete()
    return stores
