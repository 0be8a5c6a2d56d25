"""Rheologies: Devito stencil factories behind one interface (see :mod:`.base`).

The choice of rheology is coded once, here: ``RHEOLOGIES`` maps each ``PhysicsKind`` to the
``Physics`` subclass that implements it (``physics_class``). Everything else asks the rheology
object itself: its adjoint for the kernels (``physics.adjoint()``, :mod:`.adjoint`) and its
inverse step for reverse storage (``physics.inverse_stages(...)``).
"""

from __future__ import annotations

import importlib

from anelastic.physics.base import (
    BoundaryKind,
    CoefficientSpec,
    FieldRole,
    FieldSpec,
    Injection,
    Physics,
    PhysicsConfig,
    PhysicsKind,
    Stage,
)

# Module and class of each rheology, imported on first use (each pulls in Devito).
RHEOLOGIES: dict[PhysicsKind, tuple[str, str]] = {
    PhysicsKind.VISCOACOUSTIC: ("anelastic.physics.viscoacoustic", "Viscoacoustic"),
    PhysicsKind.VISCOELASTIC: ("anelastic.physics.viscoelastic", "Viscoelastic"),
}


def physics_class(kind: PhysicsKind) -> type[Physics]:
    """The rheology implementing ``kind``."""
    if kind not in RHEOLOGIES:
        raise ValueError(f"unknown physics {kind}")
    module, name = RHEOLOGIES[kind]
    try:
        return getattr(importlib.import_module(module), name)
    except ImportError as err:
        raise ValueError(f"the {kind.value} physics is not available in this build") from err


__all__ = [
    "RHEOLOGIES",
    "BoundaryKind",
    "CoefficientSpec",
    "FieldRole",
    "FieldSpec",
    "Injection",
    "Physics",
    "PhysicsConfig",
    "PhysicsKind",
    "Stage",
    "physics_class",
]
