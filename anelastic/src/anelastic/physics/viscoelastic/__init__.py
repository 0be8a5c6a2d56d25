"""The viscoelastic rheology (:mod:`.rheology`), split by role: state and coefficients
(:mod:`.state`, moduli in :mod:`.moduli`), interior stages (:mod:`.stages`), free surface
(:mod:`.surface`), injection and recording (:mod:`.sources_receivers`); its exact adjoint
(:mod:`.adjoint`) and its inverse step (:mod:`.inverse_step`)."""

from anelastic.physics.viscoelastic.rheology import Viscoelastic

__all__ = ["Viscoelastic"]
