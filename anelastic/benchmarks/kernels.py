"""Benchmark P1 kernels: our kernel pass (checkpoint, full) against Deepwave 0.1.0's gradient.

P1 as in ``forward.py`` (400 x 400 cells, nt 2000, Q 50, 3 SLS, float32, 2 threads, order 4).
Misfit: waveform L2 against zero data (so the adjoint source is the synthetic itself; the
cost of a gradient does not depend on the data). Cases, each in its own subprocess (own peak
RSS), alternating round by round so all see the same machine load:

- ``ours_forward``: our forward run (the unit of ``kernel_over_forward``);
- ``ours_checkpoint``: forward with snapshots every N = 45 steps (~sqrt(nt)) to a disk store,
  then replay + adjoint chunk by chunk (3 nt steps), kernels of vp, rho, Q;
- ``ours_full``: all nt frames in RAM (needs ~7.7 GB for P1);
- ``ours_dispersion``: the dispersion-only approach (4 nt steps, the paper's comparison: it
  reconstructs the forward backwards from a boundary ring, so the adjoint sees a lossless field);
- ``deepwave_default``: ``deepwave.viscoacoustic`` forward + ``backward()`` for v and Q grads,
  its default storage (every step kept);
- ``deepwave_checkpointed``: the same with ``checkpoint_segments=45``
  (= ``deepwave.checkpointing.run_segments(checkpoint=True)`` with 45 segments).

Within a worker the case runs once untimed (JIT compile / warm-up), then ``--reps`` timed runs.
Our cases run with the thread count chosen by measurement (the package default) unless
``--fixed-threads`` is given. JSON: ``kernel_over_forward`` (our checkpoint time / our forward
time; goal <= 3.5), ``phase_over_forward`` (each phase of the checkpointed kernel, median over
runs, over the forward's median: ``forward_with_snapshots``, ``replay``, ``adjoint``),
``dispersion_over_exact`` (dispersion-only time / checkpoint time; the paper's 4/3),
``peak_ram_vs_deepwave_checkpointed`` (our checkpoint peak RSS / Deepwave checkpointed peak RSS;
goal <= 1), ``speed_vs_deepwave_checkpointed`` (Deepwave checkpointed time / ours; goal > 1).

A 3-D case (``--three-d-cells N``, e.g. 120 with ``--three-d-nt 800``): viscoelastic, N^3
cells of 10 m, vp 2000 / vs 1150 m/s, Q 30, 10 Hz, order 8, PML 10, pressure receivers on a line,
our forward, checkpointed and dispersion-only cases only (Deepwave has no 3-D viscoelastic
solver); its ratios go under ``"3d"`` with the same keys.

    python anelastic/benchmarks/kernels.py --json kernels.json [--rounds 2] [--reps 2]
        [--cases ours_forward,ours_checkpoint,deepwave_checkpointed]
        [--three-d-cells 120 --three-d-nt 800]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import forward as p1  # noqa: E402  (P1's model and acquisition)

SEGMENTS = 45
CASES = (
    "ours_forward",
    "ours_checkpoint",
    "ours_dispersion",
    "ours_full",
    "deepwave_default",
    "deepwave_checkpointed",
)


def _event_3d(cells: int, nt: int):
    """The 3-D viscoelastic event (module docstring), zero observed data."""
    from anelastic.acquisition import Component, Receivers, Seismograms, Source, ricker
    from anelastic.forward.simulation import TimeAxis
    from anelastic.kernel.inputs import Event
    from anelastic.model import Grid, homogeneous
    from anelastic.physics import PhysicsConfig, PhysicsKind

    h = 10.0
    grid = Grid((cells,) * 3, (h,) * 3)
    model = homogeneous(grid, 2000.0, 2000.0, 1150.0, 30.0, 30.0, f_ref=10.0)
    centre = h * (cells // 2)
    xs = h * np.linspace(2, cells - 3, 10)
    positions = np.stack([xs, np.full(10, centre), np.full(10, 5 * h)], axis=1)
    config = PhysicsConfig(PhysicsKind.VISCOELASTIC, space_order=8, pml_width=10)
    zeros = Seismograms(1e-3, positions, {Component.P: np.zeros((nt, 10))})
    source = Source((centre, centre, centre), ricker(10.0))
    return Event(model, [source], Receivers(positions), TimeAxis(1e-3, nt), config, zeros)


def _our_event(space_order: int):
    from anelastic.acquisition import Component, Receivers, Seismograms, Source, ricker
    from anelastic.forward.simulation import TimeAxis
    from anelastic.kernel.inputs import Event
    from anelastic.model import Grid, Model
    from anelastic.physics import PhysicsConfig

    grid = Grid((p1.N, p1.N), (p1.H, p1.H))
    model = Model(grid, p1.p1_velocity(), 0.0, 2000.0, p1.Q, np.inf, f_ref=p1.F0)
    positions = np.stack([p1.receiver_x(), np.full(100, p1.RECEIVER_Z)], axis=1)
    receivers = Receivers(positions)
    time_axis = TimeAxis(p1.DT, p1.NT)
    config = PhysicsConfig(space_order=space_order, pml_width=p1.PML, n_sls=3)
    zeros = Seismograms(p1.DT, positions, {Component.P: np.zeros((p1.NT, 100))})
    return Event(model, [Source(p1.SOURCE, ricker(p1.F0))], receivers, time_axis, config, zeros)


STORAGE_OF_CASE = {
    "ours_checkpoint": "checkpoint",
    "ours_full": "full",
    "ours_dispersion": "dispersion-only",
}


def run_ours(
    case: str, reps: int, threads: int | None, space_order: int, three_d: tuple[int, int] = (0, 0)
) -> dict:
    from anelastic.forward.simulation import Simulation
    from anelastic.kernel.compute import compute_kernels
    from anelastic.kernel.inputs import KernelSettings, Storage, kernel_fit
    from anelastic.kernel.misfit import Misfit

    event = _event_3d(*three_d) if three_d[0] else _our_event(space_order)
    fit = kernel_fit(event.model, event.config, event.f0)
    if case == "ours_forward":
        args = (event.model, event.sources, event.receivers, event.time, event.config)

        def once():
            Simulation(*args, threads=threads, sls_fit=fit).run()
            return {}
    else:
        storage = Storage(STORAGE_OF_CASE[case])

        def once():
            with tempfile.TemporaryDirectory(prefix="anelastic-bench-") as store:
                settings = KernelSettings(
                    Misfit(), storage,
                    chunk=_segments(event.time.nt) if storage is Storage.CHECKPOINT else None,
                    memory_budget=_budget(), store=Path(store), threads=threads,
                )  # fmt: skip
                result = compute_kernels(event, settings)
            s = result.summary
            return {
                "time_steps": s["time_steps"],
                "phase_seconds": s["seconds"],
                "thread_choice": s["threads"],
                "store_bytes": s.get("store_bytes", 0),
                "buffer_bytes": s["buffer_bytes"],
            }

    return _timed(once, reps)


def _budget() -> int:
    """20 GiB, or half the RAM available now if less: at 80^3 cells a 20 GiB buffer of
    dispersion-only frames plus its boundary ring ran this 24 GiB machine out of memory."""
    available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return min(20 * 2**30, available // 2)


def _segments(nt: int) -> int:
    """Chunk length N: SEGMENTS for P1, ~sqrt(nt) otherwise."""
    return SEGMENTS if nt == p1.NT else max(1, round(nt**0.5))


def _timed(once, reps: int) -> dict:
    start = time.perf_counter()
    once()  # compile / warm-up
    setup = time.perf_counter() - start
    times, info, phases = [], {}, []
    for _ in range(reps):
        t0 = time.perf_counter()
        info = once()
        times.append(time.perf_counter() - t0)
        phases.append(info.get("phase_seconds"))
    return {"times": times, "setup_seconds": setup, **info, "phase_seconds_per_run": phases}


def run_deepwave(case: str, reps: int, threads: int, space_order: int) -> dict:
    import deepwave
    import torch

    from anelastic.acquisition import ricker

    torch.set_num_threads(threads)
    wavelet = ricker(p1.F0)(p1.DT * np.arange(p1.NT) + p1.DT / 2)
    amps = torch.tensor(wavelet, dtype=torch.float32).reshape(1, 1, p1.NT)
    src_loc = torch.tensor([[[int(p1.SOURCE[0] / p1.H), int(p1.SOURCE[1] / p1.H)]]])
    rec_loc = torch.tensor(
        [[[int(x / p1.H), int(p1.RECEIVER_Z / p1.H)] for x in p1.receiver_x()]], dtype=torch.long
    )
    kwargs = dict(
        source_amplitudes_pressure_rate=amps, source_locations_pressure_rate=src_loc,
        receiver_locations_p=rec_loc, pml_width=p1.PML, q_n_mechanisms=3,
        q_band=(p1.F0 / 10, p1.F0 * 10), accuracy=space_order, pml_freq=p1.F0,
    )  # fmt: skip
    if case == "deepwave_checkpointed":
        kwargs["checkpoint_segments"] = SEGMENTS

    def once():
        v = torch.tensor(p1.p1_velocity(), dtype=torch.float32, requires_grad=True)
        rho = torch.full_like(v, 2000.0)
        q = torch.full_like(v, p1.Q).requires_grad_()
        out = deepwave.viscoacoustic(v, rho, q, p1.H, p1.DT, **kwargs)
        loss = 0.5 * p1.DT * (out.receiver_amplitudes_p**2).sum()
        loss.backward()
        return {"grad_norm_v": float(v.grad.norm())}

    return _timed(once, reps)


def worker(
    case: str, reps: int, threads: int, space_order: int, fixed: bool, three_d: tuple[int, int]
) -> None:
    if case.startswith("ours"):
        result = run_ours(case, reps, threads if fixed else None, space_order, three_d)
    else:
        result = run_deepwave(case, reps, threads, space_order)
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print("RESULT " + json.dumps(result))


def summarise(runs: list[dict]) -> dict:
    times = [t for r in runs for t in r["times"]]
    out = {
        "times": times,
        "median_seconds": float(np.median(times)),
        "best_seconds": float(np.min(times)),
        "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
    }
    for key in ("time_steps", "store_bytes", "buffer_bytes", "phase_seconds", "grad_norm_v"):
        if key in runs[-1]:
            out[key] = runs[-1][key]
    per_run = [p for r in runs for p in r.get("phase_seconds_per_run", []) if p]
    if per_run:
        out["phase_median_seconds"] = {
            phase: float(np.median([p[phase] for p in per_run])) for phase in per_run[0]
        }
        out["thread_choice"] = runs[-1].get("thread_choice")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=str, default=None)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--space-order", type=int, default=4)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument(
        "--fixed-threads",
        action="store_true",
        help="ours on exactly --threads threads (default: chosen by measurement)",
    )
    parser.add_argument("--three-d-cells", type=int, default=0, help="3-D case: cells per axis")
    parser.add_argument("--three-d-nt", type=int, default=800)
    parser.add_argument(
        "--three-d-cases",
        default="ours_forward,ours_checkpoint,ours_dispersion",
        help="3-D cases to run (a subset of ours_forward, ours_checkpoint, ours_dispersion)",
    )
    parser.add_argument("--worker", choices=CASES, default=None)
    args = parser.parse_args()
    three_d = (args.three_d_cells, args.three_d_nt)
    if args.worker:
        worker(args.worker, args.reps, args.threads, args.space_order, args.fixed_threads, three_d)
        return
    extra = ["--fixed-threads"] if args.fixed_threads else []
    report = {
        "problem": "P1 kernels (waveform misfit, vp/rho/Q gradients)",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "load_average_1min": {"before": os.getloadavg()[0]},
        "threads": args.threads,
        "our_threads": "fixed" if args.fixed_threads else "chosen by measurement",
        "space_order": args.space_order,
        "segments": SEGMENTS,
        "rounds": args.rounds,
        "reps_per_round": args.reps,
    }
    cases = [c for c in args.cases.split(",") if c]
    if cases:
        results = measure(cases, args, extra)
        report.update(cases=results, **_ratios(results))
        print_results(results, report)
    if args.three_d_cells:
        cases_3d = [c for c in args.three_d_cases.split(",") if c]
        flags = ["--three-d-cells", str(args.three_d_cells), "--three-d-nt", str(args.three_d_nt)]
        results = measure(cases_3d, args, extra + flags)
        report["3d"] = {"cells_per_axis": args.three_d_cells, "nt": args.three_d_nt,
                        "cases": results, **_ratios(results)}  # fmt: skip
        print(f"3-D viscoelastic, {args.three_d_cells}^3 cells, nt {args.three_d_nt}:")
        print_results(results, report["3d"])
    report["load_average_1min"]["after"] = os.getloadavg()[0]
    print(f"load average (1 min): {report['load_average_1min']}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


def measure(cases: list[str], args, extra: list[str]) -> dict:
    """Each case in its own subprocess, alternating round by round; medians per case. A case
    whose worker fails (e.g. killed out of memory) is reported as such, the others kept."""
    runs: dict[str, list[dict]] = {c: [] for c in cases}
    failed: dict[str, str] = {}
    for _ in range(args.rounds):
        for case in cases:
            if case in failed:
                continue
            try:
                runs[case].append(
                    p1.spawn(case, args.reps, args.threads, args.space_order, __file__, extra)
                )
            except p1.WorkerFailed as err:
                failed[case] = str(err).splitlines()[0]
                print(failed[case], file=sys.stderr)
    out = {c: summarise(r) for c, r in runs.items() if r}
    out.update({c: {"failed": reason} for c, reason in failed.items()})
    return out


def print_results(results: dict, ratios: dict) -> None:
    for case, r in results.items():
        if "failed" in r:
            print(f"{case:22s} {r['failed']}")
            continue
        print(f"{case:22s} median {r['median_seconds']:7.2f} s  best {r['best_seconds']:7.2f} s  "
              f"peak RSS {r['peak_rss_mib']:7.0f} MiB")  # fmt: skip
    for key in ("kernel_over_forward", "dispersion_over_exact", "peak_ram_vs_deepwave_checkpointed",
                "speed_vs_deepwave_checkpointed", "full_over_forward"):  # fmt: skip
        if key in ratios:
            print(f"{key} = {ratios[key]:.2f}")
    for phase, ratio in ratios.get("phase_over_forward", {}).items():
        print(f"phase_over_forward[{phase}] = {ratio:.2f}")


def _ratios(results: dict) -> dict:
    results = {case: r for case, r in results.items() if "failed" not in r}
    out = {}
    ours = results.get("ours_checkpoint")
    fwd = results.get("ours_forward")
    dw = results.get("deepwave_checkpointed")
    if ours and fwd:
        out["kernel_over_forward"] = ours["median_seconds"] / fwd["median_seconds"]
    if ours and dw:
        out["peak_ram_vs_deepwave_checkpointed"] = ours["peak_rss_mib"] / dw["peak_rss_mib"]
        out["speed_vs_deepwave_checkpointed"] = dw["median_seconds"] / ours["median_seconds"]
    if ours and fwd and "phase_median_seconds" in ours:
        names = {"forward_with_snapshots": "forward", "replay": "replay", "adjoint": "adjoint"}
        phases = ours["phase_median_seconds"]
        out["phase_over_forward"] = {
            key: phases[phase] / fwd["median_seconds"]
            for key, phase in names.items()
            if phase in phases
        }
    if ours and results.get("ours_dispersion"):
        out["dispersion_over_exact"] = (
            results["ours_dispersion"]["median_seconds"] / ours["median_seconds"]
        )
    if results.get("ours_full") and fwd:
        out["full_over_forward"] = results["ours_full"]["median_seconds"] / fwd["median_seconds"]
    return out


if __name__ == "__main__":
    main()
