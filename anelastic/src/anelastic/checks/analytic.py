"""Verification against analytic solutions: ``anelastic verify analytic``.

Each case is one small function decorated with ``@verification_case(name, tolerance)``; it runs a
small simulation and returns the relative L2 misfit ``||u - u_ref|| / ||u_ref||`` of receiver
traces against the analytic frequency-domain solution computed with the exact complex modulus
of the discretised SLS rheology (correspondence principle). Names contain physics and dimension.
Cases in other modules register themselves on import (``CASE_MODULES``).
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from anelastic.acquisition import Component, Receivers, Source, ricker
from anelastic.attenuation import complex_modulus
from anelastic.checks import solutions
from anelastic.forward.simulation import Simulation, TimeAxis
from anelastic.model import Grid, homogeneous
from anelastic.physics import PhysicsConfig, PhysicsKind

CASE_MODULES = ("anelastic.checks.point_force",)


@dataclass(frozen=True)
class CaseResult:
    name: str
    relative_l2: float
    tolerance: float
    seconds: float

    @property
    def passed(self) -> bool:
        return bool(self.relative_l2 <= self.tolerance)

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "relative_l2": self.relative_l2,
            "tolerance": self.tolerance,
            "passed": self.passed,
            "seconds": round(self.seconds, 3),
        }


_CASES: dict[str, tuple[float, Callable[[], float]]] = {}


def verification_case(name: str, tolerance: float):
    """Register ``fn() -> relative L2 error`` as the analytic case ``name``."""

    def register(fn: Callable[[], float]) -> Callable[[], float]:
        _CASES[name] = (tolerance, fn)
        return fn

    return register


def available_cases() -> list[str]:
    for module in CASE_MODULES:
        try:
            importlib.import_module(module)
        except ImportError:
            pass
    return list(_CASES)


def run_case(name: str) -> CaseResult:
    available_cases()
    if name not in _CASES:
        raise ValueError(f"unknown verification case {name!r}; known: {sorted(_CASES)}")
    tolerance, fn = _CASES[name]
    start = time.perf_counter()
    error = float(fn())
    return CaseResult(name, error, tolerance, time.perf_counter() - start)


def run_all(names: list[str] | None = None) -> list[CaseResult]:
    return [run_case(n) for n in (names or available_cases())]


def relative_l2(trace: np.ndarray, reference: np.ndarray) -> float:
    """``||trace - reference||_2 / ||reference||_2`` over the whole record."""
    return float(np.linalg.norm(trace - reference) / np.linalg.norm(reference))


def modulus_at(sim: Simulation, position: tuple[float, ...]):
    """The exact complex modulus ``w -> M(w)`` of the viscoacoustic rheology at ``position``."""
    physics = sim.physics
    grid = physics.model.grid
    idx = tuple(
        int(round((c - o) / h)) for c, o, h in zip(position, grid.origin, grid.spacing, strict=True)
    )
    weights = physics.weights[(slice(None), *idx)]
    return complex_modulus(float(physics.m_unrelaxed[idx]), weights, physics.omega)


OFFSETS = {2: [300.0, 700.0], 3: [250.0]}
SIZES = {2: (201, 900, 10.0), 3: (61, 350, 15.0)}  # points per axis, nt, f0


@dataclass(frozen=True)
class HomogeneousTraces:
    """Pressure ``traces`` [nt, noffsets] at ``offsets`` (m) along +x, and the simulation."""

    traces: np.ndarray
    sim: Simulation
    offsets: list[float]


def viscoacoustic_homogeneous_traces(dim: int, q: float = 50.0) -> HomogeneousTraces:
    """Pressure traces of a centred pressure source in a homogeneous medium.

    vp 2000 m/s, rho 2000 kg/m^3, h = 10 m, space order 8, dt 1 ms, receivers along +x at
    ``OFFSETS[dim]`` m.
    """
    n, nt, f0 = SIZES[dim]
    offsets = OFFSETS[dim]
    h = 10.0
    model = homogeneous(Grid((n,) * dim, (h,) * dim), 2000.0, 2000.0, qp=q, f_ref=f0)
    center = tuple(h * (n // 2) for _ in range(dim))
    positions = np.array([(center[0] + d, *center[1:]) for d in offsets])
    sim = Simulation(
        model,
        [Source(center, ricker(f0))],
        Receivers(positions, (Component.P,)),
        TimeAxis(1e-3, nt),
        PhysicsConfig(PhysicsKind.VISCOACOUSTIC, space_order=8, pml_width=20),
        instance="verify",
    )
    return HomogeneousTraces(sim.run().data[Component.P], sim, offsets)


def viscoacoustic_homogeneous_error(dim: int) -> float:
    """Largest relative L2 error over the receivers against the analytic pressure."""
    run = viscoacoustic_homogeneous_traces(dim)
    sim, source = run.sim, run.sim.sources[0]
    modulus = modulus_at(sim, source.position)
    wavelet = source.wavelet(sim.time.times)
    errors = []
    for k, d in enumerate(run.offsets):
        ref = solutions.acoustic_pressure_trace(sim.time.times, wavelet, d, 2000.0, modulus, dim)
        errors.append(relative_l2(run.traces[:, k], ref))
    return max(errors)


@verification_case("viscoacoustic_2d_homogeneous", 0.02)
def viscoacoustic_2d() -> float:
    return viscoacoustic_homogeneous_error(2)


@verification_case("viscoacoustic_3d_homogeneous", 0.03)
def viscoacoustic_3d() -> float:
    return viscoacoustic_homogeneous_error(3)
