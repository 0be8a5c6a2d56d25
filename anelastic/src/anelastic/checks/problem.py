"""The small forward problems the checks run: one source, its receivers, a time axis, physics."""

from __future__ import annotations

from dataclasses import dataclass

from anelastic.acquisition import Receivers, Source
from anelastic.forward.simulation import Simulation, TimeAxis
from anelastic.model import Model
from anelastic.physics import PhysicsConfig


@dataclass(frozen=True)
class Problem:
    """One source, its receivers, time axis and physics on ``model``."""

    model: Model
    source: Source
    receivers: Receivers
    time: TimeAxis
    config: PhysicsConfig

    def simulation(self, model: Model | None = None, **options) -> Simulation:
        """A simulation of this problem (on ``model`` if given; ``options``: threads,
        instance, sls_fit)."""
        model = self.model if model is None else model
        return Simulation(model, [self.source], self.receivers, self.time, self.config, **options)
