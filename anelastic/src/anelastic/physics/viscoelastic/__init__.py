from anelastic.physics.viscoelastic.rheology import Viscoelastic

__all__ = ["Viscoelastic"]
