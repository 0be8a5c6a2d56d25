"""MPI strong scaling of one event's forward: a 3-D viscoelastic run on 1 and 2 ranks.

Case: N^3 cells (``--cells``, default 80) plus a 10-cell C-PML, dx 10 m, vp 3000 / vs 1730 m/s,
rho 2500 kg/m^3, Qp 50 / Qs 30 with 3 SLS, order 8, float32, ``--nt`` steps (default 300), an
explosive moment source in the middle, 64 receivers on a line.

Runs, each in its own process(es), alternating for ``--rounds`` rounds:

- ``serial``: one process, one thread (the baseline);
- ``mpi2``: ``mpiexec -n 2``, one thread per rank (the grid split in two boxes);
- ``omp2``: one process, two OpenMP threads (the same two cores shared by threads instead).

Each worker builds and warms up its operator (compile + 4 steps), then times one full run from
a fresh state; under MPI the time is the slowest rank's. Also recorded: peak RSS per rank, and
the halo traffic: the fields the generated C exchanges in every time step (its ``haloupdate``
calls inside the time loop) times the cut face of each rank's box, halo width and precision.

From these, the projection for a 400 x 400 x 200 problem on 8, 64 and 512 ranks: per step,
compute = (cells per rank) x (the serial run's seconds per cell-update) and halo = (bytes a rank
exchanges) x (seconds per byte); the seconds per byte are (a) those measured here (the 2-rank
run's time above half the serial one, per byte exchanged: shared memory plus the ranks' wait
for each other) and (b) an assumed 100 Gb/s network with 2 us per message. Efficiency =
compute / (compute + halo): no overlap of exchange and compute (``--mpi-mode full`` may do
better), no load imbalance beyond what the 2-rank run shows.

    python anelastic/benchmarks/mpi.py --json mpi.json [--cells 80] [--nt 300] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CASES = ("serial", "mpi2", "omp2")
PML, ORDER, H = 10, 8, 10.0
NETWORK_BYTES_PER_S, NETWORK_LATENCY_S = 12.5e9, 2e-6  # 100 Gb/s InfiniBand-class, assumed
PROJECTED_SHAPE, PROJECTED_RANKS = (400, 400, 200), (8, 64, 512)


def build(cells: int, nt: int, threads: int):
    from anelastic.acquisition import Component, Receivers, Source, SourceKind, ricker
    from anelastic.forward.simulation import Simulation, TimeAxis
    from anelastic.model import Grid, homogeneous
    from anelastic.physics import PhysicsConfig, PhysicsKind

    grid = Grid((cells,) * 3, (H,) * 3)
    model = homogeneous(grid, 3000.0, 2500.0, vs=1730.0, qp=50.0, qs=30.0, f_ref=10.0)
    middle = tuple(H * (cells // 2) for _ in range(3))
    source = Source(middle, ricker(10.0), kind=SourceKind.MOMENT, moment=np.eye(3))
    line = np.linspace(H, H * (cells - 2), 64)
    positions = np.stack([line, np.full(64, middle[1]), np.full(64, 2 * H)], axis=1)
    config = PhysicsConfig(kind=PhysicsKind.VISCOELASTIC, space_order=ORDER, pml_width=PML)
    receivers = Receivers(positions, (Component.VZ,))
    return Simulation(model, [source], receivers, TimeAxis(1e-3, nt), config, threads=threads)


def worker(cells: int, nt: int, threads: int, out: str) -> None:
    """Build, warm up, time one run; rank 0 writes the result JSON to ``out``."""
    from anelastic.forward import decomposition

    begin = time.perf_counter()
    sim = build(cells, nt, threads)
    start = sim.state()
    sim.advance(4)  # compile (or load from Devito's cache) and touch every array
    setup = time.perf_counter() - begin
    sim.restore(start)
    comm = decomposition.comm()
    if comm is not None:
        comm.Barrier()
    t0 = time.perf_counter()
    sim.run()
    seconds = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB (Linux: KiB)
    halo = halo_traffic(sim)
    if comm is not None:
        seconds = comm.allreduce(seconds, op=_max())
        rss = comm.gather(rss, root=0)
        halo = comm.gather(halo, root=0)
    else:
        rss, halo = [rss], [halo]
    if decomposition.is_root():
        result = {"seconds": seconds, "setup_seconds": setup, "peak_rss_mib_per_rank": rss,
                  "halo_per_rank": halo, "ranks": decomposition.size()}  # fmt: skip
        Path(out).write_text(json.dumps(result))


def _max():
    from mpi4py import MPI

    return MPI.MAX


def halo_traffic(sim) -> dict:
    """Fields exchanged per step (from the generated C) and the bytes this rank sends per step:
    for each exchanged field, each neighbour across a cut, the cut face x halo width x bytes."""
    from anelastic.forward import decomposition

    code = str(sim.propagator.operator)
    loop = code[code.find("for (int time") :]
    loop = loop[: loop.find("\n}\n")]  # to the end of the operator's function
    exchanged = re.findall(r"haloupdate\d+\((\w+)_vec", loop)
    if decomposition.size() == 1:
        return {"fields_per_step": exchanged, "bytes_per_step": 0, "messages_per_step": 0}
    grid = sim.propagator.grid
    local = grid.shape_local
    itemsize = np.dtype(grid.dtype).itemsize
    sent = messages = 0
    for axis, parts in enumerate(grid.distributor.topology):
        if parts == 1:
            continue
        position = grid.distributor.mycoords[axis]
        neighbours = (position > 0) + (position < parts - 1)
        face = int(np.prod([n for k, n in enumerate(local) if k != axis]))
        sent += len(exchanged) * neighbours * face * (ORDER // 2) * itemsize
        messages += len(exchanged) * neighbours
    return {"fields_per_step": exchanged, "bytes_per_step": sent, "messages_per_step": messages}


def spawn(case: str, cells: int, nt: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="anelastic-mpi-bench-") as tmp:
        out = str(Path(tmp) / "result.json")
        threads = "2" if case == "omp2" else "1"
        command = [sys.executable, __file__, "--worker", "--cells", str(cells), "--nt", str(nt),
                   "--threads", threads, "--out", out]  # fmt: skip
        if case == "mpi2":
            from anelastic.checks.mpi import mpiexec

            command = [mpiexec(), "-n", "2", *command]
        env = {k: v for k, v in os.environ.items() if k != "DEVITO_MPI"}
        done = subprocess.run(command, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            raise RuntimeError(f"{case} failed (exit {done.returncode}): {done.stderr[-2000:]}")
        return json.loads(Path(out).read_text())


def projection(
    serial_seconds: float, cells: int, nt: int, measured_s_per_byte: float, fields: int
) -> list:
    """Efficiency on PROJECTED_RANKS ranks for PROJECTED_SHAPE (module docstring); ``fields``:
    the fields exchanged per step, as counted in the generated C."""
    s_per_cell = serial_seconds / ((cells + 2 * PML) ** 3 * nt)
    padded = [n + 2 * PML for n in PROJECTED_SHAPE]
    rows = []
    for ranks in PROJECTED_RANKS:
        topology = balanced_topology(ranks, 3)
        box = [n / p for n, p in zip(padded, topology, strict=True)]
        faces = [np.prod(box) / b for b in box]
        cut = [2 * f for f, p in zip(faces, topology, strict=True) if p > 1]  # interior rank
        bytes_step = fields * sum(cut) * (ORDER // 2) * 4
        messages = fields * 2 * sum(p > 1 for p in topology)
        compute = np.prod(box) * s_per_cell
        measured = bytes_step * measured_s_per_byte
        network = bytes_step / NETWORK_BYTES_PER_S + messages * NETWORK_LATENCY_S
        rows.append({
            "ranks": ranks, "topology": topology, "cells_per_rank": int(np.prod(box)),
            "halo_bytes_per_rank_per_step": int(bytes_step),
            "efficiency_measured_halo_cost": round(float(compute / (compute + measured)), 3),
            "efficiency_assumed_network": round(float(compute / (compute + network)), 3),
        })  # fmt: skip
    return rows


def balanced_topology(ranks: int, ndim: int) -> list[int]:
    """Ranks per axis as balanced as MPI_Dims_create makes them (Devito's default topology):
    prime factors, largest first, each to the axis with the fewest ranks so far."""
    factors, n, f = [], ranks, 2
    while n > 1:
        while n % f == 0:
            factors.append(f)
            n //= f
        f += 1
    topology = [1] * ndim
    for factor in sorted(factors, reverse=True):
        topology[topology.index(min(topology))] *= factor
    return sorted(topology, reverse=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=80)
    parser.add_argument("--nt", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.cells, args.nt, args.threads, args.out)
        return
    load_before = os.getloadavg()[0]
    runs: dict[str, list[dict]] = {case: [] for case in CASES}
    for _ in range(args.rounds):
        for case in CASES:
            runs[case].append(spawn(case, args.cells, args.nt))
            print(f"{case:7s} {runs[case][-1]['seconds']:7.2f} s", flush=True)
    report = summarise(runs, args, load_before)
    print(json.dumps({k: v for k, v in report.items() if k != "runs"}, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


def summarise(runs: dict, args, load_before: float) -> dict:
    median = {case: float(np.median([r["seconds"] for r in rs])) for case, rs in runs.items()}
    mpi = runs["mpi2"][-1]
    halo = mpi["halo_per_rank"]
    bytes_step = max(h["bytes_per_step"] for h in halo)
    extra = median["mpi2"] - median["serial"] / 2  # above perfect halving, whole run
    s_per_byte = max(extra, 0.0) / (bytes_step * args.nt) if bytes_step else 0.0
    return {
        "case": f"3-D viscoelastic {args.cells}^3 + PML {PML}, order {ORDER}, nt {args.nt}",
        "median_seconds": median,
        "strong_scaling_efficiency_2_ranks": median["serial"] / (2 * median["mpi2"]),
        "speedup_2_ranks": median["serial"] / median["mpi2"],
        "speedup_2_threads": median["serial"] / median["omp2"],
        "peak_rss_mib_per_rank": {c: rs[-1]["peak_rss_mib_per_rank"] for c, rs in runs.items()},
        "halo_per_rank_2_ranks": halo,
        "measured_seconds_per_halo_byte": s_per_byte,
        "projection": projection(
            median["serial"], args.cells, args.nt, s_per_byte, len(halo[0]["fields_per_step"])
        ),
        "load_average_1min": [load_before, os.getloadavg()[0]],
        "machine": platform.processor() or platform.machine(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "runs": runs,
    }


if __name__ == "__main__":
    main()
