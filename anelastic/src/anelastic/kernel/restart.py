"""Restart points of the kernel pass: the adjoint state and the gradients after a chunk.

An interrupted kernel pass restarts from its last restart point instead of the last chunk. The
points live in the snapshot store's ``adjoint`` namespace (one at a time: the newest) with a
digest of the adjoint source, so a point made with another misfit or other data is discarded.
Under MPI every rank keeps its box of each point in its own store; the ranks save together
(rank 0's clock decides) and resume only from a point every rank has.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from anelastic.forward import decomposition
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
        """Restore the most advanced restart point made with the same residual, if any (under
        MPI: the same point on every rank); returns its step (chunks from it on are done), or
        None."""
        steps = self.store.steps(NAMESPACE)[:1]  # the adjoint runs backwards: the smallest step
        saved = self.store.read(steps[0], NAMESPACE) if steps else None
        usable = saved is not None and str(saved.pop(_DIGEST_KEY).reshape(-1)[0]) == self.digest
        if steps and not usable:
            self.store.clear(NAMESPACE)  # another misfit or data: start the pass over
        if not decomposition.all_ranks(usable) or len(decomposition.union(steps)) != 1:
            return None
        for name, f in ops.adjoint.items():
            f.data_local[1] = saved[name]
        for name, g in ops.grads.items():
            g.data_local[:] = saved[_GRADIENT_PREFIX + name]
        return steps[0]

    def maybe_save(self, ops: KernelOperators, step: int) -> None:
        """Save the state after the chunk starting at ``step``, if ``interval`` has passed."""
        if not decomposition.root_says(time.perf_counter() - self._last >= self.interval):
            return
        arrays = {name: np.array(f.data_local[1]) for name, f in ops.adjoint.items()}
        arrays.update({_GRADIENT_PREFIX + n: np.array(g.data_local) for n, g in ops.grads.items()})
        arrays[_DIGEST_KEY] = np.array(self.digest)
        old = self.store.steps(NAMESPACE)
        self.store.write(step, arrays, NAMESPACE)
        for s in old:  # keep only the newest restart point
            if s != step:
                self.store.remove(s, NAMESPACE)
        self._last = time.perf_counter()
