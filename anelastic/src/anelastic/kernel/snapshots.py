"""The snapshot store: complete solver states on disk, safe against crashes and mix-ups.

A store is a directory::

    manifest.json              what the snapshots belong to (identity + fingerprint)
    forward_00000000.snap      one complete solver state per file, keyed by time step
    forward_00000500.snap
    adjoint_00001000.snap      other namespaces (e.g. a kernel run's own restart points)
    forward.complete           marker: the forward run reached its last step

A run decomposed over N MPI ranks keeps one such store per rank, ``rank0000of000N/`` ...,
each holding its rank's box of every state (:func:`rank_directory`); its manifest records the
decomposition, and a store written with another N (or serially) is refused.

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
- Damage is found, not read: the manifest also records each snapshot's size and CRC-32
  (``snapshots``); a snapshot that is missing, shorter or longer, or whose bytes changed is
  reported by name (:class:`SnapshotDamaged`, :meth:`SnapshotStore.check`), so the caller can
  rebuild it (:mod:`anelastic.kernel.storage` re-runs the forward from the nearest good
  snapshot before it). A write that fails (disk full, permissions) removes its temporary file
  and says so; the snapshots written before stay valid.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
_SNAPSHOT = re.compile(r"^(?P<ns>[a-z_]+)_(?P<step>\d{8})\.snap$")
_RANK_DIRECTORY = re.compile(r"^rank\d{4}of(?P<ranks>\d{4})$")
_MAGIC = b"ANELASTIC-SNAPSHOT-1\n"


class StoreMismatchError(ValueError):
    """The store on disk was made for another run."""


class SnapshotDamaged(OSError):
    """A snapshot that is missing, truncated or corrupt; ``step`` and ``namespace`` name it."""

    def __init__(self, message: str, namespace: str, step: int) -> None:
        super().__init__(message)
        self.namespace, self.step = namespace, step


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
        self._lock = threading.Lock()  # snapshots are written from a background thread
        # Read once: this store is the manifest's only writer while it is open.
        self._manifest = json.loads((directory / MANIFEST).read_text())

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
        """Save one complete state (name -> array) as the snapshot of ``step``, atomically, and
        record its size and CRC-32 in the manifest."""
        path = self._path(namespace, step)
        tmp = path.with_name(f".{path.name}.tmp")
        arrays = {name: _contiguous(a) for name, a in state.items()}
        entries, offset = [], 0
        for name, a in arrays.items():
            entries.append({"name": name, "dtype": a.dtype.str, "shape": a.shape, "offset": offset})
            offset += a.nbytes
        header = json.dumps({"arrays": entries, "nbytes": offset}).encode()
        lead = _MAGIC + len(header).to_bytes(8, "little") + header
        crc = zlib.crc32(lead)
        try:
            with open(tmp, "wb") as handle:
                handle.write(lead)
                for a in arrays.values():
                    data = memoryview(a).cast("B")
                    crc = zlib.crc32(data, crc)
                    handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
            self._record(path.name, len(lead) + offset, crc)
        except OSError as err:
            tmp.unlink(missing_ok=True)
            raise OSError(
                f"cannot write snapshot {path}: {err.strerror or err} (disk full? no "
                "permission?); the snapshots written before are intact: free space and rerun "
                "to resume"
            ) from err

    def _record(self, name: str, size: int, crc: int) -> None:
        """Add one snapshot's size and CRC-32 to the manifest (rewritten atomically)."""
        with self._lock:
            self._manifest.setdefault("snapshots", {})[name] = {"bytes": size, "crc32": crc}
            payload = json.dumps(self._manifest, indent=2).encode()
            _write_atomic(self.directory / MANIFEST, payload)

    def check(self, step: int, namespace: str = "forward", content: bool = False) -> str | None:
        """What is wrong with the snapshot of ``step`` (None: nothing): missing, or a size
        that differs from the manifest's; with ``content`` also its CRC-32 (reads the file)."""
        path = self._path(namespace, step)
        if not path.exists():
            return f"snapshot {path.name} is missing"
        recorded = self._recorded().get(path.name)
        size = path.stat().st_size
        if recorded is not None and size != recorded["bytes"]:
            return f"snapshot {path.name} has {size} bytes, the manifest says {recorded['bytes']}"
        if content and recorded is not None and _file_crc(path) != recorded["crc32"]:
            return f"snapshot {path.name} is corrupt (its CRC-32 differs from the manifest's)"
        return None

    def _recorded(self) -> dict[str, dict]:
        return self._manifest.get("snapshots", {})

    def read(self, step: int, namespace: str = "forward") -> dict[str, np.ndarray]:
        """The snapshot of ``step`` as name -> array (bit-exact copies of what was written)."""
        path = self._path(namespace, step)
        if not path.exists():
            have = self.steps(namespace)
            raise SnapshotDamaged(
                f"no {namespace} snapshot of step {step} in {self.directory}; it holds steps "
                f"{have}",
                namespace,
                step,
            )
        recorded = self._recorded().get(path.name)
        try:
            arrays, crc = _read_arrays(path)
        except (OSError, ValueError, KeyError) as err:  # truncated or corrupt
            raise SnapshotDamaged(
                f"snapshot {path} is unreadable ({err})", namespace, step
            ) from err
        if recorded is not None and crc != recorded["crc32"]:
            raise SnapshotDamaged(
                f"snapshot {path} is corrupt: its CRC-32 differs from the manifest's",
                namespace,
                step,
            )
        return arrays

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


def rank_directory(directory: str | Path, rank: int, ranks: int) -> Path:
    """Where rank ``rank`` of ``ranks`` keeps its store: ``directory`` itself for a serial run,
    ``directory/rank<rank>of<ranks>`` under MPI. Refuses (:class:`StoreMismatchError`) a store
    written with another number of ranks, or serially when this run is decomposed (and the
    reverse): its states are boxes of another decomposition."""
    directory = Path(directory)
    written = set()
    if directory.is_dir():
        written = {
            int(m["ranks"]) for p in directory.iterdir() if (m := _RANK_DIRECTORY.match(p.name))
        }
    if (directory / MANIFEST).exists():
        written.add(1)
    other = written - {ranks}
    if other:
        was = " and ".join("a serial run" if n == 1 else f"a run on {n} MPI ranks" for n in other)
        now = "is serial" if ranks == 1 else f"has {ranks} MPI ranks"
        raise StoreMismatchError(
            f"the snapshot store {directory} was written by {was}; this run {now}: launch it "
            "as that run was (mpiexec -n N), or give it another --store"
        )
    return directory if ranks == 1 else directory / f"rank{rank:04d}of{ranks:04d}"


def _contiguous(a) -> np.ndarray:
    """A C-contiguous array with the same shape (0-d stays 0-d, unlike ascontiguousarray)."""
    a = np.asarray(a)
    return a if a.flags.c_contiguous else a.copy()


def _read_arrays(path: Path) -> tuple[dict[str, np.ndarray], int]:
    """The arrays of a snapshot file (see the module docstring) and the CRC-32 of its bytes;
    raises ValueError if the file is not one or is shorter than its header says."""
    with open(path, "rb") as handle:
        magic = handle.read(len(_MAGIC))
        if magic != _MAGIC:
            raise ValueError("not a snapshot file")
        size_bytes = handle.read(8)
        size = int.from_bytes(size_bytes, "little")
        header_bytes = handle.read(size)
        header = json.loads(header_bytes)
        crc = zlib.crc32(magic + size_bytes + header_bytes)
        start = handle.tell()
        if os.fstat(handle.fileno()).st_size != start + header["nbytes"]:
            raise ValueError("file size does not match its header (truncated)")
        out = {}
        for entry in header["arrays"]:
            dtype = np.dtype(entry["dtype"])
            count = int(np.prod(entry["shape"], dtype=np.int64))
            handle.seek(start + entry["offset"])
            array = np.fromfile(handle, dtype, count).reshape(entry["shape"])
            crc = zlib.crc32(memoryview(_contiguous(array)).cast("B"), crc)
            out[entry["name"]] = array
        return out, crc


def _file_crc(path: Path) -> int:
    crc = 0
    with open(path, "rb") as handle:
        while block := handle.read(1 << 24):
            crc = zlib.crc32(block, crc)
    return crc


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
