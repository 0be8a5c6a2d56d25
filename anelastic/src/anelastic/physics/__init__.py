"""Rheologies: Devito stencil factories behind one interface (see :mod:`.base`).

``physics_class(kind)`` returns the ``Physics`` subclass of a ``PhysicsKind``.
"""

from __future__ import annotations

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


def physics_class(kind: PhysicsKind) -> type[Physics]:
    """The rheology implementing ``kind`` (imported lazily: each pulls in Devito)."""
    if kind is PhysicsKind.VISCOACOUSTIC:
        from anelastic.physics.viscoacoustic import Viscoacoustic

        return Viscoacoustic
    if kind is PhysicsKind.VISCOELASTIC:
        try:
            from anelastic.physics.viscoelastic import Viscoelastic
        except ImportError as err:
            raise ValueError("the viscoelastic physics is not available in this build") from err
        return Viscoelastic
    raise ValueError(f"unknown physics {kind}")


__all__ = [
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
