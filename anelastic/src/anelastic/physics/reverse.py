"""Inverse time step of the staggered leapfrog schemes, on the undamped interior only.

A forward step of either rheology is two stages, each ``f^{new} = f^{old} + G(other fields)``
where ``G`` never reads ``f`` itself (velocity-pressure or velocity-stress leapfrog), so each
stage inverts explicitly: ``f^{old} = f^{new} - G``. The inverse step runs the stages in reverse
order with Devito's ``f.backward`` (the operator iterates time downwards: at time index
``t = n + 1`` it computes state n into slot ``t - 1``). Viscoacoustic, with state n+1 known:

    p^n         = p^{n+1} + mod_dt div v^{n+1/2}          (- source injected at step n)
    v^{n-1/2}   = v^{n+1/2} + buoy_dt grad p^n            (- source injected at step n)

Viscoelastic (Q = inf): ``sigma^n = sigma^{n+1} - dt C : eps(v^{n+1/2})`` then
``v^{n-1/2} = v^{n+1/2} - buoy_dt div sigma^n``, with the forward's coefficient arrays.

These equations hold where the forward update is the plain scheme (no C-PML term, sponge factor
1): the caller gives one interior SubDomain per staggering (``interiors``, keyed by the tuple of
staggered axis names) and supplies every other value the stencils read (the ring).

Attenuating viscoacoustic step (memory variables by Crank-Nicolson, see
:mod:`anelastic.physics.viscoacoustic`), inverted for the instability demonstration only:

    zeta_l^n = (zeta_l^{n+1} - beta_l div v^{n+1/2}) / alpha_l,   then p^n from zeta^n.

Dividing by ``alpha_l < 1`` every step amplifies any error by ``1 / alpha_l`` per step.
"""

from __future__ import annotations

from devito import Eq

from anelastic.physics.base import PhysicsKind, Stage

VELOCITY_NAMES = {"x": "vx", "y": "vy", "z": "vz"}


def reverse_stages(physics, fields: dict, coeffs: dict, interiors: dict) -> list[Stage]:
    """Inverse-step stages in execution order (the forward's stages, reversed).

    ``fields``/``coeffs``: Devito objects named as in ``physics.field_specs()`` /
    ``coefficient_specs()``; ``interiors``: staggering tuple -> SubDomain.
    """
    if physics.kind is PhysicsKind.VISCOACOUSTIC:
        return _viscoacoustic(physics, fields, coeffs, interiors)
    if physics.kind is PhysicsKind.VISCOELASTIC:
        if physics.n_memory:
            raise ValueError("the viscoelastic inverse step is only written for Q = inf")
        return _elastic(physics, fields, coeffs, interiors)
    raise ValueError(f"no inverse step for {physics.kind}")


def _viscoacoustic(physics, fields, coeffs, interiors) -> list[Stage]:
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


def _memory_term(physics, coeffs, memory: list):
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


def _elastic(physics, fields, coeffs, interiors) -> list[Stage]:
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
        divergence = sum(getattr(fields[_stress(axes, a, b)].backward, f"d{b}") for b in axes)
        v = fields[f"v{a}"]
        rhs = v - coeffs["buoy_dt"] * divergence
        velocity.append(Eq(v.backward, rhs, subdomain=interiors[(a,)]))
    return [Stage("stress", stress), Stage("velocity", velocity)]


def _stress(axes: tuple[str, ...], a: str, b: str) -> str:
    """Name of sigma_ab (pairs stored once, axes in grid order)."""
    i, j = sorted((axes.index(a), axes.index(b)))
    return f"s{axes[i]}{axes[j]}"
