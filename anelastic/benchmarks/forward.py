"""Benchmark P1: 2-D viscoacoustic forward, our Devito solver against Deepwave 0.1.0.

P1: 400 x 400 cells, dx 10 m, vp 2000 m/s with a +10 % Gaussian anomaly (radius 300 m) in the
middle, rho 2000 kg/m^3, Q 50 with 3 SLS, 10 Hz Ricker near the top, 100 receivers near the top,
dt 1 ms, nt 2000, PML 20 cells, float32, 2 threads, space order 4 (Deepwave's default accuracy;
``--space-order 8`` runs both solvers at order 8).

Each solver runs in its own subprocess (separate peak-RSS figures); within it the operator is
built and warmed up once, then the full nt-step run is timed ``--reps`` times; the two solvers
alternate for ``--rounds`` rounds so both see the same machine load, and all times are pooled.
Cell-updates per second count the 400 x 400 model cells (not the PML) times nt. The JSON field
``ratio_vs_deepwave`` is our median cell-updates/s over Deepwave's median.

    python anelastic/benchmarks/forward.py --json forward.json [--rounds 2] [--reps 3]
        [--space-order 4]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

import numpy as np

N, H, NT, DT, PML, F0, Q = 400, 10.0, 2000, 1e-3, 20, 10.0, 50.0
SOURCE = (200 * H, 10 * H)
RECEIVER_Z = 5 * H
CELL_UPDATES = N * N * NT
# Passive OpenMP waiting (anelastic's default) for both solvers: on a shared machine spinning
# threads slow both down 5-20x; export OMP_WAIT_POLICY to override.
WAIT_POLICY = "passive"


def p1_velocity() -> np.ndarray:
    """vp [N, N]: 2000 m/s times (1 + 0.1 exp(-r^2 / 300^2)) around the centre."""
    x = H * np.arange(N)
    r2 = (x[:, None] - x[N // 2]) ** 2 + (x[None, :] - x[N // 2]) ** 2
    return 2000.0 * (1.0 + 0.1 * np.exp(-r2 / 300.0**2))


def receiver_x() -> np.ndarray:
    return H * np.round(np.linspace(2, N - 3, 100))


def run_ours(reps: int, threads: int, space_order: int) -> dict:
    from anelastic.acquisition import Receivers, Source, ricker
    from anelastic.forward.simulation import Simulation, TimeAxis
    from anelastic.model import Grid, Model
    from anelastic.physics import PhysicsConfig

    grid = Grid((N, N), (H, H))
    vp = p1_velocity()
    model = Model(grid, vp, 0.0, 2000.0, Q, np.inf, f_ref=F0)
    positions = np.stack([receiver_x(), np.full(100, RECEIVER_Z)], axis=1)
    args = (model, [Source(SOURCE, ricker(F0))], Receivers(positions), TimeAxis(DT, NT))
    config = PhysicsConfig(space_order=space_order, pml_width=PML, n_sls=3)
    start = time.perf_counter()
    sim = Simulation(*args, config, threads=threads)
    sim.advance(2)  # JIT compile (or load from the Devito cache)
    setup = time.perf_counter() - start
    times = []
    for _ in range(reps):
        sim = Simulation(*args, config, threads=threads)
        t0 = time.perf_counter()
        seis = sim.run()
        times.append(time.perf_counter() - t0)
    peak = float(np.abs(next(iter(seis.data.values()))).max())
    return {"times": times, "setup_seconds": setup, "check_peak_amplitude": peak}


def run_deepwave(reps: int, threads: int, space_order: int) -> dict:
    import deepwave
    import torch

    from anelastic.acquisition import ricker

    torch.set_num_threads(threads)
    v = torch.tensor(p1_velocity(), dtype=torch.float32)
    rho = torch.full_like(v, 2000.0)
    q = torch.full_like(v, Q)
    wavelet = ricker(F0)(DT * np.arange(NT) + DT / 2)
    amps = torch.tensor(wavelet, dtype=torch.float32).reshape(1, 1, NT)
    src_loc = torch.tensor([[[int(SOURCE[0] / H), int(SOURCE[1] / H)]]])
    rec_loc = torch.tensor(
        [[[int(x / H), int(RECEIVER_Z / H)] for x in receiver_x()]], dtype=torch.long
    )
    kwargs = dict(
        source_amplitudes_pressure_rate=amps,
        source_locations_pressure_rate=src_loc,
        receiver_locations_p=rec_loc,
        pml_width=PML,
        q_n_mechanisms=3,
        q_band=(F0 / 10, F0 * 10),
        accuracy=space_order,
        pml_freq=F0,
    )
    start = time.perf_counter()
    deepwave.viscoacoustic(v, rho, q, H, DT, **{**kwargs, "nt": 4})
    setup = time.perf_counter() - start
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        out = deepwave.viscoacoustic(v, rho, q, H, DT, **kwargs)
        times.append(time.perf_counter() - t0)
    peak = float(out.receiver_amplitudes_p.abs().max())
    return {"times": times, "setup_seconds": setup, "check_peak_amplitude": peak}


def worker(which: str, reps: int, threads: int, space_order: int) -> None:
    result = (
        run_ours(reps, threads, space_order)
        if which == "ours"
        else run_deepwave(reps, threads, space_order)
    )
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print("RESULT " + json.dumps(result))


def spawn(which: str, reps: int, threads: int, space_order: int, script: str = __file__) -> dict:
    """Run ``script --worker which`` in a subprocess (own peak RSS) and return its RESULT."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    env.setdefault("OMP_WAIT_POLICY", WAIT_POLICY)  # same OpenMP runtime setting for both
    cmd = [sys.executable, script, "--worker", which, "--reps", str(reps)]
    cmd += ["--threads", str(threads), "--space-order", str(space_order)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{which} worker failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def summarise(runs: list[dict]) -> dict:
    """Times of all rounds pooled; median/best seconds, Mcell-updates/s, max peak RSS."""
    times = [t for r in runs for t in r["times"]]
    median = float(np.median(times))
    return {
        "times": times,
        "median_seconds": median,
        "best_seconds": float(np.min(times)),
        "mcell_updates_per_s": CELL_UPDATES / median / 1e6,
        "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
        "setup_seconds": [r["setup_seconds"] for r in runs],
        "check_peak_amplitude": runs[0]["check_peak_amplitude"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=str, default=None)
    parser.add_argument("--reps", type=int, default=3, help="timed runs per round")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--space-order", type=int, default=4)
    parser.add_argument("--worker", choices=["ours", "deepwave"], default=None)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.reps, args.threads, args.space_order)
        return
    # Alternate the solvers round by round so both see the same machine load.
    runs: dict[str, list[dict]] = {"ours": [], "deepwave": []}
    for _ in range(args.rounds):
        for which in runs:
            runs[which].append(spawn(which, args.reps, args.threads, args.space_order))
    ours, theirs = summarise(runs["ours"]), summarise(runs["deepwave"])
    report = {
        "problem": "P1",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "load_average_1min": os.getloadavg()[0],
        "threads": args.threads,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", WAIT_POLICY),
        "space_order": args.space_order,
        "rounds": args.rounds,
        "reps_per_round": args.reps,
        "ours": ours,
        "deepwave": theirs,
        "ratio_vs_deepwave": ours["mcell_updates_per_s"] / theirs["mcell_updates_per_s"],
    }
    for name, r in (("ours", ours), ("deepwave", theirs)):
        print(
            f"{name:9s} median {r['median_seconds']:.3f} s  best {r['best_seconds']:.3f} s  "
            f"{r['mcell_updates_per_s']:.0f} Mcell-updates/s  peak RSS {r['peak_rss_mib']:.0f} MiB"
        )
    print(f"ratio_vs_deepwave = {report['ratio_vs_deepwave']:.2f}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2)


if __name__ == "__main__":
    main()
