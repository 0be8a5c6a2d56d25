"""The time-loop reordering of the checkpoint strategy, as pure arithmetic.

The forward run saves the complete solver state at the start of every chunk of N steps; the
kernel pass visits the chunks from last to first: restore the state at the chunk's start,
replay the forward over the chunk into a RAM buffer of N wavefield frames, then run the adjoint
backwards over the chunk reading the buffer in reverse. Over the whole run that is nt forward
steps, nt replayed steps and nt adjoint steps (3 nt), nt/N states on disk and N frames in RAM.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


def parse_bytes(text: str | int) -> int:
    """'2GiB', '500 MB', '1.5gib' or a plain number of bytes -> bytes (int, > 0)."""
    if isinstance(text, int):
        value, unit = float(text), ""
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", text)
        if not match or match[2].lower() not in _UNITS:
            raise ValueError(
                f"cannot read {text!r} as a memory size: use a number with a unit like "
                "'2GiB', '512MiB' or '4GB'"
            )
        value, unit = float(match[1]), match[2].lower()
    size = int(value * _UNITS[unit])
    if size <= 0:
        raise ValueError(f"memory size must be > 0, got {text!r}")
    return size


@dataclass(frozen=True)
class Chunk:
    """Forward steps [start, stop): the state at ``start`` is a snapshot; N = stop - start."""

    start: int
    stop: int

    @property
    def length(self) -> int:
        return self.stop - self.start


def chunk_length_for_budget(budget_bytes: int, bytes_per_frame: int, nt: int) -> int:
    """Largest chunk length N whose replay buffer (N frames) fits in ``budget_bytes``.

    bytes_per_frame: bytes of the forward quantities the adjoint reads at one step.
    Raises if not even one frame fits; returns at most nt.
    """
    if bytes_per_frame <= 0 or nt <= 0:
        raise ValueError(f"need bytes_per_frame > 0 and nt > 0, got {bytes_per_frame}, {nt}")
    n = budget_bytes // bytes_per_frame
    if n < 1:
        raise ValueError(
            f"memory budget {budget_bytes} bytes holds no replay frame of {bytes_per_frame} "
            "bytes: raise --memory-budget"
        )
    return int(min(n, nt))


def chunks(nt: int, n: int) -> list[Chunk]:
    """The chunks of ``nt`` steps with length ``n`` (the last may be shorter), in time order.

    The kernel pass visits them in reverse. Snapshots are needed at every ``chunk.start``.
    """
    if nt <= 0 or n <= 0:
        raise ValueError(f"need nt > 0 and chunk length > 0, got nt={nt}, N={n}")
    return [Chunk(start, min(start + n, nt)) for start in range(0, nt, n)]


def snapshot_steps(nt: int, n: int) -> list[int]:
    """Time steps whose complete state the forward run saves: ceil(nt / N) of them."""
    return [c.start for c in chunks(nt, n)]


def checkpoint_cost(nt: int, n: int) -> dict[str, int]:
    """Time steps per phase and storage of the checkpoint strategy, in units of steps/states."""
    return {
        "forward_steps": nt,
        "replay_steps": nt,
        "adjoint_steps": nt,
        "snapshots_on_disk": math.ceil(nt / n),
        "frames_in_ram": n,
    }
