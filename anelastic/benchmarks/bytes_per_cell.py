"""Bytes per cell-update of each kernel phase, counted in the C that Devito generates for P1.

For every OpenMP loop nest of a time step: the grid arrays it reads and the ones it writes
(each time slot, ``p[t0]`` and ``p[t1]``, is its own array; 1-D profiles are not counted;
an array read at several stencil
offsets counts once: the neighbours come from cache; an array written and then read in the same
nest counts as a write only). A nest over the interior band (or the whole grid) touches every
interior cell, so the bytes per interior cell-update of a step are the sum over those nests of
``itemsize x (arrays read + arrays written)``. The strip nests (C-PML) are listed apart. With a
sustainable bandwidth B (bytes/s) the roofline of a phase is ``B / bytes`` cell-updates per
second.

    python anelastic/benchmarks/bytes_per_cell.py [--space-order 4] [--bandwidth 57e9]
        [--seconds forward=0.62,replay=1.1,adjoint=2.0] [--json out.json]

``--seconds`` (phase seconds for P1's nt steps, e.g. from ``kernels.py``) adds measured /
roofline. Only code generation runs (no compilation, no time step).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

# A grid array access: name, optional time slot, then an x index followed by more indices
# (1-D C-PML profiles such as ``cpmla_x[x]`` stay in L1 and are not counted).
ACCESS = re.compile(r"\b([A-Za-z_]\w*)((?:\[(?:t0|t1|time)\])?)\[x\b[^\]]*\]\[")
STATEMENT = re.compile(r"^\s*([A-Za-z_]\w*(?:\[[^=]*\])+)\s*(\+=|=)\s*(.*);\s*$")


def nests(code: str) -> list[tuple[str, str]]:
    """(x-loop header, body) of every ``#pragma omp parallel`` region of the time loop."""
    out = []
    for block in code.split("#pragma omp parallel")[1:]:
        header = re.search(r"for \(int x = [^)]*\)", block)
        if header is None:  # sparse operations (sources, receivers)
            continue
        out.append((header.group(0), block))
    return out


def arrays_of(body: str) -> tuple[set[str], set[str]]:
    """(arrays read, arrays written) by the statements of one nest, slots distinct."""
    reads, writes = set(), set()
    for line in body.splitlines():
        match = STATEMENT.match(line)
        if match is None:
            continue
        lhs, op, rhs = match.groups()
        for name, slot in ACCESS.findall(rhs):
            key = name + slot
            if key not in writes:  # written earlier in this nest: still in cache
                reads.add(key)
        for name, slot in ACCESS.findall(lhs):
            if op == "+=":
                reads.add(name + slot)
            writes.add(name + slot)
    return reads, writes


def covers_interior(header: str) -> bool:
    """Whether the nest runs over the interior band (or the whole grid), not a strip."""
    strip = "x <= x_m + x_ltkn" in header or re.search(r"x = x_M - x_rtkn\d+ \+ 1", header)
    return not strip


def phase_bytes(code: str, itemsize: int) -> dict:
    """Bytes per interior cell-update of one operator's time step, with the per-nest detail."""
    total, detail = 0, []
    for header, body in nests(code):
        reads, writes = arrays_of(body)
        interior = covers_interior(header)
        nbytes = itemsize * (len(reads) + len(writes))
        if interior:
            total += nbytes
        detail.append(
            {
                "interior": bool(interior),
                "bytes": nbytes,
                "reads": sorted(reads),
                "writes": sorted(writes),
            }
        )
    return {"bytes_per_cell": total, "nests": detail}


def p1_operators(space_order: int) -> dict[str, str]:
    """Generated C of P1's forward, replay and adjoint operators."""
    from kernels import _our_event

    from anelastic.forward.simulation import Simulation
    from anelastic.kernel.inputs import kernel_fit
    from anelastic.kernel.operators import KernelOperators

    event = _our_event(space_order)
    fit = kernel_fit(event.model, event.config, event.f0)
    args = (event.model, event.sources, event.receivers, event.time, event.config)
    sim = Simulation(*args, sls_fit=fit)
    ops = KernelOperators(sim, 46)
    return {
        "forward": str(sim.propagator.operator),
        "replay": str(ops.replay_op),
        "adjoint": str(ops.adjoint_op),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--space-order", type=int, default=4)
    parser.add_argument("--bandwidth", type=float, default=57e9, help="bytes/s (cache: 57e9)")
    parser.add_argument("--seconds", default="", help="phase=seconds,... for nt steps of P1")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    import forward as p1

    seconds = dict(
        (k, float(v)) for k, v in (item.split("=") for item in args.seconds.split(",") if item)
    )
    cells = p1.N * p1.N * p1.NT
    report = {}
    for phase, code in p1_operators(args.space_order).items():
        counted = phase_bytes(code, 4)
        roofline = args.bandwidth / counted["bytes_per_cell"]
        counted["roofline_cell_updates_per_s"] = roofline
        if phase in seconds:
            counted["measured_over_roofline"] = cells / seconds[phase] / roofline
        report[phase] = counted
        extra = (
            f", measured/roofline {counted['measured_over_roofline']:.2f}"
            if phase in seconds
            else ""
        )
        print(
            f"{phase:8s} {counted['bytes_per_cell']:4d} B/cell over {len(counted['nests'])} nests, "
            f"roofline {roofline / 1e6:.0f} Mcell-updates/s{extra}"
        )
    forward = report["forward"]["bytes_per_cell"]
    for phase in ("replay", "adjoint"):
        print(f"{phase} bytes / forward bytes: {report[phase]['bytes_per_cell'] / forward:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
