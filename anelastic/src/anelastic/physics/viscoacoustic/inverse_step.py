"""Inverse time step of the viscoacoustic scheme, on the undamped interior only.

A forward step is two stages, each ``f^{new} = f^{old} + G(other fields)`` where ``G`` never
reads ``f`` itself, so each stage inverts explicitly: ``f^{old} = f^{new} - G``. The inverse step
runs the stages in reverse order with Devito's ``f.backward`` (the operator iterates time
downwards: at time index ``t = n + 1`` it computes state n into slot ``t - 1``). With state n+1
known:

    p^n         = p^{n+1} + mod_dt div v^{n+1/2}          (- source injected at step n)
    v^{n-1/2}   = v^{n+1/2} + buoy_dt grad p^n            (- source injected at step n)

These equations hold where the forward update is the plain scheme (no C-PML term, sponge factor
1): the caller gives one interior SubDomain per staggering (``interiors``, keyed by the tuple of
staggered axis names) and supplies every other value the stencils read (the ring, see
:mod:`anelastic.kernel.reconstruction`).

Attenuating step (memory variables by Crank-Nicolson, see :mod:`.rheology`), inverted for the
instability demonstration only:

    zeta_l^n = (zeta_l^{n+1} - beta_l div v^{n+1/2}) / alpha_l,   then p^n from zeta^n.

Dividing by ``alpha_l < 1`` every step amplifies any error by ``1 / alpha_l`` per step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from devito import Eq

from anelastic.physics.base import VELOCITY_NAMES, Stage

if TYPE_CHECKING:
    from anelastic.physics.viscoacoustic.rheology import Viscoacoustic


def inverse_stages(
    physics: Viscoacoustic, fields: dict, coeffs: dict, interiors: dict
) -> list[Stage]:
    """The inverse step (see the module docstring): pressure stage, then velocity stage."""
    axes = physics.axes
    divergence = sum(getattr(fields[VELOCITY_NAMES[a]], f"d{a}") for a in axes)
    p, pressure = fields["p"], []
    memory = []
    for l in range(physics.n_memory):
        zeta = fields[f"zeta{l}"]
        old = (zeta - coeffs[f"zbeta{l}"] * divergence) / coeffs[f"zalpha{l}"]
        pressure.append(Eq(zeta.backward, old, subdomain=interiors[()]))
        memory.append(zeta.backward)
    rhs = p + coeffs["mod_dt"] * divergence - _memory_term(physics, coeffs, memory)
    pressure.append(Eq(p.backward, rhs, subdomain=interiors[()]))
    velocity = []
    for a in axes:
        v = fields[VELOCITY_NAMES[a]]
        grad = getattr(p.backward, f"d{a}")
        velocity.append(Eq(v.backward, v + coeffs["buoy_dt"] * grad, subdomain=interiors[(a,)]))
    return [Stage("pressure", pressure), Stage("velocity", velocity)]


def _memory_term(physics: Viscoacoustic, coeffs, memory: list):
    """The forward's memory contribution to ``p^{n+1} - p^n`` (its three coefficient layouts)."""
    if not memory:
        return 0
    layout = physics.memory_layout
    if layout == "general":
        return sum(coeffs[f"mem_dt{l}"] * z for l, z in enumerate(memory))
    mixed = sum(coeffs[f"mcoef{l}"] * z for l, z in enumerate(memory))
    if layout == "uniform":
        return coeffs["mod_dt"] * mixed
    return coeffs["mem_dt"] * mixed  # separable
