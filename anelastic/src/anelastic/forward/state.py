"""Complete solver state: every field the time integrator needs, at one step.

The state at step n holds, for each field the rheology declares (wavefields, memory variables,
absorbing-boundary auxiliaries), the array of its current time slot on the padded grid. Devito's
modulo buffers are normalised away: only the slot ``n % 2`` is saved, and restoring writes it
back into that slot (every update reads only the current slot, see ``physics.base``).

Files are ``.npz`` written atomically (temporary file, then ``os.replace``), so a crash never
leaves a partial state that reads as valid.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from anelastic.forward.simulation import Simulation

_STEP_KEY = "__step__"
_FINGERPRINT_KEY = "__fingerprint__"


@dataclass(eq=False)
class SolverState:
    """``fields[name]`` is [*padded_shape]; ``fingerprint`` identifies the problem."""

    step: int
    fields: dict[str, np.ndarray]
    fingerprint: str

    def nbytes(self) -> int:
        return int(sum(a.nbytes for a in self.fields.values()))

    def bitwise_equal(self, other: SolverState) -> bool:
        """Same step, same fields, every array identical bit for bit."""
        if self.step != other.step or self.fields.keys() != other.fields.keys():
            return False
        return all(
            a.dtype == other.fields[k].dtype
            and a.shape == other.fields[k].shape
            and a.tobytes() == other.fields[k].tobytes()
            for k, a in self.fields.items()
        )

    def save(self, path: str | Path) -> None:
        """Write atomically to ``path`` (a ``.npz`` file)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".partial")
        with open(tmp, "wb") as handle:
            np.savez(
                handle,
                **{_STEP_KEY: np.array(self.step), _FINGERPRINT_KEY: np.array(self.fingerprint)},
                **self.fields,
            )
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | Path) -> SolverState:
        with np.load(path) as data:
            if _STEP_KEY not in data:
                raise ValueError(f"{path} is not a solver state file")
            fields = {k: data[k] for k in data.files if k not in (_STEP_KEY, _FINGERPRINT_KEY)}
            return cls(int(data[_STEP_KEY]), fields, str(data[_FINGERPRINT_KEY]))


def problem_identity(sim: Simulation) -> dict:
    """What determines the time integration, in named parts a person can compare: physics
    configuration, precision, time axis, grid, sources (positions, kinds), and SHA-256 digests
    of the model arrays, of the wavelets and of the fixed SLS fit (their values are too large to
    show; a differing digest says which of them changed)."""
    model = sim.model
    arrays = hashlib.sha256()
    for name in ("vp", "vs", "rho", "qp", "qs"):
        arrays.update(np.ascontiguousarray(getattr(model, name)).tobytes())
    arrays.update(repr(model.f_ref).encode())
    wavelets = hashlib.sha256()
    for s in sim.sources:
        wavelets.update(np.ascontiguousarray(s.wavelet(sim.time.times), np.float64).tobytes())
    fit = getattr(sim.physics, "sls_fit", None)
    sls = None
    if fit is not None:  # a fixed relaxation-mechanism fit changes the coefficients
        digest = hashlib.sha256()
        for table in (fit.omega, fit.q_table, fit.y_table):
            digest.update(np.ascontiguousarray(table, np.float64).tobytes())
        sls = digest.hexdigest()[:16]
    return {
        "physics": _physics_settings(sim),
        "precision": str(sim.config.dtype),
        "time axis": {"dt": sim.time.dt, "nt": sim.time.nt},
        "grid": [list(model.grid.shape), list(model.grid.spacing), list(model.grid.origin)],
        "sources": [
            [
                list(s.position),
                s.kind.value,
                s.direction,
                None if s.moment is None else s.moment.tolist(),
            ]
            for s in sim.sources
        ],
        "model arrays (digest)": arrays.hexdigest()[:16],
        "wavelets (digest)": wavelets.hexdigest()[:16],
        "SLS fit (digest)": sls,
    }


def _physics_settings(sim: Simulation) -> str:
    """The physics configuration in words, precision left out (it has its own entry)."""
    config = sim.config
    fields = [f for f in dataclasses.fields(config) if f.name != "dtype"]
    values = [getattr(config, f.name) for f in fields]
    shown = [f"{f.name}={getattr(v, 'value', v)}" for f, v in zip(fields, values, strict=True)]
    return f"{type(sim.physics).__name__}: " + ", ".join(shown)


def problem_fingerprint(sim: Simulation) -> str:
    """SHA-256 over :func:`problem_identity` (model arrays, grid, time axis, physics
    configuration, sources, wavelets, SLS fit)."""
    text = json.dumps(problem_identity(sim), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]
