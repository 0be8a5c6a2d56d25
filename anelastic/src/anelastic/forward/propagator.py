"""Devito objects of one problem shape: grid, fields, coefficients, sparse points, Operator.

Propagators are cached (:data:`PROPAGATORS`, see :mod:`anelastic.forward.cache`) by everything
that shapes the generated code and the arrays (physics structure, padded shape, spacing, source
groups, receiver components and counts, nt); a new ``Simulation`` with the same key only
refills data. One cached propagator serves one live simulation at a time (``claim``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np
from devito import (
    Constant,
    Function,
    Grid,
    Operator,
    SpaceDimension,
    TimeFunction,
)

from anelastic.acquisition import Component
from anelastic.forward import decomposition
from anelastic.forward.cache import Claimable, OperatorCache
from anelastic.forward.points import place, point_function
from anelastic.forward.threads import ThreadChooser
from anelastic.physics.base import CoefficientSpec, FieldRole, Physics
from anelastic.physics.boundary import AbsorbingLayout

if TYPE_CHECKING:
    from anelastic.forward.simulation import Simulation

PROPAGATORS: OperatorCache[Propagator] = OperatorCache("forward propagator")


def propagator_for(sim: Simulation, instance: str) -> Propagator:
    """The cached propagator for ``sim``'s shapes (built on first use)."""
    groups = injection_groups(sim)
    signature = tuple((k, len(v)) for k, v in groups.items())
    components = sim.receivers.components if sim.receivers is not None else ()
    nrec = sim.receivers.count if sim.receivers is not None else 0
    grid = sim.physics.model.grid
    key = (
        instance,
        sim.physics.operator_key(),
        grid.shape,
        grid.spacing,
        sim.pads,
        signature,
        components,
        nrec,
        sim.time.nt,
    )
    return PROPAGATORS.get(
        key, lambda: Propagator(sim.physics, grid, sim.pads, signature, components, nrec, sim, key)
    )


def injection_groups(sim: Simulation) -> dict[tuple, list[tuple[int, float]]]:
    """Sources grouped by (field, stage, time_shift): lists of (source index, scale)."""
    groups: dict[tuple, list[tuple[int, float]]] = {}
    for k, source in enumerate(sim.sources):
        for inj in sim.physics.injections(source, sim.cell_volume):
            groups.setdefault((inj.field, inj.stage, inj.time_shift), []).append((k, inj.scale))
    return groups


def fill_coefficients(targets: dict, specs: Iterable[CoefficientSpec], dtype) -> None:
    """Copy each spec's values into ``targets[spec.name]`` (a Constant for 0-d values)."""
    for spec in specs:
        target = targets[spec.name]
        if spec.values.ndim == 0:
            target.data = dtype(spec.values)
        else:
            target.data[:] = spec.values


class Propagator(Claimable):
    """Devito grid, state fields, coefficients, sources, receivers and the compiled Operator.

    ``key``: its key in :data:`PROPAGATORS` (the kernel operators built on it are cached under
    it too)."""

    cheap_state = True

    def __init__(
        self, physics: Physics, grid, pads, signature, components, nrec, sim: Simulation, key=None
    ) -> None:
        self.key = key
        self.dtype = np.dtype(physics.config.dtype).type
        self.grid = devito_grid(grid, self.dtype)
        self.layout = AbsorbingLayout(self.grid, pads, physics.config.boundary)
        self.specs = physics.field_specs()
        order = physics.config.space_order
        self.fields = {s.name: make_time_function(s, self.grid, order) for s in self.specs}
        self.coeffs = {c.name: make_coefficient(c, self.grid) for c in physics.coefficient_specs()}
        nt = sim.time.nt
        self.sources = {
            group: point_function(f"src{k}", self.grid, count, nt, self.dtype)
            for k, (group, count) in enumerate(signature)
        }
        self.receivers = {
            comp: point_function(f"rec_{comp.value}", self.grid, nrec, nt, self.dtype)
            for comp in components
        }
        self.operator = Operator(self._equations(physics), name="forward")
        self.calls = DirectCalls(self.operator)
        self.auto_threads = ThreadChooser()  # for simulations that set no thread count

    def _equations(self, physics: Physics) -> list:
        return forward_equations(
            physics, self.fields, self.coeffs, self.layout, self.sources, self.receivers
        )

    # --- ownership ---------------------------------------------------------------------
    def check_owner(self, sim: Simulation) -> None:
        if not self.is_owned_by(sim):
            raise RuntimeError(
                "this Simulation's Devito fields were taken over by a newer Simulation with the "
                "same shapes; create it with a distinct `instance=` name to keep both alive"
            )

    # --- data --------------------------------------------------------------------------
    def load_problem(self, sim: Simulation) -> None:
        """Fill coefficients, boundary profiles, sources and receivers; zero the state."""
        physics = sim.physics
        self.calls.reset()  # Constants may change: direct calls must re-read the arguments
        fill_coefficients(self.coeffs, physics.coefficient_specs(), self.dtype)
        vmax = physics.velocity_bounds()[1]
        self.layout.set_profiles(vmax, sim.f0, sim.time.dt, sim.model.grid.spacing)
        for f in self.fields.values():
            f.data[:] = 0
        self._load_sources(sim)
        for rec in self.receivers.values():
            place(rec, sim.receivers.positions)
            rec.data[:] = 0

    def _load_sources(self, sim: Simulation) -> None:
        groups = injection_groups(sim)
        times = sim.time.times
        # All points, for the kernel pass's replay: group -> [npoint, ndim] and [nt, npoint]
        self.source_positions, self.source_values = {}, {}
        for group, src in self.sources.items():
            members = groups[group]
            shift = group[2] * sim.time.dt
            # Whole arrays: under MPI, Devito's sparse data is set only as a whole.
            positions = np.array([sim.sources[k].position for k, _ in members])
            self.source_positions[group] = positions
            place(src, positions, self.fields[group[0]])
            values = [scale * sim.sources[k].wavelet(times + shift) for k, scale in members]
            self.source_values[group] = np.stack(values, axis=1).astype(self.dtype)
            src.data[:] = self.source_values[group]

    def apply_one(self, sim: Simulation, step: int) -> None:
        """Step ``step`` alone through a :class:`DirectKernel` (a per-step loop that must look at
        every state, e.g. to record a boundary ring, costs ~1.1 steps instead of ~9)."""
        self.check_owner(sim)
        self.calls(step, step, self.threads_for(sim).best())

    def threads_for(self, sim: Simulation) -> ThreadChooser:
        """``sim``'s fixed thread count, or this operator's measured choice if it sets none."""
        return self.auto_threads.or_fixed(sim.threads)

    def apply(self, sim: Simulation, start: int, stop: int) -> None:
        self.check_owner(sim)
        if stop > start:
            self.threads_for(sim).run(self._apply_range, start, stop)

    def _apply_range(self, start: int, stop: int, threads: int) -> None:
        self.calls(start, stop - 1, threads)

    def finite(self) -> bool:
        """No NaN/inf in any wavefield (on any rank: all ranks get the same answer)."""
        wavefields = [self.fields[s.name] for s in self.specs if s.role is FieldRole.WAVEFIELD]
        return decomposition.all_ranks(all(bool(np.isfinite(f.data).all()) for f in wavefields))

    def read_state(self, step: int) -> dict[str, np.ndarray]:
        """Every field at ``step``: [*padded shape], or this rank's box of it under MPI."""
        return {name: np.array(f.data_local[step % 2]) for name, f in self.fields.items()}

    def gather_field(self, name: str, step: int) -> np.ndarray:
        """Field ``name`` at ``step`` on the whole padded grid (gathered under MPI)."""
        return decomposition.gather_field(self.fields[name], (step % 2,))

    def write_state(self, step: int, arrays: dict[str, np.ndarray]) -> None:
        missing = set(self.fields) - set(arrays)
        extra = set(arrays) - set(self.fields)
        if missing or extra:
            raise ValueError(f"state fields mismatch: missing {missing}, unexpected {extra}")
        for name, f in self.fields.items():
            local = f.data_local
            if arrays[name].shape != local.shape[1:]:
                box = " (this rank's box)" if decomposition.size() > 1 else ""
                raise ValueError(
                    f"state field {name} has shape {arrays[name].shape}, this solver "
                    f"{local.shape[1:]}{box}"
                )
            local[step % 2] = arrays[name]
            local[(step + 1) % 2] = 0

    def write_receivers(self, sim: Simulation, traces: dict[Component, np.ndarray]) -> None:
        """Put back receiver traces [nt, nrec] recorded before a resume point."""
        self.check_owner(sim)
        for comp, rec in self.receivers.items():
            rec.data[:] = traces[comp]
        self.calls.reset()  # under MPI the direct calls hold scattered copies of the traces

    def read_receivers(self, sim: Simulation) -> dict[Component, np.ndarray]:
        """Traces [nt, nrec] per component (all receivers, on every rank under MPI)."""
        self.check_owner(sim)
        self.calls.gather(list(self.receivers.values()))
        return {comp: decomposition.gather_sparse(rec) for comp, rec in self.receivers.items()}


def make_time_function(spec, grid, order: int) -> TimeFunction:
    """The TimeFunction (time_order 1) of a ``FieldSpec``: its staggering, its space order
    (``order`` when the spec has none), the grid's dtype."""
    dims = {d.name: d for d in grid.dimensions}
    staggered = tuple(dims[a] for a in spec.staggered) if spec.staggered else None
    return TimeFunction(
        name=spec.name,
        grid=grid,
        space_order=spec.space_order if spec.space_order is not None else order,
        time_order=1,
        staggered=staggered,
        dtype=grid.dtype,
    )


def make_coefficient(spec, grid):
    """A Constant (0-d values) or a Function for a ``CoefficientSpec`` (data filled later)."""
    if spec.values.ndim == 0:
        return Constant(name=spec.name, value=float(spec.values), dtype=grid.dtype)
    dims = {d.name: d for d in grid.dimensions}
    staggered = tuple(dims[a] for a in spec.staggered) if spec.staggered else None
    return Function(
        name=spec.name,
        grid=grid,
        space_order=spec.space_order,
        staggered=staggered,
        dtype=grid.dtype,
    )


class DirectKernel:
    """Repeated calls of a compiled Devito Operator over time ranges, without ``apply``.

    ``Operator.apply`` prepares its whole argument list at every call (~4 ms of Python, several
    times a small grid's step). Here it is prepared once; each call only sets ``time_m`` and
    ``time_M``. Valid while the Operator's Functions keep their memory and its Constants their
    values (Constants are passed by value: build a new DirectKernel after changing one).
    Devito checks the bounds against the arrays on the first call only: later calls must stay
    within them (the caller's job). Sparse injection/interpolation run on one thread
    (``nthreads_nonaffine=1``): they touch a handful of points, and an OpenMP fork/join per step
    would cost more than the work (and stalls under load).
    Measured on a 440 x 440 order-8 float32 forward, one step per call: apply 9.2x the cost of
    one 500-step call, direct 1.14x (ring copy included).
    """

    def __init__(self, operator: Operator, threads: int) -> None:
        self.operator, self.threads = operator, threads
        self._values: list | None = None
        self._positions: dict[str, int] = {}

    def __call__(self, time_m: int, time_M: int) -> None:  # noqa: N803  (Devito's names)
        if self._values is None:  # Devito checks bounds here, once
            params = self.operator.parameters
            threads = {"nthreads": self.threads}
            if any(p.name == "nthreads_nonaffine" for p in params):  # operators with sparse loops
                threads["nthreads_nonaffine"] = 1
            args = self.operator.arguments(time_m=time_m, time_M=time_M, **threads)
            self._values = [args[p.name] for p in params]
            self._positions = {p.name: i for i, p in enumerate(params)}
        self._values[self._positions["time_m"]] = time_m
        self._values[self._positions["time_M"]] = time_M
        status = self.operator.cfunction(*self._values)
        if status != 0:
            raise RuntimeError(f"Devito kernel {self.operator.name} failed with status {status}")

    def gather(self, sparse: list) -> None:
        """Copy what the calls wrote into ``sparse`` functions' scattered arrays back into their
        ``data`` (under MPI, Devito hands each rank's C code the points it owns; serial: no-op).
        Devito's own ``apply`` does this after every call, along with freeing its MPI messages,
        which direct calls reuse."""
        if self._values is None:
            return
        for function in sparse:
            function._arg_apply(self._values[self._positions[function.name]])

    def scatter(self, sparse: list) -> None:
        """Hand the next calls the current ``data`` of ``sparse`` functions (under MPI the
        calls hold scattered copies made at the first call, refreshed here in place: the
        points each rank owns do not change; serial: the arrays themselves, nothing to do)."""
        if self._values is None or not decomposition.mpi_active():
            return
        for function in sparse:
            held = function._C_as_ndarray(self._values[self._positions[function.name]])
            held[...] = function._arg_values()[function.name]


class DirectCalls:
    """The :class:`DirectKernel` of one operator for each thread count; ``reset()`` after a
    Constant changes (a new problem loaded)."""

    def __init__(self, operator: Operator) -> None:
        self.operator = operator
        self._by_threads: dict[int, DirectKernel] = {}

    def reset(self) -> None:
        self._by_threads.clear()

    def gather(self, sparse: list) -> None:
        """:meth:`DirectKernel.gather` of every thread count's kernel (one under MPI, where the
        thread count is fixed)."""
        for call in self._by_threads.values():
            call.gather(sparse)

    def scatter(self, sparse: list) -> None:
        """:meth:`DirectKernel.scatter` of every thread count's kernel."""
        for call in self._by_threads.values():
            call.scatter(sparse)

    def __call__(self, time_m: int, time_M: int, threads: int) -> None:  # noqa: N803
        """Time indices ``time_m .. time_M`` (inclusive, Devito's convention) on ``threads``."""
        call = self._by_threads.get(threads)
        if call is None:
            call = self._by_threads[threads] = DirectKernel(self.operator, threads)
        call(time_m, time_M)


def forward_equations(
    physics: Physics, fields, coeffs, layout, sources: dict, receivers: dict, after_last_stage=()
) -> list:
    """One forward step: the rheology's stages, each followed by the injections of the sources
    it names (``sources[(field, stage, shift)]``), then the receivers' interpolation.

    ``after_last_stage``: equations placed right after the last stage's own equations (before
    its injections), each next to the last equation of its own subdomain, so Devito fuses them
    into that region's loop nest (the replay's buffer: the fields are read once per step).
    """
    eqs = []
    stages = physics.stages(fields, coeffs, layout)
    for stage in stages:
        if stage is stages[-1]:
            eqs += beside_their_region(list(stage.equations), list(after_last_stage))
        else:
            eqs += stage.equations
        for (field, stage_name, _), src in sources.items():
            if stage_name == stage.name:
                eqs += src.inject(field=fields[field].forward, expr=src)
    for comp, rec in receivers.items():
        eqs += rec.interpolate(expr=physics.record(fields, comp))
    return eqs


def beside_their_region(equations: list, extra: list) -> list:
    """``equations`` with each of ``extra`` inserted after the last equation of the same
    subdomain (the rest at the end). Measured on the P1 replay: appended after all regions'
    equations, Devito kept the buffer frame in loop nests of its own (the fields read twice
    per step); placed beside their region, it fuses them into the pressure nests."""
    last_of = {}
    for k, eq in enumerate(equations):
        last_of[id(eq.subdomain)] = k
    placed: dict[int, list] = {}
    rest = []
    for eq in extra:
        k = last_of.get(id(eq.subdomain))
        (placed.setdefault(k, []) if k is not None else rest).append(eq)
    out = []
    for k, eq in enumerate(equations):
        out += [eq, *placed.get(k, [])]
    return out + rest


def devito_grid(grid, dtype) -> Grid:
    """A Devito Grid for a model Grid, with named spacing Constants ``h_<axis>``."""
    dims = tuple(
        SpaceDimension(name=a, spacing=Constant(name=f"h_{a}", value=h, dtype=dtype))
        for a, h in zip(grid.axis_names, grid.spacing, strict=True)
    )
    return Grid(
        shape=grid.shape, extent=grid.extent, origin=grid.origin, dimensions=dims, dtype=dtype
    )
