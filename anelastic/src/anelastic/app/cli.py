"""Command line: ``anelastic forward | kernel | demo | verify``.

A thin layer: argument parsing, printing and exit codes; the work is in :mod:`.runs` (forward,
kernel), :mod:`.demo` and :mod:`anelastic.checks` (verify). Heavy modules are imported by the
command that needs them, so ``anelastic --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="anelastic", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    fwd = sub.add_parser("forward", help="run a forward simulation from a TOML config")
    fwd.add_argument("config", type=Path)
    fwd.add_argument("--out", type=Path, required=True, help="output directory")
    fwd.add_argument("--no-progress", action="store_true")
    fwd.add_argument(
        "--per-source", action="store_true", help="one gather per source (on Dask if several)"
    )
    fwd.add_argument("--scheduler", help="address of a Dask scheduler (with --per-source)")
    fwd.add_argument("--workers", type=int, help="LocalCluster workers (default: cores)")
    _add_mpi_mode(fwd)
    _add_kernel(sub)
    demo = sub.add_parser("demo", help="2-D demo with and without attenuation (< 2 min)")
    demo.add_argument("--out", type=Path, default=Path("anelastic_demo"))
    ver = sub.add_parser("verify", help="self-checks: analytic solutions, kernels")
    ver.add_argument("what", choices=["analytic", "kernels", "mpi"])
    ver.add_argument("--json", action="store_true", help="print JSON only")
    ver.add_argument("--case", action="append", help="run only this case (repeatable)")
    ver.add_argument("--ranks", type=int, default=2, help="MPI ranks for `verify mpi`")
    args = parser.parse_args(argv)
    try:
        _use_mpi_mode(getattr(args, "mpi_mode", None))
        if args.command == "forward":
            return run_forward(args)
        if args.command == "kernel":
            return run_kernel_command(args)
        if args.command == "demo":
            return run_demo_command(args.out)
        if args.what == "kernels":
            return run_verify_kernels(args.json)
        if args.what == "mpi":
            return run_verify_mpi(args.case, args.ranks, args.json)
        return run_verify(args.case, args.json)
    except (ValueError, OSError) as err:  # what a user's input can cause
        print(f"anelastic: error: {err}", file=sys.stderr)
        return 2


def run_forward(args) -> int:
    from anelastic.app.parallel import EventsFailed
    from anelastic.app.runs import run_forward as forward_run

    try:
        summary = forward_run(
            args.config, args.out, not args.no_progress, args.per_source, args.scheduler,
            args.workers,
        )  # fmt: skip
    except EventsFailed as err:
        print(f"anelastic: error: {err}", file=sys.stderr)
        return 2 if err.users_mistake else 1
    if _is_root():
        print(json.dumps(summary))
    return 0


def _add_mpi_mode(cmd) -> None:
    cmd.add_argument(
        "--mpi-mode", choices=["basic", "diag2", "full"],
        help="Devito's halo-exchange scheme under mpiexec -n N (default basic; full overlaps "
        "exchanges with compute)",
    )  # fmt: skip


def _use_mpi_mode(mode: str | None) -> None:
    """Set Devito's MPI mode before Devito loads; refused without an MPI launch."""
    if mode is None:
        return
    from anelastic.forward.decomposition import launched_ranks

    if launched_ranks() < 2:
        raise ValueError(
            f"--mpi-mode {mode} needs a decomposed run: start it as mpiexec -n N anelastic ... "
            "(N >= 2), or drop --mpi-mode"
        )
    import os

    os.environ["DEVITO_MPI"] = mode


def _is_root() -> bool:
    """Rank 0 under MPI (it alone prints what every rank computed alike), else True."""
    from anelastic.forward import decomposition

    return decomposition.is_root()


def _add_kernel(sub) -> None:
    cmd = sub.add_parser(
        "kernel", help="sensitivity kernels of every event of a config (sum over events)"
    )
    cmd.add_argument("config", type=Path, help="TOML with a [kernel] section")
    cmd.add_argument("--out", type=Path, required=True, help="output directory")
    cmd.add_argument(
        "--storage", choices=["checkpoint", "full", "reverse", "dispersion-only"],
        help="how the adjoint gets the forward field (default: the config's, else checkpoint)",
    )  # fmt: skip
    cmd.add_argument("--memory-budget", help="RAM for the replay buffer, e.g. 2GiB (default)")
    cmd.add_argument("--chunk", type=int, help="replay chunk length N (overrides the budget)")
    cmd.add_argument("--store", type=Path, help="snapshot store directory (default OUT/store)")
    cmd.add_argument("--scheduler", help="address of a Dask scheduler for many events")
    cmd.add_argument("--workers", type=int, help="LocalCluster workers (default: cores)")
    _add_mpi_mode(cmd)
    cmd.add_argument("--no-progress", action="store_true")


def run_kernel_command(args) -> int:
    from anelastic.app.parallel import EventsFailed
    from anelastic.app.runs import run_kernel

    try:
        summary = run_kernel(
            args.config, args.out, args.storage, args.memory_budget, args.chunk, args.store,
            args.scheduler, args.workers, progress=not args.no_progress,
        )  # fmt: skip
    except EventsFailed as err:
        print(f"anelastic: error: {err}", file=sys.stderr)
        return 2 if err.users_mistake else 1
    if not _is_root():
        return 0
    for k, event in enumerate(summary["per_event"]):
        steps = ", ".join(f"{p} {n}" for p, n in event["time_steps"].items())
        print(f"event {k}: misfit {event['misfit']:.6g}; steps: {steps}; N = {event['chunk']}; "
              f"peak RAM {event['peak_ram_bytes'] / 2**20:.0f} MiB; "
              f"store {event.get('store_bytes', 0) / 2**20:.1f} MiB")  # fmt: skip
    print(f"wrote {len(summary['files'])} files to {args.out} in {summary['seconds']:.1f} s")
    return 0


def run_verify_kernels(as_json: bool) -> int:
    from anelastic.checks.kernels import verify_kernels

    report = verify_kernels()
    if as_json:
        print(json.dumps(report, indent=2))
        return 0 if report["passed"] else 1
    ckpt = report["checkpoint_vs_full"]["max_rel_diff"]
    print(f"checkpoint vs full: max relative difference {ckpt:.3g} (tolerance 1e-6)")
    for row in report["gradient_check"]:
        print(f"gradient {row['physics']:14s} {row['misfit']:14s} {row['parameter']:4s} "
              f"relative error {row['rel_error']:.2e}")  # fmt: skip
    print(f"time steps: {report['time_steps']}")
    print(f"dispersion-only vs exact K_alpha: {report['dispersion_only_vs_exact']}")
    print("PASSED" if report["passed"] else "FAILED", f"({report['seconds']} s)")
    return 0 if report["passed"] else 1


def run_verify_mpi(cases: list[str] | None, ranks: int, as_json: bool) -> int:
    from anelastic.checks.mpi import TOLERANCE, verify_mpi

    if ranks < 2:
        raise ValueError(f"--ranks must be >= 2 to decompose anything, got {ranks}")
    report = verify_mpi(cases, ranks)
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        for row in report["cases"]:
            status = "ok  " if row["passed"] else "FAIL"
            print(f"{status} {row['name']:36s} {ranks} ranks vs serial: max relative "
                  f"difference {row['max_rel_diff']:.3g} (tolerance {TOLERANCE:g}, "
                  f"{row['seconds']} s)")  # fmt: skip
    return 0 if report["passed"] else 1


def run_demo_command(out: Path) -> int:
    from anelastic.app.demo import run_demo

    summary = run_demo(out)
    print(f"physics: {summary['physics']}")
    print(f"input Q = {summary['q_input']:g}    Q recovered by spectral ratio = "
          f"{summary['q_recovered']:.1f}")  # fmt: skip
    if "storage_table" in summary:
        from anelastic.app.demo import format_table

        print(f"{summary['kernel_physics']} traveltime kernel, exact vs dispersion-only: "
              f"||difference|| / ||K_alpha|| = {summary['kernel_rel_difference']:.2f}")  # fmt: skip
        print(format_table(summary["storage_table"]))
    print(f"wrote {', '.join(summary['outputs'])} to {out} in {summary['seconds']:.1f} s")
    return 0


def run_verify(cases: list[str] | None, as_json: bool) -> int:
    from anelastic.checks.analytic import run_all

    results = run_all(cases)
    if as_json:
        print(json.dumps({"cases": [r.as_dict() for r in results]}, indent=2))
    else:
        for r in results:
            status = "ok  " if r.passed else "FAIL"
            print(f"{status} {r.name:40s} relative L2 {r.relative_l2:.4f} "
                  f"(tolerance {r.tolerance:g}, {r.seconds:.1f} s)")  # fmt: skip
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
