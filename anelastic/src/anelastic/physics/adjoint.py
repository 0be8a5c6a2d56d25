"""The adjoint interface: what a rheology's exact discrete adjoint declares for the kernel pass.

``Physics.adjoint()`` returns an :class:`AdjointScheme` built from the rheology (its public
attributes and methods only). The kernel operators (:mod:`anelastic.kernel.operators`) build,
from these declarations, a replay operator (the forward step plus copies of the forward
quantities the adjoint needs into a buffer of N frames) and an adjoint operator (the transpose
of the forward step, run backwards, accumulating the coefficient gradients in its loop nest).

1. ``buffer_specs()``: the forward quantities of one step the adjoint reads (a buffer frame);
   ``replay_coefficient_specs()``: model arrays only the buffer equations need.
2. ``adjoint_specs()``: the adjoint state (time functions); ``temporary_specs()``: per-step
   intermediates read at neighbouring points; ``gradient_specs()``: the accumulators.
3. ``adjoint_sources(component)``: (adjoint field, weight, placement, offset) tuples
   receiving the adjoint source of receivers of ``component``, injected at the receivers
   moved by ``offset`` ([ndim] metres, None: none), always into the value the adjoint step
   produces (``field.backward``; placement :data:`AFTER_STEP` for a quantity recorded at
   step n, :data:`STAGGERED_AFTER_STEP` for a velocity recorded as the mean of its two half
   steps). A component the scheme cannot take raises ValueError.
4. ``buffer_equations(...)``, ``adjoint_equations(...)`` (and ``seam_layout(...)``, the regions
   of the transposed C-PML, or None).
5. ``parameter_gradients(grads)``: dchi/d(model parameter) per cell from the accumulators.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
from devito import Eq

from anelastic.physics.base import CoefficientSpec, FieldSpec, Physics

# Relative step of the central differences of the coefficient functions (float64).
COEFFICIENT_STEP = 1e-5

AFTER_STEP = "after"  # into ``field.backward`` after the adjoint step's updates
# The same, for a velocity: its record at step n reads v^{n-1/2} and v^{n+1/2}, so the adjoint
# of v^{n-1/2} (produced by step n) takes half of samples n - 1 and n, and the last sample's
# half goes into the adjoint state before the first step (the kernel pass does both).
STAGGERED_AFTER_STEP = "staggered-after"


def on_subdomain(equations: list[Eq], subdomain) -> list[Eq]:
    """The same updates restricted to ``subdomain`` (None: the whole grid)."""
    return [Eq(e.lhs, e.rhs, subdomain=subdomain) for e in equations]


def on_regions(equations: list[Eq], regions) -> list[Eq]:
    """The updates once per region of the forward's layout, region by region (None: once on
    the whole grid): placed beside the forward's equations of the same region, Devito fuses
    them into that region's loop nest."""
    wheres = [r.subdomain for r in regions] if regions is not None else [None]
    return [e for where in wheres for e in on_subdomain(equations, where)]


class AdjointScheme(ABC):
    """Adjoint stencils of one rheology; see the module docstring for the contract."""

    def __init__(self, physics: Physics) -> None:
        self.physics = physics

    @abstractmethod
    def buffer_specs(self) -> tuple[FieldSpec, ...]: ...

    def replay_coefficient_specs(self) -> tuple[CoefficientSpec, ...]:
        """Model-dependent coefficients only the buffer needs (none by default)."""
        return ()

    @abstractmethod
    def adjoint_specs(self) -> tuple[FieldSpec, ...]: ...

    @abstractmethod
    def temporary_specs(self) -> tuple[FieldSpec, ...]: ...

    @abstractmethod
    def gradient_specs(self) -> tuple[FieldSpec, ...]: ...

    @abstractmethod
    def adjoint_sources(self, component) -> list[tuple]: ...

    @abstractmethod
    def buffer_equations(
        self, fields: dict, buffers: dict, grid, coeffs: dict, regions=None
    ) -> list: ...

    def seam_layout(self, grid, pads):
        """Regions of the transposed velocity update (None: the forward's own regions)."""
        return None

    @abstractmethod
    def adjoint_equations(
        self, adj, tmp, buffers, grads, coeffs, layout, halo_profiles, seams=None
    ) -> list: ...

    @abstractmethod
    def parameter_gradients(self, grads: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...
