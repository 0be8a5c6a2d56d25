"""The snapshot store: complete solver states on disk, safe against crashes and mix-ups.

A store is a directory::

    manifest.json              what the snapshots belong to (identity + fingerprint)
    forward_00000000.snap      one complete solver state per file, keyed by time step
    forward_00000500.snap
    adjoint_00001000.snap      other namespaces (e.g. a kernel run's own restart points)
    forward.complete           marker: the forward run reached its last step

Guarantees:

- Atomic snapshots: a state is written to a hidden temporary file, flushed to disk, then
  renamed (``os.replace`` is atomic on POSIX), so a crash never leaves a partial snapshot that
  reads as valid; leftovers of a crash are ignored and cleaned up. A snapshot file is a magic
  line, a JSON header (name, dtype, shape, byte offset of each array) and the raw array bytes:
  writing and reading cost a copy of the bytes, nothing more (a zip would add a CRC pass); a
  file shorter than its header declares is reported as unreadable.
- Identity: the manifest records the run's identity (grid, dt, nt, chunk length, physics,
  sources, package version, ...) and a SHA-256 fingerprint of it and of the model arrays.
  Opening a store with a different identity is refused with the list of what differs.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
_SNAPSHOT = re.compile(r"^(?P<ns>[a-z_]+)_(?P<step>\d{8})\.snap$")
_MAGIC = b"ANELASTIC-SNAPSHOT-1\n"


class StoreMismatchError(ValueError):
    """The store on disk was made for another run."""


def fingerprint(identity: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> str:
    """SHA-256 over the canonical JSON of ``identity`` and the bytes, dtype and shape of each
    array (sorted by name)."""
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode())
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}:{a.dtype.str}:{a.shape}".encode())
        digest.update(a.tobytes())
    return digest.hexdigest()


class SnapshotStore:
    """Snapshots of complete solver states in one directory (see the module docstring)."""

    def __init__(self, directory: Path, identity: dict[str, Any], digest: str) -> None:
        self.directory = directory
        self.identity = identity
        self.fingerprint = digest

    @classmethod
    def open(
        cls,
        directory: str | Path,
        identity: Mapping[str, Any],
        arrays: Mapping[str, np.ndarray] | None = None,
    ) -> SnapshotStore:
        """Open (or create) the store for the run described by ``identity`` and ``arrays``
        (typically the model's parameter arrays). Refuses a store made for another run."""
        directory = Path(directory)
        identity = json.loads(json.dumps(dict(identity)))  # plain JSON types, a private copy
        digest = fingerprint(identity, arrays or {})
        manifest_path = directory / MANIFEST
        if manifest_path.exists():
            _check_manifest(manifest_path, identity, digest)
        else:
            directory.mkdir(parents=True, exist_ok=True)
            manifest = {"format": FORMAT_VERSION, "fingerprint": digest, "identity": identity}
            _write_atomic(manifest_path, json.dumps(manifest, indent=2).encode())
        store = cls(directory, identity, digest)
        store._remove_leftovers()
        return store

    def write(self, step: int, state: Mapping[str, np.ndarray], namespace: str = "forward") -> None:
        """Save one complete state (name -> array) as the snapshot of ``step``, atomically."""
        path = self._path(namespace, step)
        tmp = path.with_name(f".{path.name}.tmp")
        arrays = {name: _contiguous(a) for name, a in state.items()}
        entries, offset = [], 0
        for name, a in arrays.items():
            entries.append({"name": name, "dtype": a.dtype.str, "shape": a.shape, "offset": offset})
            offset += a.nbytes
        header = json.dumps({"arrays": entries, "nbytes": offset}).encode()
        with open(tmp, "wb") as handle:
            handle.write(_MAGIC + len(header).to_bytes(8, "little") + header)
            for a in arrays.values():
                handle.write(memoryview(a).cast("B"))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)

    def read(self, step: int, namespace: str = "forward") -> dict[str, np.ndarray]:
        """The snapshot of ``step`` as name -> array (bit-exact copies of what was written)."""
        path = self._path(namespace, step)
        if not path.exists():
            have = self.steps(namespace)
            raise FileNotFoundError(
                f"no {namespace} snapshot of step {step} in {self.directory}; it holds steps {have}"
            )
        try:
            return _read_arrays(path)
        except (OSError, ValueError, KeyError) as err:  # truncated or corrupt
            raise OSError(f"snapshot {path} is unreadable ({err}); delete it and rerun") from err

    def steps(self, namespace: str = "forward") -> list[int]:
        """Time steps that have a complete snapshot in ``namespace``, ascending."""
        found = []
        for entry in self.directory.iterdir():
            match = _SNAPSHOT.match(entry.name)
            if match and match["ns"] == namespace:
                found.append(int(match["step"]))
        return sorted(found)

    def latest(self, namespace: str = "forward") -> int | None:
        """The last step with a snapshot, or None: where an interrupted run resumes."""
        steps = self.steps(namespace)
        return steps[-1] if steps else None

    def mark_complete(self, namespace: str = "forward") -> None:
        _write_atomic(self.directory / f"{namespace}.complete", b"")

    def is_complete(self, namespace: str = "forward") -> bool:
        return (self.directory / f"{namespace}.complete").exists()

    def remove(self, step: int, namespace: str = "forward") -> None:
        """Delete the snapshot of ``step`` (if there is one)."""
        self._path(namespace, step).unlink(missing_ok=True)

    def clear(self, namespace: str) -> None:
        """Delete every snapshot of ``namespace`` and its completion marker."""
        for step in self.steps(namespace):
            self._path(namespace, step).unlink()
        (self.directory / f"{namespace}.complete").unlink(missing_ok=True)

    def nbytes(self) -> int:
        """Bytes on disk used by all snapshots."""
        return sum(e.stat().st_size for e in self.directory.iterdir() if _SNAPSHOT.match(e.name))

    def _path(self, namespace: str, step: int) -> Path:
        if not re.fullmatch(r"[a-z_]+", namespace):
            raise ValueError(f"namespace must be lower-case letters and '_', got {namespace!r}")
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        return self.directory / f"{namespace}_{step:08d}.snap"

    def _remove_leftovers(self) -> None:
        for entry in self.directory.glob(".*.tmp"):
            entry.unlink(missing_ok=True)


def _contiguous(a) -> np.ndarray:
    """A C-contiguous array with the same shape (0-d stays 0-d, unlike ascontiguousarray)."""
    a = np.asarray(a)
    return a if a.flags.c_contiguous else a.copy()


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a snapshot file (see the module docstring); raises ValueError if the file
    is not one or is shorter than its header says."""
    with open(path, "rb") as handle:
        if handle.read(len(_MAGIC)) != _MAGIC:
            raise ValueError("not a snapshot file")
        size = int.from_bytes(handle.read(8), "little")
        header = json.loads(handle.read(size))
        start = handle.tell()
        if os.fstat(handle.fileno()).st_size != start + header["nbytes"]:
            raise ValueError("file size does not match its header (truncated)")
        out = {}
        for entry in header["arrays"]:
            dtype = np.dtype(entry["dtype"])
            count = int(np.prod(entry["shape"], dtype=np.int64))
            handle.seek(start + entry["offset"])
            out[entry["name"]] = np.fromfile(handle, dtype, count).reshape(entry["shape"])
        return out


def _check_manifest(path: Path, identity: dict[str, Any], digest: str) -> None:
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise StoreMismatchError(f"{path} is not a readable snapshot manifest: {err}") from err
    if manifest.get("format") != FORMAT_VERSION:
        raise StoreMismatchError(
            f"{path.parent} has store format {manifest.get('format')}, this version reads "
            f"{FORMAT_VERSION}; use a new directory"
        )
    if manifest.get("fingerprint") == digest:
        return
    stored = manifest.get("identity", {})
    differing = sorted(k for k in set(stored) | set(identity) if stored.get(k) != identity.get(k))
    detail = (
        ", ".join(
            f"{k}: store has {stored.get(k)!r}, run has {identity.get(k)!r}" for k in differing
        )
        or "the model arrays differ"
    )
    raise StoreMismatchError(
        f"snapshot store {path.parent} was made for another run ({detail}); "
        "use another --store directory or delete this one"
    )


def _write_atomic(path: Path, payload: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(payload)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
