from anelastic.physics.viscoacoustic.rheology import VELOCITY_NAMES, Viscoacoustic

__all__ = ["VELOCITY_NAMES", "Viscoacoustic"]
