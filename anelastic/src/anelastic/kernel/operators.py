"""Replay and adjoint operators of one problem (the kernel pass's two Devito operators).

Both run on chunk-local time: local index tau = n - chunk.start.

- The replay operator is the forward step (same stencil code, the forward simulation's own
  fields and coefficients) plus copies of the quantities the adjoint needs into a RAM buffer of
  N frames (``TimeFunction(save=N)``): frame tau holds step ``start + tau``.
- The adjoint operator is the exact transpose of the forward step (the rheology's
  :class:`~anelastic.physics.adjoint.AdjointScheme`) on its own fields, run backwards over the
  chunk (loop index t computes step ``start + t`` from step ``start + t + 1``), with the adjoint
  source injected and the coefficient gradients accumulated in the same loop nest.

The adjoint state lives in separate fields, so a replay never disturbs it; between chunks only
its two time slots may need swapping (a chunk of odd length ends on the other slot).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from devito import Function, Operator, TimeFunction

from anelastic.forward import decomposition
from anelastic.forward.cache import OperatorCache
from anelastic.forward.points import place, point_function
from anelastic.forward.propagator import (
    DirectCalls,
    fill_coefficients,
    forward_equations,
    make_coefficient,
)
from anelastic.forward.threads import ThreadChooser
from anelastic.physics.adjoint import STAGGERED_AFTER_STEP

if TYPE_CHECKING:
    from anelastic.forward.simulation import Simulation


KERNEL_OPERATORS: OperatorCache[KernelOperators] = OperatorCache("kernel operators")


def kernel_operators(sim: Simulation, n_frames: int) -> KernelOperators:
    """Cached ``KernelOperators`` of ``sim``'s propagator with a buffer of at least ``n_frames``
    (building and compiling the two operators costs seconds; a new simulation with the same
    shapes reuses them, like the forward propagator; chunks may be shorter than the buffer).
    Cached under (propagator key, buffer length); the smallest buffer that fits is reused."""
    key = sim.propagator.key
    fitting = [n for prop_key, n in KERNEL_OPERATORS.keys() if prop_key == key and n >= n_frames]
    n = min(fitting, default=n_frames)
    ops = KERNEL_OPERATORS.get((key, n), lambda: KernelOperators(sim, n))
    ops.sim = sim
    return ops


class KernelOperators:
    """Replay buffer, adjoint state, gradients and the two operators for chunks of <= N steps.

    ``sim``: the forward ``Simulation`` (its fields are reused by the replay); ``n_frames``: the
    buffer length N. Each receiver component gets its own adjoint source (``adjsrc_<c>``).
    """

    def __init__(self, sim: Simulation, n_frames: int) -> None:
        prop = sim.propagator
        self.sim, self.prop, self.n_frames = sim, prop, int(n_frames)
        self.scheme = sim.physics.adjoint()
        grid, dtype = prop.grid, prop.dtype
        order = sim.physics.config.space_order
        self.buffers = {
            s.name: _field(s, grid, order, dtype, f"buf_{s.name}", save=self.n_frames)
            for s in self.scheme.buffer_specs()
        }
        self.adjoint = {s.name: _field(s, grid, order, dtype) for s in self.scheme.adjoint_specs()}
        self.temps = {
            s.name: _field(s, grid, order, dtype, time=False) for s in self.scheme.temporary_specs()
        }
        self.grads = {
            s.name: _field(s, grid, order, np.float64 if dtype == np.float64 else dtype, time=False)
            for s in self.scheme.gradient_specs()
        }
        self.halo_profiles = _halo_profiles(prop.layout, order)
        self.replay_coeffs = {
            spec.name: make_coefficient(spec, prop.grid)
            for spec in self._replay_coefficient_specs()
        }
        self._load_replay_coefficients()
        self.sources = {
            group: point_function(f"rsrc{k}", grid, src.npoint, self.n_frames, dtype)
            for k, (group, src) in enumerate(prop.sources.items())
        }
        nrec = sim.receivers.count
        # One sparse function per injection (component, k): each has its own coordinates
        # (the receivers moved by the injection's offset), all carry the component's source.
        self.injections = {
            (comp, k): entry
            for comp in sim.receivers.components
            for k, entry in enumerate(self.scheme.adjoint_sources(comp))
        }
        self.residuals = {
            key: point_function(
                f"adjsrc_{key[0].value}{key[1]}", grid, nrec, max(self.n_frames, 2), dtype
            )
            for key in self.injections
        }
        self._seed_op: Operator | None = None
        self.replay_op = Operator(self._replay_equations(), name="replay")
        self.adjoint_op = Operator(self._adjoint_equations(), name="adjoint")
        self.replay_calls = DirectCalls(self.replay_op)
        self.adjoint_calls = DirectCalls(self.adjoint_op)
        self._fill_calls: DirectCalls | None = None
        self.replay_steps = 0
        self.adjoint_steps = 0
        self.auto_threads = {"replay": ThreadChooser(), "adjoint": ThreadChooser()}

    def threads_for(self, phase: str) -> ThreadChooser:
        """The simulation's fixed thread count, or the phase operator's measured choice."""
        return self.auto_threads[phase].or_fixed(self.sim.threads)

    def _replay_coefficient_specs(self) -> tuple:
        """Model-dependent coefficients only the buffer needs (e.g. Q-derivatives)."""
        return self.scheme.replay_coefficient_specs()

    def _load_replay_coefficients(self) -> None:
        fill_coefficients(self.replay_coeffs, self._replay_coefficient_specs(), self.prop.dtype)

    def _buffer_equations(self) -> list:
        prop = self.prop
        coeffs = {**prop.coeffs, **self.replay_coeffs}
        return self.scheme.buffer_equations(
            prop.fields, self.buffers, prop.grid, coeffs, prop.layout.regions
        )

    def _replay_equations(self) -> list:
        physics, prop = self.sim.physics, self.prop
        return forward_equations(
            physics, prop.fields, prop.coeffs, prop.layout, self.sources, {},
            after_last_stage=self._buffer_equations(),
        )  # fmt: skip

    def _adjoint_equations(self) -> list:
        prop = self.prop
        args = (self.adjoint, self.temps, self.buffers, self.grads, prop.coeffs, prop.layout)
        seams = self.scheme.seam_layout(prop.grid, prop.layout.pads)
        injections = []
        # Each component's adjoint source into the adjoint field the scheme names (pressure:
        # p^; a velocity: v^ at the receiver -+ h/2), after the step's updates. (Injected into
        # the step's input instead, before the updates, Devito split the time loop.)
        for key, (name, weight, _, _) in self.injections.items():
            residual = self.residuals[key]
            injections.append(
                residual.inject(field=self.adjoint[name].backward, expr=weight * residual)
            )
        return self.scheme.adjoint_equations(*args, self.halo_profiles, seams) + injections

    # --- data ----------------------------------------------------------------------------
    def buffer_nbytes(self) -> int:
        """RAM of the replay buffer (N frames of every buffered quantity)."""
        return int(sum(b.data.nbytes for b in self.buffers.values()))

    def reset(self, receiver_positions: np.ndarray) -> None:
        """Zero the adjoint state and the gradients (start of a kernel pass)."""
        for f in (*self.adjoint.values(), *self.temps.values(), *self.grads.values()):
            f.data[:] = 0
        for name, copy in self.halo_profiles.items():  # the cached layout may have new profiles
            copy.data_local[:] = self.prop.layout.profiles[name].data_local
        self.scheme = self.sim.physics.adjoint()  # this simulation's model
        self._load_replay_coefficients()
        for key, residual in self.residuals.items():
            name, _, _, offset = self.injections[key]
            shift = 0.0 if offset is None else np.asarray(offset)
            place(residual, receiver_positions + shift, self.adjoint[name])
        for src, group in zip(self.sources.values(), self.prop.sources, strict=True):
            place(src, self.prop.source_positions[group], self.prop.fields[group[0]])
        self.replay_steps = 0
        self.adjoint_steps = 0
        # Constants are passed by value: the direct calls must re-read the arguments
        for calls in (self.replay_calls, self.adjoint_calls, self._fill_calls):
            if calls is not None:
                calls.reset()

    def replay(self, start: int, stop: int, state: dict[str, np.ndarray]) -> None:
        """Fill buffer frames 0..stop-start-1 with steps start..stop-1, from ``state`` (the
        complete solver state at step ``start``)."""
        length = self._check_chunk(start, stop)
        self.prop.write_state(0, state)
        for src, group in zip(self.sources.values(), self.prop.sources, strict=True):
            src.data[:length] = self.prop.source_values[group][start:stop]
        self.replay_calls.scatter(list(self.sources.values()))
        self.threads_for("replay").timed(lambda n: self.replay_calls(0, length - 1, n), length)
        self.replay_steps += length

    def fill_frame(self, tau: int, state: dict, next_state: dict) -> None:
        """Buffer frame ``tau`` from complete states of steps n and n + 1 computed elsewhere
        (a backward reconstruction); one small operator call, no time step."""
        if self._fill_calls is None:
            self._fill_calls = DirectCalls(Operator(self._buffer_equations(), name="fill"))
        for name, f in self.prop.fields.items():
            if name in state:  # the buffer only reads wavefields (and memory variables)
                f.data[tau % 2] = state[name]
                f.data[(tau + 1) % 2] = next_state[name]
        # One frame per call, nt calls per pass: Operator.apply's ~4 ms of argument processing
        # per call would cost more than the frame's work (measured: 8 of 10 s on P1).
        self._fill_calls(tau, tau, self.threads_for("replay").best())

    def seed(self, sources: AdjointSources) -> None:
        """Before the first adjoint step of a pass: put ``sources.initial`` (the half of the
        last velocity samples that reads v^{nt-1/2}) into the adjoint state (slot 1, where the
        first chunk reads it), with the same injections as the steps."""
        keys = [k for k, entry in self.injections.items() if entry[2] == STAGGERED_AFTER_STEP]
        if not keys:
            return
        if self._seed_op is None:
            eqs = []
            for key in keys:
                name, weight = self.injections[key][:2]
                residual = self.residuals[key]
                eqs.append(residual.inject(field=self.adjoint[name], expr=weight * residual))
            self._seed_op = Operator(eqs, name="seed")
        for key in keys:
            self.residuals[key].data[1] = sources.initial[key[0]]
        self._seed_op.apply(time_m=1, time_M=1)  # apply: scatters the residuals itself

    def adjoint_chunk(self, start: int, stop: int, sources: AdjointSources) -> None:
        """Adjoint steps stop-1 .. start; ``sources``: :func:`adjoint_sources` of the
        residuals."""
        length = self._check_chunk(start, stop)
        self._align_adjoint_slots(length)
        if decomposition.size() > 1:
            # The adjoint reads buffer frames at stencil offsets (e.g. grad p for the buoyancy
            # gradient), and Devito 4.8 generates no halo exchange for a saved TimeFunction the
            # operator only reads: exchange the chunk's frames here (measured: without it the
            # rho kernel was 2 % off next to the ranks' seam).
            for buffer in self.buffers.values():
                buffer._halo_exchange()
        for (comp, _), residual in self.residuals.items():
            residual.data[:length] = sources.per_step[comp][start:stop]
        self.adjoint_calls.scatter(list(self.residuals.values()))
        self.threads_for("adjoint").timed(lambda n: self.adjoint_calls(0, length - 1, n), length)
        self.adjoint_steps += length

    def _align_adjoint_slots(self, length: int) -> None:
        """The adjoint state sits in slot 1 after a chunk (or is zero at the start); a chunk of
        ``length`` steps reads it from slot (length - 1) % 2."""
        if (length - 1) % 2 == 0:
            for f in self.adjoint.values():
                f.data_local[0] = f.data_local[1]

    def _check_chunk(self, start: int, stop: int) -> int:
        length = stop - start
        if not 1 <= length <= self.n_frames:
            raise ValueError(f"chunk [{start}, {stop}) does not fit a buffer of {self.n_frames}")
        return length

    def gradients(self) -> dict[str, np.ndarray]:
        """Coefficient gradients on the whole padded grid (gathered under MPI), float64."""
        return {
            name: decomposition.gather_field(g).astype(np.float64) for name, g in self.grads.items()
        }


def _field(spec, grid, order, dtype, name=None, *, save=None, time=True):
    dims = {d.name: d for d in grid.dimensions}
    staggered = tuple(dims[a] for a in spec.staggered) if spec.staggered else None
    space_order = spec.space_order if spec.space_order is not None else order
    kwargs = dict(
        name=name or spec.name, grid=grid, space_order=space_order, staggered=staggered, dtype=dtype
    )
    if not time:
        return Function(**kwargs)
    if save is not None:
        return TimeFunction(time_order=0, save=save, **kwargs)
    return TimeFunction(time_order=1, **kwargs)


def _halo_profiles(layout, order: int) -> dict[str, Function]:
    """Copies of the node C-PML ``a`` profiles with a stencil halo (zero outside the grid)."""
    out = {}
    for name, prof in layout.profiles.items():
        if not name.startswith("cpmla_"):
            continue
        dim = prof.dimensions[0]
        copy = Function(
            name=f"halo_{name}",
            grid=layout.grid,  # decomposed like the grid under MPI
            dimensions=(dim,),
            shape=prof.shape_global,
            space_order=order,
            dtype=prof.dtype,
        )
        copy.data_local[:] = prof.data_local  # the same box of the axis on this rank
        out[name] = copy
    return out


@dataclass(frozen=True)
class AdjointSources:
    """What the adjoint injects, per component: ``per_step`` [nt, nrec] values at each step,
    and ``initial`` [nrec] values put into the adjoint state before the first step."""

    per_step: dict
    initial: dict


def adjoint_sources(scheme, residuals: dict) -> AdjointSources:
    """The adjoint's sources from the residuals dchi/d(recorded sample) [nt, nrec] per
    component: as they are for a quantity recorded at step n (pressure); for a velocity
    (``STAGGERED_AFTER_STEP``: sample n reads v^{n-1/2} and v^{n+1/2}), 0.5 (r_{n-1} + r_n)
    at step n, which produces the adjoint of v^{n-1/2}, and 0.5 r_{nt-1} initially (the
    adjoint of v^{nt-1/2})."""
    per_step, initial = {}, {}
    for comp, r in residuals.items():
        placements = {entry[2] for entry in scheme.adjoint_sources(comp)}
        if placements == {STAGGERED_AFTER_STEP}:
            previous = np.concatenate([np.zeros_like(r[:1]), r[:-1]])
            per_step[comp] = 0.5 * (previous + r)
            initial[comp] = 0.5 * r[-1]
        else:
            per_step[comp] = r
    return AdjointSources(per_step, initial)
