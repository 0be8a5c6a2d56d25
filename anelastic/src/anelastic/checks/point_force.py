"""Analytic checks of the viscoelastic P-SV physics (2-D point force, homogeneous medium).

Cases register with :func:`anelastic.checks.analytic.verification_case` on import (this module
is listed in ``anelastic.checks.analytic.CASE_MODULES``). Each returns the largest relative L2
misfit ``||v - v_ref|| / ||v_ref||`` over the receivers' vx and vz traces, where ``v_ref`` is
:func:`anelastic.checks.solutions.elastic_velocity_trace_2d` evaluated with the exact complex
Lame moduli of the discretised SLS rheology at the source (correspondence principle; Q = inf
gives the real elastic moduli).
"""

from __future__ import annotations

import numpy as np

from anelastic.acquisition import Component, Receivers, Source, SourceKind, ricker
from anelastic.checks import solutions
from anelastic.checks.analytic import relative_l2, verification_case
from anelastic.checks.problem import Problem
from anelastic.forward.simulation import TimeAxis
from anelastic.model import Grid, homogeneous
from anelastic.physics import PhysicsConfig, PhysicsKind

ELASTIC_2D = {"vp": 2000.0, "vs": 1150.0, "rho": 2000.0, "h": 10.0, "f0": 8.0, "n": 161}
FORCE = (0.6, 0.8)
OFFSETS = ((240.0, 180.0), (-150.0, 330.0))


def point_force_problem(qp: float, qs: float, nt: int = 650, space_order: int = 8) -> Problem:
    """The 2-D point-force case."""
    p = ELASTIC_2D
    grid = Grid((p["n"], p["n"]), (p["h"], p["h"]))
    model = homogeneous(grid, p["vp"], p["rho"], p["vs"], qp, qs, f_ref=p["f0"])
    center = (p["h"] * (p["n"] // 2), p["h"] * (p["n"] // 2) - 100.0)
    source = Source(center, ricker(p["f0"]), SourceKind.FORCE, direction=FORCE)
    positions = np.array([(center[0] + dx, center[1] + dz) for dx, dz in OFFSETS])
    receivers = Receivers(positions, (Component.VX, Component.VZ))
    config = PhysicsConfig(PhysicsKind.VISCOELASTIC, space_order=space_order, pml_width=20)
    return Problem(model, source, receivers, TimeAxis(1e-3, nt), config)


def elastic_point_force_error(
    qp: float, qs: float, nt: int = 650, threads: int | None = None
) -> float:
    """Largest relative L2 misfit of vx, vz at ``OFFSETS`` against the analytic solution."""
    problem = point_force_problem(qp, qs, nt)
    source, time = problem.source, problem.time
    sim = problem.simulation(threads=threads, instance="verify")
    seis = sim.run()
    lam, mu = sim.physics.lame_moduli_at(source.position)
    wavelet = source.wavelet(time.times)
    rho = ELASTIC_2D["rho"]
    errors = []
    for k, offset in enumerate(OFFSETS):
        vx, vz = solutions.elastic_velocity_trace_2d(
            time.times, wavelet, offset, rho, lam, mu, source.direction
        )
        errors.append(relative_l2(seis.data[Component.VX][:, k], vx))
        errors.append(relative_l2(seis.data[Component.VZ][:, k], vz))
    return max(errors)


@verification_case("elastic_2d_point_force", 0.03)
def elastic_2d() -> float:
    return elastic_point_force_error(np.inf, np.inf)


@verification_case("viscoelastic_2d_point_force", 0.03)
def viscoelastic_2d() -> float:
    return elastic_point_force_error(40.0, 25.0)
