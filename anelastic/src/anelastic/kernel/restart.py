"""Restart points of the kernel pass: the adjoint state and the gradients after a chunk.

An interrupted kernel pass restarts from its last restart point instead of the last chunk. The
points live in the snapshot store's ``adjoint`` namespace (one at a time: the newest) with a
digest of the adjoint source, so a point made with another misfit or other data is discarded.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from anelastic.kernel.snapshots import SnapshotStore

if TYPE_CHECKING:
    from anelastic.kernel.operators import KernelOperators

NAMESPACE = "adjoint"
_DIGEST_KEY = "__residual__"
_GRADIENT_PREFIX = "grad__"


def residual_digest(sources) -> str:
    """Identifies the adjoint sources (:class:`~anelastic.kernel.operators.AdjointSources`)."""
    digest = hashlib.sha256()
    for part in (sources.per_step, sources.initial):
        for comp in sorted(part, key=lambda c: c.value):
            digest.update(comp.value.encode())
            digest.update(np.ascontiguousarray(part[comp]).tobytes())
    return digest.hexdigest()[:32]


@dataclass
class KernelRestart:
    """Restart points of one kernel pass (at most one every ``interval`` seconds)."""

    store: SnapshotStore
    digest: str
    interval: float
    _last: float = field(default_factory=time.perf_counter)

    def resume_step(self, ops: KernelOperators) -> int | None:
        """Restore the most advanced restart point made with the same residual, if any; returns
        its step (chunks from it on are done), or None."""
        for step in self.store.steps(NAMESPACE):
            saved = self.store.read(step, NAMESPACE)
            if str(saved.pop(_DIGEST_KEY).reshape(-1)[0]) != self.digest:
                self.store.clear(NAMESPACE)  # another misfit or data: start the pass over
                return None
            for name, f in ops.adjoint.items():
                f.data[1] = saved[name]
            for name, g in ops.grads.items():
                g.data[:] = saved[_GRADIENT_PREFIX + name]
            return step
        return None

    def maybe_save(self, ops: KernelOperators, step: int) -> None:
        """Save the state after the chunk starting at ``step``, if ``interval`` has passed."""
        if time.perf_counter() - self._last < self.interval:
            return
        arrays = {name: np.array(f.data[1]) for name, f in ops.adjoint.items()}
        arrays.update({_GRADIENT_PREFIX + n: np.array(g.data) for n, g in ops.grads.items()})
        arrays[_DIGEST_KEY] = np.array(self.digest)
        old = self.store.steps(NAMESPACE)
        self.store.write(step, arrays, NAMESPACE)
        for s in old:  # keep only the newest restart point
            if s != step:
                self.store.remove(s, NAMESPACE)
        self._last = time.perf_counter()
