"""How sources and receivers couple to the viscoelastic fields.

FORCE enters the velocities; MOMENT ``M`` as ``d sigma_ij/dt -= s(t) M_ij delta`` (i <= j);
PRESSURE = explosion, ``M = I``. Receivers: pressure ``-tr(sigma)/d`` at nodes; a velocity
component is interpolated from its staggered points to the nodes at the stencil order (8-point
centred; with a free surface, vz one-sided from the 4 half rows below, as nothing is stored
above), then bilinearly to the receiver by Devito.
"""

from __future__ import annotations

import numpy as np

from anelastic.acquisition import Component, Source, SourceKind
from anelastic.physics.base import Injection
from anelastic.physics.stencils import ONE_SIDED_NODE_WEIGHTS, midpoint_weights, shifted


class ElasticSourcesReceivers:
    """Injections and receiver expressions (mixed into :class:`~.rheology.Viscoelastic`)."""

    def injections(self, source: Source, cell_volume: float) -> list[Injection]:
        if source.kind is SourceKind.FORCE:
            rho = self._value_at(self.model.rho, source.position)
            return [
                Injection(f"v{a}", "velocity", f * self.dt / (rho * cell_volume), 0.0)
                for a, f in zip(self.axes, source.direction, strict=True)
                if f != 0.0
            ]
        moment = np.eye(self.ndim) if source.kind is SourceKind.PRESSURE else source.moment
        out = []
        for i, a in enumerate(self.axes):
            for j in range(i, self.ndim):
                if moment[i, j] != 0.0:
                    scale = -float(moment[i, j]) * self.dt / cell_volume
                    out.append(Injection(self.stress_name(a, self.axes[j]), "stress", scale, 0.5))
        return out

    def _value_at(self, array: np.ndarray, position) -> float:
        return float(array[self.grid_index(position)])

    def record(self, fields: dict, component: Component):
        if component is Component.P:
            return -sum(fields[f"s{a}{a}"] for a in self.axes) / self.ndim
        name = component.value
        if name not in fields:
            raise ValueError(f"component {name} does not exist in {self.ndim}-D")
        field, axis = fields[name], self.axes.index(name[1])
        taps = self.velocity_taps(axis)
        return sum(0.5 * w * shifted(field, axis, o, slot) for o, w in taps for slot in (0, 1))

    def velocity_taps(self, axis: int) -> list[tuple[int, float]]:
        """(storage offset, weight) of the staggered points a velocity record along ``axis``
        reads at a node. Devito would average a staggered field to the nodes over 2 points
        (an amplitude loss of cos(k h / 2)); this interpolates at the stencil's order."""
        if self.config.free_surface and axis == self.ndim - 1:
            # Nothing is stored above the surface: one-sided from the 4 half rows below.
            return list(zip(range(4), ONE_SIDED_NODE_WEIGHTS, strict=True))
        weights = midpoint_weights(min(self.config.space_order, 8) // 2)
        return [(o, float(w)) for m, w in enumerate(weights, start=1) for o in (m - 1, -m)]
