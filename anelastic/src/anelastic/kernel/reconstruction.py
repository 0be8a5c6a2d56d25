"""Backward reconstruction of a lossless forward wavefield from its final state and a ring.

Without attenuation (Q = inf everywhere) the leapfrog step is invertible in the interior (see
``Physics.inverse_stages``): from state n+1 the inverse step gives state n exactly up to
roundoff. The absorbing layers are dissipative and are not inverted. Instead the forward run
saves, at every step, the values of every wavefield on a ring of ``r = space_order / 2`` cells
around the undamped interior of that field (the first cells of the absorbing layer: everything
the interior stencils read there), plus the final state. The backward run then updates the
interior only and overwrites the ring from the saved values each step.

Both happen inside the compiled inverse step: ring buffers [nt + 1, nring] per field are
written by indirect indexing before the interior update, so a backward step is one kernel call
and no per-step numpy work (about 0.7-1x the cost of a forward step, which has C-PML terms).
The forward side copies each step's ring out of the solver's fields in numpy (gathers of
``nring`` values).

Undamped interior of a field: the physical domain, minus the last point along each axis where
the field is staggered (+h/2) and the grid is padded after the domain (that point lies h/2 into
the layer, where the C-PML / sponge already acts). Ring: the interior's box grown by ``r`` cells
on every side (clipped to the grid), minus the interior. Ring storage: ``(nt + 1) * sum_f
|ring_f|`` values (:meth:`ForwardReconstruction.boundary_nbytes`).

With attenuation the inverse step divides each memory variable by ``alpha_l < 1`` per step, so
any error (roundoff included) grows like ``alpha_min^-n``: :class:`ForwardReconstruction` refuses
such models, and :func:`reversed_attenuating_growth` demonstrates the blow-up numerically.

Inverse-step operators are compiled once per problem shape and cached like the forward's
(:data:`INVERSE_STEP_OPERATORS`).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from devito import (
    Dimension,
    Eq,
    Function,
    Operator,
    SubDomain,
    TimeFunction,
)

from anelastic.forward.cache import Claimable, OperatorCache
from anelastic.forward.points import place, point_function
from anelastic.forward.propagator import (
    DirectCalls,
    devito_grid,
    fill_coefficients,
    injection_groups,
    make_coefficient,
    make_time_function,
)
from anelastic.forward.simulation import Simulation
from anelastic.physics.base import FieldRole, Physics, PhysicsKind


class ReverseUnstableError(ValueError):
    """Reverse reconstruction refused: the backward run would be unstable or is unsupported."""


def refusal_reason(sim: Simulation) -> str | None:
    """Why ``sim`` cannot be reconstructed backwards, every reason (None if it can). No compute."""
    reasons = [r for r in (_attenuation_reason(sim), _free_surface_reason(sim)) if r]
    return " Also: ".join(reasons) if reasons else None


def _attenuation_reason(sim: Simulation) -> str | None:
    model = sim.model
    finite = {"Qp": np.isfinite(model.qp)}
    if sim.config.kind is PhysicsKind.VISCOELASTIC:
        finite["Qs"] = np.isfinite(model.qs)
    lossy = {k: int(m.sum()) for k, m in finite.items() if m.any()}
    if not lossy:
        return None
    alpha_min = float(np.min(sim.physics.alpha))
    decades = sim.time.nt * np.log10(1.0 / alpha_min)
    where = ", ".join(f"{k} finite at {n} of {model.qp.size} points" for k, n in lossy.items())
    return (
        f"reverse reconstruction needs Q = inf everywhere, but {where}. Running an attenuating "
        "scheme backwards is unstable: each standard linear solid's memory variable decays by "
        "alpha_l = (1 - w_l dt/2) / (1 + w_l dt/2) < 1 per step, so the inverse step divides by "
        f"alpha_l (here alpha_min = {alpha_min:.4g}) and amplifies every error, roundoff "
        f"included, by 1/alpha_l per step: up to 10^{decades:.0f} over the {sim.time.nt} steps. "
        "Use --storage checkpoint (exact, the default) or --storage full."
    )


def _free_surface_reason(sim: Simulation) -> str | None:
    if not sim.config.free_surface:
        return None
    return (
        "reverse reconstruction does not support the free surface (free_surface=True): its top "
        "rows are updated by stress-imaging equations over the whole width, absorbing strips "
        "included, which the interior-only inverse step does not reproduce. Use --storage "
        "checkpoint, or free_surface=False."
    )


class FieldRegion:
    """Undamped interior box and ring of one field on the padded grid [*shape].

    ``staggered``: axis names where the field sits at +h/2; ``pads``: (before, after) padding per
    axis; ``radius``: ring width in cells. ``interior``: (start, stop) per axis; ``ring``: index
    arrays (one per axis, [nring]); ``support``: bool [*shape], interior + ring.
    """

    def __init__(
        self,
        staggered: tuple[str, ...],
        axes: tuple[str, ...],
        pads: tuple[tuple[int, int], ...],
        shape: tuple[int, ...],
        radius: int,
    ) -> None:
        interior, outer = [], []
        for a, (lo, hi), n in zip(axes, pads, shape, strict=True):
            stop = n - hi - (1 if a in staggered and hi > 0 else 0)
            interior.append((lo, stop))
            outer.append((max(lo - radius, 0), min(stop + radius, n)))
        mask = np.zeros(shape, dtype=bool)
        mask[tuple(slice(*b) for b in outer)] = True
        self.interior = tuple(interior)
        self.interior_slices = tuple(slice(*b) for b in interior)
        mask[self.interior_slices] = False
        self.ring = np.nonzero(mask)
        mask[self.interior_slices] = True
        self.support = mask  # interior + ring, [*shape]

    @property
    def size(self) -> int:
        return int(self.ring[0].size)


class _BoundaryReplay:
    """Ring recording during the forward run and interior-only inverse steps (no refusal).

    ``with_memory``: carry the memory variables too (the attenuating inverse step).
    """

    def __init__(self, sim: Simulation, with_memory: bool) -> None:
        self.sim = sim
        physics = sim.physics
        roles = {FieldRole.WAVEFIELD} | ({FieldRole.MEMORY} if with_memory else set())
        specs = [s for s in physics.field_specs() if s.role in roles]
        self.names = tuple(s.name for s in specs)
        self.wavefields = tuple(s.name for s in specs if s.role is FieldRole.WAVEFIELD)
        grid = physics.model.grid
        radius = physics.config.space_order // 2
        self.regions = {
            s.name: FieldRegion(s.staggered, grid.axis_names, sim.pads, grid.shape, radius)
            for s in specs
        }
        self._op = get_reverse_operator(sim, self.names, self.regions)
        self._views = {n: np.asarray(f.data) for n, f in self._op.fields.items()}  # [2, *shape]
        self._final: dict[str, np.ndarray] = {}
        self._first = self._last = self._current = -1
        self.forward_steps = 0  # steps executed by the recording forward run
        self.backward_steps = 0  # inverse steps executed (states rebuilt)

    def _record_forward(self, stop: int, progress: bool) -> None:
        """Advance ``sim`` to ``stop``, keeping the ring of every step and the final state."""
        sim = self.sim
        self._first = sim.step
        self._op.claim(self)  # the ring buffers live in the (shared) operator
        views = {n: np.asarray(sim.propagator.fields[n].data) for n in self.names}  # [2, *shape]
        self._keep_ring(views, sim.step)
        sim.advance(stop, progress, on_step=lambda n: self._keep_ring(views, n))
        self.forward_steps += stop - self._first
        self._final = {n: views[n][stop % 2][r.support] for n, r in self.regions.items()}
        self._last = stop
        self._load_final()

    def _keep_ring(self, views: dict, step: int) -> None:
        for name, ring in self._op.ring_views.items():
            ring[step] = views[name][step % 2][self.regions[name].ring]

    def _load_final(self) -> None:
        """Put the final state (interior + ring; zero outside) in the operator's fields."""
        self._check_owner()
        self._op.load(self.sim)
        for name, region in self.regions.items():
            self._views[name][self._last % 2][region.support] = self._final[name]
        self._current = self._last

    def _check_owner(self) -> None:
        if not self._op.is_owned_by(self):
            raise RuntimeError(
                "the inverse-step operator (and its ring buffers) was taken over by another "
                "reconstruction with the same shapes; finish one before starting the next"
            )

    def _step_back(self) -> None:
        """State ``current - 1`` from state ``current`` (ring loaded inside the operator)."""
        self._check_owner()
        self._op.step_back(self._current, self.sim.propagator.threads_for(self.sim).best())
        self._current -= 1
        self.backward_steps += 1


class ForwardReconstruction(_BoundaryReplay):
    """Reverse storage: the forward field rebuilt backwards from its final state and the ring.

    Costs 1 forward + 1 backward step per time step and ``boundary_nbytes()`` of RAM.
    """

    def __init__(self, sim: Simulation) -> None:
        """Refuses (``ReverseUnstableError``) attenuating models (finite Qp, or Qs for the
        viscoelastic physics) and the free surface, before compiling anything."""
        reason = refusal_reason(sim)
        if reason is not None:
            raise ReverseUnstableError(reason)
        super().__init__(sim, with_memory=False)

    def run_forward(self, progress: bool = False) -> None:
        """Run ``sim`` from its current step to nt, keeping the ring of every wavefield at every
        step (RAM: a buffer [nt + 1, nring] per field) and the final state (interior + ring).

        Steps one ``sim.advance`` call at a time (the ring of every step is needed)."""
        self._record_forward(self.sim.time.nt, progress)

    def boundary_nbytes(self) -> int:
        """Bytes of the ring buffers, [nt + 1, nring] per field (the final state not included)."""
        return int(sum(a.nbytes for a in self._op.ring_views.values()))

    def states_backward(
        self, stop: int, start: int, copy: bool = True
    ) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """Yield ``(n, fields)`` for n = stop, stop - 1, ..., start (one generator at a time).

        ``fields``: wavefield name -> [*padded_shape] array of state n (exact on the physical
        domain and the ring, zero further into the absorbing layers; memory variables and C-PML
        auxiliaries are not reconstructed). Continues from the last state reached (no
        recomputation when ``stop`` is at or below it); a ``stop`` above it restarts from the
        final state. ``copy=False`` yields read-only views, valid until the next state.
        Counts executed inverse steps in ``backward_steps``.
        """
        if self._last < 0:
            raise RuntimeError("call run_forward() before states_backward()")
        if not self._first <= start <= stop <= self._last:
            raise ValueError(
                f"states_backward needs {self._first} <= start <= stop <= {self._last} "
                f"(the recorded steps), got start={start}, stop={stop}"
            )
        return self._iterate(stop, start, copy)

    def _iterate(self, stop: int, start: int, copy: bool):
        if stop > self._current:
            self._load_final()
        while self._current > stop:
            self._step_back()
        for n in range(stop, start - 1, -1):
            while self._current > n:
                self._step_back()
            yield n, self._state_arrays(copy)

    def _state_arrays(self, copy: bool) -> dict[str, np.ndarray]:
        slot, out = self._current % 2, {}
        for name in self.wavefields:
            array = self._views[name][slot]
            if copy:
                array = array.copy()
            else:
                array = array.view()
                array.flags.writeable = False
            out[name] = array
        return out


def reversed_attenuating_growth(sim: Simulation, steps: int) -> np.ndarray:
    """max |p| over the physical domain after each of ``steps`` inverse attenuating steps [steps].

    Runs ``sim`` (viscoacoustic, attenuating, at its current step s) forward ``steps`` steps,
    recording the ring, then applies the exact inverse of the attenuating step (memory variables
    included) from state s + steps down to s: entry k is max |p| of state s + steps - 1 - k.
    Roundoff is amplified by 1 / alpha_l per step, so this grows without bound (NaN/inf once it
    overflows) although the forward field decays.
    """
    if sim.config.kind is not PhysicsKind.VISCOACOUSTIC:
        raise ValueError("the attenuating inverse step is written for the viscoacoustic physics")
    if not sim.physics.attenuating:
        raise ValueError("sim has Q = inf everywhere: its reversal is stable, nothing to show")
    if not 1 <= steps <= sim.time.nt - sim.step:
        raise ValueError(f"steps must be in [1, {sim.time.nt - sim.step}], got {steps}")
    replay = _BoundaryReplay(sim, with_memory=True)
    replay._record_forward(sim.step + steps, progress=False)
    interior = replay.regions["p"].interior_slices
    out = np.empty(steps)
    with np.errstate(over="ignore", invalid="ignore"):
        for k in range(steps):
            replay._step_back()
            p = replay._views["p"][replay._current % 2][interior]
            out[k] = np.max(np.abs(p))
    return out


def _progress_bar(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, disable=not enabled, unit="step", leave=False)


class ReverseOperator(Claimable):
    """Devito grid, fields, coefficients, negated sources and the compiled inverse step.

    ``names``: the fields it carries (wavefields, plus memory variables when attenuating);
    ``regions``: name -> :class:`FieldRegion`. The operator computes state n from state n+1 at
    time index ``t = n + 1``; source group data are shifted one row ([nt + 1, npoint]) so that
    row ``n + 1`` holds what the forward injected at step n.
    """

    def __init__(self, sim: Simulation, names: tuple[str, ...], regions: dict) -> None:
        physics = sim.physics
        self.dtype = np.dtype(physics.config.dtype).type
        self.grid = devito_grid(physics.model.grid, self.dtype)
        specs = {s.name: s for s in physics.field_specs()}
        order = physics.config.space_order
        self.fields = {n: make_time_function(specs[n], self.grid, order) for n in names}
        self.coeffs = {c.name: make_coefficient(c, self.grid) for c in physics.coefficient_specs()}
        self.interiors = {}
        for n in names:
            key = tuple(specs[n].staggered)
            if key not in self.interiors:
                self.interiors[key] = _Interior(key, regions[n].interior, self.grid)
        self.ring_views = self._ring_buffers(names, regions, sim.time.nt)
        groups = injection_groups(sim)
        self.sources = {
            group: point_function(f"rsrc{k}", self.grid, len(members), sim.time.nt + 1, self.dtype)
            for k, (group, members) in enumerate(groups.items())
        }
        self.operator = Operator(self._equations(physics), name="reverse")
        self.calls = DirectCalls(self.operator)

    def _ring_buffers(self, names, regions, nt: int) -> dict[str, np.ndarray]:
        """Per field with a ring: index Functions (one per axis, [nring]) and a buffer
        [nt + 1, nring] (row n: the ring at step n); returns numpy views of the buffers."""
        self._ring_loads, views = [], {}
        stepping, time = self.grid.stepping_dim, self.grid.time_dim
        for name in names:
            ring = regions[name].ring
            if ring[0].size == 0:  # no absorbing layer: nothing to overwrite
                continue
            k = Dimension(name=f"k_{name}")
            index = []
            for dim, values in zip(self.grid.dimensions, ring, strict=True):
                f = Function(
                    name=f"ring_{name}_{dim.name}",
                    dimensions=(k,),
                    shape=values.shape,
                    dtype=np.int32,
                )
                f.data[:] = values
                index.append(f[k])
            buffer = TimeFunction(
                name=f"ring_{name}",
                dimensions=(time, k),
                shape=(nt + 1, values.size),
                time_order=0,
                dtype=self.dtype,
            )
            field = self.fields[name][(stepping - 1, *index)]
            self._ring_loads.append(Eq(field, buffer[time - 1, k]))
            views[name] = np.asarray(buffer.data)
        return views

    def _equations(self, physics: Physics) -> list:
        eqs = list(self._ring_loads)  # state n's ring first: the interior stencils read it
        for stage in physics.inverse_stages(self.fields, self.coeffs, self.interiors):
            # Undo this stage's injections first: its field at t is then the pure update.
            for (field, stage_name, _), src in self.sources.items():
                if stage_name == stage.name:
                    eqs += src.inject(field=self.fields[field], expr=-src)
            eqs += stage.equations
        return eqs

    def load(self, sim: Simulation) -> None:
        """Coefficients and source data of ``sim``; zero every field."""
        fill_coefficients(self.coeffs, sim.physics.coefficient_specs(), self.dtype)
        for group, forward_src in sim.propagator.sources.items():
            src = self.sources[group]
            place(src, sim.propagator.source_positions[group], self.fields[group[0]])
            src.data[0] = 0
            src.data[1:] = forward_src.data
        for f in self.fields.values():
            f.data[:] = 0
        self.calls.reset()  # Constants are passed by value: rebuild the argument list

    def step_back(self, t: int, threads: int) -> None:
        """State ``t - 1`` from state ``t`` (ring from the buffers, interior by the inverse
        step): one direct kernel call (see :class:`DirectCalls`)."""
        self.calls(t, t, threads)


INVERSE_STEP_OPERATORS: OperatorCache[ReverseOperator] = OperatorCache("inverse step")


def get_reverse_operator(sim: Simulation, names: tuple[str, ...], regions: dict):
    """The cached inverse-step operator for ``sim``'s shapes (compiled on first use)."""
    groups = injection_groups(sim)
    grid = sim.physics.model.grid
    key = (
        sim.physics.operator_key(),
        names,
        grid.shape,
        grid.spacing,
        grid.origin,
        sim.pads,
        tuple((k, len(v)) for k, v in groups.items()),
        sim.time.nt,
    )
    return INVERSE_STEP_OPERATORS.get(key, lambda: ReverseOperator(sim, names, regions))


class _Interior(SubDomain):
    """Box ``bounds`` [(start, stop)] per axis: the undamped interior of one staggering."""

    def __init__(self, staggered: tuple[str, ...], bounds, grid) -> None:
        self.name = "interior_" + ("".join(staggered) or "node")
        self._bounds = bounds
        super().__init__(grid=grid)

    def define(self, dimensions):
        out = {}
        for d, (start, stop), n in zip(dimensions, self._bounds, self.grid.shape, strict=True):
            out[d] = d if (start, stop) == (0, n) else ("middle", start, n - stop)
        return out
