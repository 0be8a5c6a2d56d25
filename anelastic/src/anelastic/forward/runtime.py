"""Process-wide settings of the generated code, set in this one place.

:func:`configure` runs before the first Devito Operator of the process is built (the operator
caches of :mod:`anelastic.forward.cache` call it), not when a module is imported, so that
``import anelastic`` and ``anelastic --help`` neither load Devito nor change the environment.

- ``OMP_WAIT_POLICY=passive`` (unless the user set it): threads sleep at the end of each
  parallel loop. Spinning (libgomp's default) makes a time step 5-20x slower as soon as
  another process shares the cores (measured on benchmark problem P1). It must be set before
  the OpenMP runtime loads, i.e. before the first compiled operator runs.
- Devito ``language = "openmp"``: the generated C is parallelised over the cores (thread counts
  are passed per call, ``nthreads``).
- Devito ``log-level = "ERROR"``: no per-call performance lines on stderr (progress bars and
  summaries report timings instead).
"""

from __future__ import annotations

import os

_configured = False


def configure() -> None:
    """Apply the settings above (idempotent; cheap after the first call)."""
    global _configured
    if _configured:
        return
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")
    from devito import configuration

    configuration["language"] = "openmp"
    configuration["log-level"] = "ERROR"
    _configured = True
