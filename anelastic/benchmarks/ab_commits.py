"""A/B of two checkouts of the package on P1: forward and checkpoint kernel, alternated.

Each round runs, for each checkout in turn, one forward and one checkpointed kernel, each in
its own process (``kernels.py --worker`` of that checkout, its ``src`` first on PYTHONPATH), so
both see the same machine; prints per-checkout medians of the wall times and of the kernel's
phases (and their ratio to the forward).

    git worktree add /tmp/old <commit>
    ../shared/tools/quiet-run python anelastic/benchmarks/ab_commits.py /tmp/old . --rounds 7
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path


def run_case(tree: Path, case: str) -> dict:
    """One ``kernels.py --worker CASE --reps 1`` of the checkout ``tree``: its RESULT dict."""
    env = dict(os.environ, PYTHONPATH=str(tree / "anelastic" / "src"))
    script = tree / "anelastic" / "benchmarks" / "kernels.py"
    done = subprocess.run(
        [sys.executable, str(script), "--worker", case, "--reps", "1"],
        env=env, capture_output=True, text=True, cwd=tree,
    )  # fmt: skip
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        raise RuntimeError(f"{case} in {tree} failed:\n{done.stderr[-2000:]}")
    return json.loads(lines[0][len("RESULT ") :])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("old", type=Path, help="checkout A (e.g. a git worktree)")
    parser.add_argument("new", type=Path, help="checkout B")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    trees = {"old": args.old.resolve(), "new": args.new.resolve()}
    runs = {name: {"forward": [], "kernel": [], "phases": []} for name in trees}
    print(f"load average before: {os.getloadavg()[0]:.2f}", flush=True)
    for round_index in range(args.rounds):
        for name, tree in trees.items():
            forward = run_case(tree, "ours_forward")["times"]
            kernel = run_case(tree, "ours_checkpoint")
            runs[name]["forward"] += forward
            runs[name]["kernel"] += kernel["times"]
            runs[name]["phases"] += kernel.get("phase_seconds_per_run", [])
            print(f"round {round_index} {name}: forward {forward[-1]:.3f} s, kernel "
                  f"{kernel['times'][-1]:.3f} s", flush=True)  # fmt: skip
    for name, r in runs.items():
        forward, kernel = statistics.median(r["forward"]), statistics.median(r["kernel"])
        phases = {k: statistics.median([p[k] for p in r["phases"]]) for k in r["phases"][0]}
        ratios = {k: round(v / forward, 2) for k, v in phases.items()}
        print(f"{name}: forward {forward:.3f} s, kernel {kernel:.3f} s, kernel/forward "
              f"{kernel / forward:.2f}, phases {phases}, over forward {ratios}")  # fmt: skip
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
