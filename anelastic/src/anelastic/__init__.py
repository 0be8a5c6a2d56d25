"""anelastic: exact anelastic sensitivity kernels with parsimonious storage.

The rooms follow the data flow: inputs (:mod:`.model`, :mod:`.acquisition`,
:mod:`.attenuation`) -> :mod:`.physics` (rheologies) -> :mod:`.forward` (propagator, simulation,
solver state) -> :mod:`.kernel` (misfit, storage strategies, kernel pass); :mod:`.checks`
(analytic solutions, the ``verify`` commands) and :mod:`.app` (CLI, config, demo, plots, Dask)
sit on top.

The names a user needs are importable from here::

    from anelastic import Model, Grid, Source, Receivers, Simulation, TimeAxis, PhysicsConfig
    from anelastic import Event, KernelSettings, Storage, Misfit, compute_kernels

They are imported on first use (module ``__getattr__``): ``import anelastic`` stays cheap, so
the CLI's ``--help`` does not load Devito, SciPy or Matplotlib.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("anelastic")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+source"

_EXPORTS = {
    "Grid": "anelastic.model",
    "Model": "anelastic.model",
    "Component": "anelastic.acquisition",
    "Receivers": "anelastic.acquisition",
    "Seismograms": "anelastic.acquisition",
    "Source": "anelastic.acquisition",
    "SourceKind": "anelastic.acquisition",
    "ricker": "anelastic.acquisition",
    "PhysicsConfig": "anelastic.physics",
    "PhysicsKind": "anelastic.physics",
    "BoundaryKind": "anelastic.physics",
    "Simulation": "anelastic.forward.simulation",
    "SimulationBlowUp": "anelastic.forward.simulation",
    "TimeAxis": "anelastic.forward.simulation",
    "SolverState": "anelastic.forward.state",
    "Event": "anelastic.kernel.inputs",
    "KernelSettings": "anelastic.kernel.inputs",
    "Storage": "anelastic.kernel.inputs",
    "Misfit": "anelastic.kernel.misfit",
    "MisfitKind": "anelastic.kernel.misfit",
    "TimeWindow": "anelastic.kernel.misfit",
    "KernelResult": "anelastic.kernel.compute",
    "compute_kernels": "anelastic.kernel.compute",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'anelastic' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
