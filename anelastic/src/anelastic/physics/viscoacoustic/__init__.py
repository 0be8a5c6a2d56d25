"""The viscoacoustic rheology: forward scheme (:mod:`.rheology`), its exact adjoint
(:mod:`.adjoint`) and its inverse step (:mod:`.inverse_step`)."""

from anelastic.physics.viscoacoustic.rheology import Viscoacoustic

__all__ = ["Viscoacoustic"]
