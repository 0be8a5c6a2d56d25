"""Benchmark P1: 2-D viscoacoustic forward, our Devito solver against Deepwave 0.1.0.

P1: 400 x 400 cells, dx 10 m, vp 2000 m/s with a +10 % Gaussian anomaly (radius 300 m) in the
middle, rho 2000 kg/m^3, Q 50 with 3 SLS, 10 Hz Ricker near the top, 100 receivers near the top,
dt 1 ms, nt 2000, PML 20 cells, float32, 2 threads, space order 4 (Deepwave's default accuracy;
``--space-order 8`` runs both solvers at order 8).

Cases, each in its own subprocess (separate peak-RSS figures): ours with the thread count
chosen by measurement (``ours``, the package default), ours on exactly 1 and 2 threads
(``ours_1``, ``ours_2``), and Deepwave on ``--threads`` threads. Within a worker the operator is
built and warmed up once, then the full nt-step run is timed ``--reps`` times; the cases
alternate for ``--rounds`` rounds so all see the same machine load, and all times are pooled.
Cell-updates per second count the 400 x 400 model cells (not the PML) times nt.

JSON: ``ratio_vs_deepwave`` (our median cell-updates/s, measured thread count, over Deepwave's),
``two_thread_speedup`` (ours_1 median time over ours_2 median time, same run).
``--compete`` keeps one busy process running through all rounds (a shared machine).

    python anelastic/benchmarks/forward.py --json forward.json [--rounds 8] [--reps 1]
        [--space-order 4] [--compete]
"""

from __future__ import annotations

import argparse
import contextlib
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
CASES = ("ours", "ours_1", "ours_2", "deepwave")


def p1_velocity() -> np.ndarray:
    """vp [N, N]: 2000 m/s times (1 + 0.1 exp(-r^2 / 300^2)) around the centre."""
    x = H * np.arange(N)
    r2 = (x[:, None] - x[N // 2]) ** 2 + (x[None, :] - x[N // 2]) ** 2
    return 2000.0 * (1.0 + 0.1 * np.exp(-r2 / 300.0**2))


def receiver_x() -> np.ndarray:
    return H * np.round(np.linspace(2, N - 3, 100))


def run_ours(reps: int, threads: int | None, space_order: int) -> dict:
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
    chosen = sim.propagator.threads_for(sim).summary()
    return {"times": times, "setup_seconds": setup, "check_peak_amplitude": peak, "threads": chosen}


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
    if which == "deepwave":
        result = run_deepwave(reps, threads, space_order)
    else:
        fixed = {"ours": None, "ours_1": 1, "ours_2": 2}[which]
        result = run_ours(reps, fixed, space_order)
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print("RESULT " + json.dumps(result))


class WorkerFailed(RuntimeError):
    """A benchmark worker ended without a result."""


def spawn(
    which: str, reps: int, threads: int, space_order: int, script: str = __file__, extra=()
) -> dict:
    """Run ``script --worker which`` in a subprocess (own peak RSS) and return its RESULT."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    cmd = [sys.executable, script, "--worker", which, "--reps", str(reps)]
    cmd += ["--threads", str(threads), "--space-order", str(space_order), *extra]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        # A negative code is the signal that killed it (-9: the kernel's OOM killer, usually).
        raise WorkerFailed(
            f"{which} worker failed (exit code {proc.returncode}):\n"
            f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
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
        "thread_choice": runs[-1].get("threads"),
    }


@contextlib.contextmanager
def competing_process(enabled: bool):
    """One busy Python process for the duration (a machine shared with one other job)."""
    if not enabled:
        yield
        return
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        proc.kill()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=str, default=None)
    parser.add_argument("--reps", type=int, default=1, help="timed runs per round")
    parser.add_argument("--rounds", type=int, default=8, help="alternating rounds")
    parser.add_argument("--threads", type=int, default=2, help="cores (Deepwave's threads)")
    parser.add_argument("--space-order", type=int, default=4)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--compete", action="store_true", help="one busy process alongside")
    parser.add_argument("--worker", choices=CASES, default=None)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.reps, args.threads, args.space_order)
        return
    cases = [c for c in args.cases.split(",") if c]
    runs: dict[str, list[dict]] = {c: [] for c in cases}
    load_before = os.getloadavg()[0]
    with competing_process(args.compete):
        for _ in range(args.rounds):  # alternate so all cases see the same machine load
            for which in cases:
                runs[which].append(spawn(which, args.reps, args.threads, args.space_order))
    results = {c: summarise(r) for c, r in runs.items()}
    report = {
        "problem": "P1",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},
        "competing_process": args.compete,
        "threads": args.threads,
        "omp_env": {k: v for k, v in os.environ.items() if k.startswith(("OMP_", "GOMP_"))},
        "space_order": args.space_order,
        "rounds": args.rounds,
        "reps_per_round": args.reps,
        "cases": results,
        **ratios(results),
    }
    for name, r in results.items():
        print(
            f"{name:9s} median {r['median_seconds']:.3f} s  best {r['best_seconds']:.3f} s  "
            f"{r['mcell_updates_per_s']:.0f} Mcell-updates/s  peak RSS {r['peak_rss_mib']:.0f} MiB"
        )
    for key in ("ratio_vs_deepwave", "two_thread_speedup", "measured_over_best_fixed"):
        if key in report:
            print(f"{key} = {report[key]:.2f}")
    print(f"load average (1 min): {load_before:.2f} before, {os.getloadavg()[0]:.2f} after")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2)


def ratios(results: dict) -> dict:
    """The JSON's ratios of medians (see the module docstring)."""
    out = {}
    median = {c: r["median_seconds"] for c, r in results.items()}
    if "ours" in median and "deepwave" in median:
        out["ratio_vs_deepwave"] = median["deepwave"] / median["ours"]
    if "ours_1" in median and "ours_2" in median:
        out["two_thread_speedup"] = median["ours_1"] / median["ours_2"]
        if "ours" in median:  # the measured choice against the better fixed count
            out["measured_over_best_fixed"] = (
                min(median["ours_1"], median["ours_2"]) / median["ours"]
            )
    return out


if __name__ == "__main__":
    main()
