"""Inverse time step of the elastic scheme (Q = inf), on the undamped interior only.

Each stage of the velocity-stress leapfrog inverts explicitly (see
:mod:`anelastic.physics.viscoacoustic.inverse_step`), in reverse order:
``sigma^n = sigma^{n+1} - dt C : eps(v^{n+1/2})`` then ``v^{n-1/2} = v^{n+1/2} - buoy_dt div
sigma^n``, with the forward's coefficient arrays, where the forward update is the plain scheme
(``interiors``: staggering tuple -> SubDomain). Memory variables are not inverted (attenuating
models are refused).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from devito import Eq

from anelastic.physics.base import Stage
from anelastic.physics.viscoelastic.state import stress_name

if TYPE_CHECKING:
    from anelastic.physics.viscoelastic.rheology import Viscoelastic


def inverse_stages(
    physics: Viscoelastic, fields: dict, coeffs: dict, interiors: dict
) -> list[Stage]:
    """The inverse step (see the module docstring): stress stage, then velocity stage."""
    if physics.n_memory:
        raise ValueError("the viscoelastic inverse step is only written for Q = inf")
    axes, stress = physics.axes, []
    normal = {a: getattr(fields[f"v{a}"], f"d{a}") for a in axes}
    theta = sum(normal.values())
    dev = {a: normal[a] - theta / physics.ndim for a in axes[:-1]}
    dev[axes[-1]] = -sum(dev.values())  # as the forward writes it
    for a in axes:
        s = fields[f"s{a}{a}"]
        rhs = s - coeffs["kappa_dt"] * theta - coeffs["mu2_dt"] * dev[a]
        stress.append(Eq(s.backward, rhs, subdomain=interiors[()]))
    for a, b in physics.pairs:
        s = fields[f"s{a}{b}"]
        strain = getattr(fields[f"v{a}"], f"d{b}") + getattr(fields[f"v{b}"], f"d{a}")
        rhs = s - coeffs[f"mu_dt_{a}{b}"] * strain
        stress.append(Eq(s.backward, rhs, subdomain=interiors[(a, b)]))
    velocity = []
    for a in axes:
        divergence = sum(getattr(fields[stress_name(axes, a, b)].backward, f"d{b}") for b in axes)
        v = fields[f"v{a}"]
        rhs = v - coeffs["buoy_dt"] * divergence
        velocity.append(Eq(v.backward, rhs, subdomain=interiors[(a,)]))
    return [Stage("stress", stress), Stage("velocity", velocity)]
