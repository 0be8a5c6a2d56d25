"""Domain decomposition under MPI: which part of the grid this process holds, and the few
collective steps that everything around the Devito operators needs.

Launched as ``mpiexec -n N anelastic forward|kernel CONFIG.toml ...`` (the ``anelastic[mpi]``
extra brings mpi4py and MPICH from the package index), every process reads the same config and
builds the same model; Devito splits each grid Function into N boxes (``grid.distributor``),
one per process ("rank"), and the generated C exchanges their halos itself at every step. What
Devito leaves to its caller is gathered here, so that the rest of the package stays unaware of
the decomposition apart from three facts:

- a field's ``data_local`` is this rank's box (the solver state and snapshots are per rank);
- sparse points (sources, receivers) are set as whole arrays on every rank; traces are
  gathered with :func:`gather_sparse` (every rank gets all of them, so all compute the same
  misfit and adjoint source);
- decisions that depend on data (a blow-up check) are taken together (:func:`all_ranks`), and
  only rank 0 writes the shared outputs (:func:`is_root`).

Without MPI (one process, the default) every function here is the serial identity: one rank,
no communication.

MPI is switched on by the launch alone: :func:`launched_ranks` reads the process count that
MPICH, Open MPI, Intel MPI or SLURM's ``srun`` put in the environment, and
:func:`anelastic.forward.runtime.configure` then sets Devito's ``mpi`` option (``DEVITO_MPI``
or ``--mpi-mode`` choose the halo-exchange scheme: basic, diag2 or full).
"""

from __future__ import annotations

import os
from functools import cache

import numpy as np

# Process count variables of the common launchers, most specific first.
_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS")


def launched_ranks() -> int:
    """Processes started together by an MPI launcher (1 when not launched by one)."""
    for name in _SIZE_VARIABLES:
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return 1


def mpi_active() -> bool:
    """True when Devito decomposes the grids (its ``mpi`` option is set; the launch sets it,
    :func:`anelastic.forward.runtime.configure`)."""
    from anelastic.forward import runtime

    runtime.configure()
    from devito import configuration

    return bool(configuration["mpi"])


@cache
def _comm():
    from devito.mpi.distributed import MPI, devito_mpi_init

    devito_mpi_init()  # Devito initialises MPI lazily (at its first grid); we may come first
    return MPI.COMM_WORLD


def comm():
    """The world communicator under MPI, else None."""
    return _comm() if mpi_active() else None


def rank() -> int:
    """This process's rank (0 without MPI)."""
    c = comm()
    return 0 if c is None else c.rank


def size() -> int:
    """Number of ranks (1 without MPI)."""
    c = comm()
    return 1 if c is None else c.size


def is_root() -> bool:
    """Rank 0: the one that writes shared outputs and shows progress."""
    return rank() == 0


def all_ranks(flag: bool) -> bool:
    """``flag`` and-ed over all ranks (every rank takes the same branch after it)."""
    c = comm()
    return bool(flag) if c is None else bool(c.allreduce(bool(flag), op=_land()))


def _land():
    from mpi4py import MPI

    return MPI.LAND


def root_says(value):
    """Rank 0's ``value`` on every rank (a decision taken once, e.g. from rank 0's clock)."""
    c = comm()
    return value if c is None else c.bcast(value, root=0)


def union(items) -> list:
    """The sorted union of every rank's ``items``."""
    c = comm()
    mine = set(items)
    return sorted(mine if c is None else set().union(*c.allgather(mine)))


def common(items) -> list:
    """The sorted intersection of every rank's ``items``."""
    c = comm()
    mine = set(items)
    return sorted(mine if c is None else set.intersection(*c.allgather(mine)))


def gather_field(function, index: tuple = ()) -> np.ndarray:
    """The global array of a grid Function's ``data[index]`` (e.g. ``(slot,)`` for a time
    slot) on every rank: [*global shape]. Serial: a copy of the data."""
    if comm() is None:
        return np.array(function.data[index] if index else function.data)
    full = function.data_gather(rank=0)  # [*function shape] on rank 0, None elsewhere
    full = comm().bcast(full, root=0)
    return np.array(full[index] if index else full)


def gather_sparse(function) -> np.ndarray:
    """All points of a sparse function's data on every rank: [nt, npoint] (Devito keeps a
    share of the points on each rank). Serial: a copy of the data."""
    if comm() is None:
        return np.array(function.data)
    return np.array(comm().bcast(function.data_gather(rank=0), root=0))


def describe(grid) -> dict:
    """This rank's part of a Devito grid, as a snapshot store's identity records it: ranks,
    ranks per axis, and this rank's box (first index and size per axis)."""
    if comm() is None:
        return {"ranks": 1}
    distributor = grid.distributor
    starts = [int(d.loc_abs_min) for d in distributor.decomposition]
    return {
        "ranks": size(),
        "topology": [int(t) for t in distributor.topology],
        "box_start": starts,
        "box_shape": [int(n) for n in grid.shape_local],
    }


@cache
def threads_per_rank() -> int:
    """Cores of this process divided by the ranks sharing its node (at least 1): the default
    thread count under MPI, where one fixed count per rank keeps the ranks in step."""
    from mpi4py import MPI

    node = comm().Split_type(MPI.COMM_TYPE_SHARED)
    try:
        return max(1, len(os.sched_getaffinity(0)) // node.size)
    finally:
        node.Free()
