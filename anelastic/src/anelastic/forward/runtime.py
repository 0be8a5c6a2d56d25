"""Process-wide settings of the generated code, set in this one place.

:func:`configure` runs before the first Devito Operator of the process is built (the operator
caches of :mod:`anelastic.forward.cache` call it), not when a module is imported, so that
``import anelastic`` and ``anelastic --help`` neither load Devito nor change the environment.

- **Contiguous static loop schedule** (``schedule(static)``): Devito writes every parallel grid
  loop as ``schedule(static, 1)`` or ``schedule(dynamic, 1)``, i.e. one row to each thread in
  turn. Without loop blocking (none of our 2-D operators is blocked) a thread then reads the rows
  on both sides of each of its rows, written by the other thread in the previous loop: the cache
  lines of every field move between the cores' caches at every step, and two threads ran slower
  than one (benchmark P1, idle: 1 thread 0.83 s, 2 threads 1.15-1.19 s). One contiguous block of
  rows per thread keeps each core on its own half: 2 threads 0.47-0.51 s (1.7x). Every point is
  still computed by one thread with the same arithmetic: results are bitwise those of any other
  schedule or thread count.
- **A short spin between parallel loops** (``GOMP_SPINCOUNT=10000``, about 0.1 ms, unless the
  user set ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT``): a time step runs several short parallel
  loops (~50-100 us each on P1). Threads that sleep at each loop's end (``passive``) pay a
  wake-up every loop (2 threads 1.12-1.25 s on P1, slower than one); threads that spin for ever
  (libgomp's ``active``, or its default 0.3 M spins) burn a core that another process needs.
  A spin of ~0.1 ms bridges the gaps within a step and sleeps between calls. Under a competing
  process two threads are still several times slower than one: the thread count is then chosen
  by measurement (:mod:`anelastic.forward.threads`).
- Devito ``language = "openmp"``: the generated C is parallelised over the cores (thread counts
  are passed per call, ``nthreads``).
- Devito ``log-level = "ERROR"``: no per-call performance lines on stderr (progress bars and
  summaries report timings instead).
- **MPI by the launch alone**: started by ``mpiexec -n N`` (N > 1) or ``srun``, Devito's ``mpi``
  option is set (``basic`` halo exchanges, unless ``DEVITO_MPI`` or ``--mpi-mode`` chose
  another), so the grids are decomposed over the ranks (:mod:`anelastic.forward.decomposition`).
"""

from __future__ import annotations

import os

SPIN_COUNT = "10000"

_configured = False


def configure() -> None:
    """Apply the settings above (idempotent; cheap after the first call)."""
    global _configured
    if _configured:
        return
    if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
        os.environ["GOMP_SPINCOUNT"] = SPIN_COUNT  # read when libgomp loads: before any run
    from devito import configuration

    configuration["language"] = "openmp"
    configuration["log-level"] = "ERROR"
    from anelastic.forward.decomposition import launched_ranks

    if launched_ranks() > 1 and not configuration["mpi"] and "DEVITO_MPI" not in os.environ:
        configuration["mpi"] = "basic"
    if configuration["mpi"]:
        _find_mpicc()
    _use_contiguous_static_schedule()
    _configured = True


def _find_mpicc() -> None:
    """Devito compiles MPI operators with ``mpicc`` from PATH; the ``anelastic[mpi]`` extra
    installs it beside this Python, which is not on PATH when the venv is not activated."""
    import shutil
    import sys

    here = os.path.dirname(sys.executable)
    if shutil.which("mpicc") is None and shutil.which("mpicc", path=here) is not None:
        os.environ["PATH"] = here + os.pathsep + os.environ.get("PATH", "")


def _use_contiguous_static_schedule() -> None:
    """Make Devito's OpenMP grid loops ``schedule(static)`` (see the module docstring).

    Devito (4.8) has no option for the chunk of an affine loop: its OpenMP iteration class
    writes ``schedule(<kind>, 1)`` whenever it is given no chunk size. Only those loops change;
    loops over sparse points (which pass a chunk size) keep Devito's schedule.
    """
    from devito.passes.iet.languages.openmp import OmpIteration

    if getattr(OmpIteration, "_anelastic_contiguous", False):
        return
    devito_clauses = OmpIteration._make_clauses.__func__

    def clauses(cls, chunk_size=None, schedule=None, **kwargs):
        if chunk_size is None:  # a grid loop: one contiguous block of rows per thread
            return ["schedule(static)", *devito_clauses(cls, chunk_size=False, **kwargs)]
        return devito_clauses(cls, chunk_size=chunk_size, schedule=schedule, **kwargs)

    OmpIteration._make_clauses = classmethod(clauses)
    OmpIteration._anelastic_contiguous = True
