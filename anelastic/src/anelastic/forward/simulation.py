"""The generic time integrator: validation, stepping, solver state, seismograms.

Time convention: step n advances the state from t_n = n dt to t_{n+1}. The state "at step n"
holds every field of the rheology's ``field_specs`` at time index n (fields staggered in time,
such as velocities, at t_{n-1/2}). Receivers record at t_n (before step n, velocities averaged),
so a full run of steps 0..nt-1 gives traces [nt, nrec] at t = 0, dt, ..., (nt-1) dt.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from anelastic.acquisition import Component, Receivers, Seismograms, Source
from anelastic.attenuation import SLSFit, default_band
from anelastic.forward.state import SolverState, problem_fingerprint
from anelastic.model import Grid, Model
from anelastic.physics import Physics, PhysicsConfig, physics_class
from anelastic.physics.boundary import padding

MIN_POINTS_PER_WAVELENGTH = {2: 10.0, 4: 5.0, 6: 4.0, 8: 3.5}
CHECK_INTERVAL = 250  # steps between blow-up checks (one operator call costs ~5 ms)


@dataclass(frozen=True)
class TimeAxis:
    """``nt`` steps of ``dt`` seconds; samples at ``n dt``, n = 0..nt-1."""

    dt: float
    nt: int

    def __post_init__(self) -> None:
        if not np.isfinite(self.dt) or self.dt <= 0:
            raise ValueError(f"time step dt must be > 0 s, got {self.dt}")
        if int(self.nt) < 1:
            raise ValueError(f"number of time steps nt must be >= 1, got {self.nt}")
        object.__setattr__(self, "nt", int(self.nt))

    @property
    def times(self) -> np.ndarray:
        return self.dt * np.arange(self.nt)


class SimulationBlowUp(FloatingPointError):
    """The wavefield became non-finite; ``step`` is the first step that produced NaN/inf."""

    def __init__(self, step: int, message: str) -> None:
        super().__init__(message)
        self.step = step


def pad_model(model: Model, pads: tuple[tuple[int, int], ...]) -> Model:
    """The model extended by edge replication into the absorbing layers."""
    grid = model.grid
    shape = tuple(n + lo + hi for n, (lo, hi) in zip(grid.shape, pads, strict=True))
    origin = tuple(
        o - lo * h for o, h, (lo, _) in zip(grid.origin, grid.spacing, pads, strict=True)
    )
    arrays = {k: np.pad(getattr(model, k), pads, mode="edge") for k in ("vp", "vs", "rho")}
    arrays.update({k: np.pad(getattr(model, k), pads, mode="edge") for k in ("qp", "qs")})
    return Model(Grid(shape, grid.spacing, origin), **arrays, f_ref=model.f_ref, name=model.name)


class Simulation:
    """One forward problem: model, sources, receivers, time axis, physics configuration.

    ``instance`` is part of the cache key of the compiled propagator (e.g. "forward",
    "observed", "verify"), so several simulations with the same shapes can be alive together;
    two live simulations with the same key and instance would share Devito fields, which is
    detected and refused (:mod:`anelastic.forward.cache`).
    ``sls_fit`` (an ``attenuation.SLSFit``) fixes the relaxation mechanisms instead of fitting
    them to this model's Q values (kernels are derivatives at fixed mechanisms).
    """

    def __init__(
        self,
        model: Model,
        sources: list[Source],
        receivers: Receivers | None,
        time: TimeAxis,
        config: PhysicsConfig | None = None,
        *,
        threads: int | None = None,
        instance: str = "forward",
        sls_fit: SLSFit | None = None,
    ) -> None:
        self.model = model
        self.sources = list(sources)
        self.receivers = receivers
        self.time = time
        self.config = config if config is not None else PhysicsConfig()
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1 or None (chosen by measurement); got {threads}")
        self.threads = threads  # None: chosen per call by measurement (forward/threads.py)
        self.pads = padding(model.ndim, self.config.pml_width, self.config.free_surface)
        _validate_acquisition(model, self.sources, receivers, self.pads, self.config)
        self.f0 = self.sources[0].wavelet.dominant_frequency
        band = self.config.band or default_band(self.f0)
        padded = pad_model(model, self.pads)
        self.physics = physics_class(self.config.kind)(padded, self.config, time.dt, band, sls_fit)
        _validate_time_step(self.physics, model, time, self.f0, self.config)
        # Devito loads with the first simulation, not on import (``anelastic --help``, config).
        from anelastic.forward.propagator import propagator_for

        self.propagator = propagator_for(self, instance)
        self.propagator.claim(self)
        self.propagator.load_problem(self)
        self.step = 0

    @property
    def cell_volume(self) -> float:
        return float(np.prod(self.model.grid.spacing))

    def run(self, progress: bool = False) -> Seismograms:
        """Run all remaining steps to ``nt`` and return the seismograms."""
        self.advance(self.time.nt, progress=progress)
        return self.seismograms()

    def advance(self, stop: int, progress: bool = False, on_step=None) -> None:
        """Execute steps ``self.step .. stop-1`` (so the state ends at step ``stop``).

        ``on_step(n)``, if given, is called after every step with the new step number n while
        the state at step n sits in the fields (slot n % 2; read, do not modify)."""
        if not self.step <= stop <= self.time.nt:
            raise ValueError(f"cannot advance from step {self.step} to {stop} (nt={self.time.nt})")
        bar = _progress_bar(stop - self.step, progress)
        while self.step < stop:
            chunk_end = min(stop, self.step + CHECK_INTERVAL)
            start_state = self.state() if self.propagator.cheap_state else None
            if on_step is None:
                self.propagator.apply(self, self.step, chunk_end)
            else:
                for n in range(self.step, chunk_end):
                    self.propagator.apply_one(self, n)
                    on_step(n + 1)
            if not self.propagator.finite():
                self._locate_blow_up(start_state, chunk_end)
            bar.update(chunk_end - self.step)
            self.step = chunk_end
        bar.close()

    def _locate_blow_up(self, start_state: SolverState | None, chunk_end: int) -> None:
        first = chunk_end - 1
        if start_state is not None:
            self.restore(start_state)
            for n in range(start_state.step, chunk_end):
                self.propagator.apply(self, n, n + 1)
                if not self.propagator.finite():
                    first = n
                    break
        limit = self.physics.stable_dt(self.model.grid.spacing)
        raise SimulationBlowUp(
            first,
            f"the wavefield became NaN/inf at step {first} (t = {first * self.time.dt:.6g} s); "
            f"dt = {self.time.dt:g} s, stable limit {limit:.6g} s. Check the model for extreme "
            "contrasts, the source amplitude, or reduce dt.",
        )

    def state(self) -> SolverState:
        """A copy of the complete solver state at the current step (under MPI: of this rank's
        box; every rank saves and restores its own)."""
        self.propagator.check_owner(self)
        return SolverState(self.step, self.propagator.read_state(self.step), self.fingerprint())

    def restore(self, state: SolverState) -> None:
        """Put the solver in ``state`` (bitwise); later steps continue from ``state.step``."""
        self.propagator.check_owner(self)
        if state.fingerprint != self.fingerprint():
            raise ValueError(
                "state was saved by a different problem (model, grid, physics or dt differ); "
                f"state fingerprint {state.fingerprint}, this problem {self.fingerprint()}"
            )
        if not 0 <= state.step <= self.time.nt:
            raise ValueError(f"state step {state.step} outside [0, {self.time.nt}]")
        self.propagator.write_state(state.step, state.fields)
        self.step = state.step

    def fingerprint(self) -> str:
        """Hash of everything that determines the time integration."""
        if getattr(self, "_fingerprint", None) is None:
            self._fingerprint = problem_fingerprint(self)
        return self._fingerprint

    def seismograms(self) -> Seismograms:
        """Traces recorded so far (zeros after the current step)."""
        if self.receivers is None:
            raise ValueError("this simulation has no receivers")
        data = self.propagator.read_receivers(self)
        return Seismograms(self.time.dt, self.receivers.positions.copy(), data)

    def restore_traces(self, traces: dict[Component, np.ndarray]) -> None:
        """Put back traces [nt, nrec] per component (recorded before a resume point)."""
        self.propagator.write_receivers(self, traces)

    def wavefield(self, name: str = "p") -> np.ndarray:
        """Field ``name`` at the current step on the physical (unpadded) grid. Under MPI it is
        gathered: every rank must call it, and every rank gets the whole grid."""
        self.propagator.check_owner(self)
        full = self.propagator.gather_field(name, self.step)
        window = tuple(slice(lo, n - hi) for (lo, hi), n in zip(self.pads, full.shape, strict=True))
        return full[window]

    def save_state(self, path: str | Path) -> None:
        self.state().save(path)


def _progress_bar(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, disable=not enabled, unit="step", leave=False)


def _validate_acquisition(model, sources, receivers, pads, config) -> None:
    if not sources:
        raise ValueError("at least one source is needed")
    for k, src in enumerate(sources):
        _check_position(model, np.asarray(src.position), f"source {k}", pads)
    if receivers is not None:
        for k, pos in enumerate(receivers.positions):
            _check_position(model, pos, f"receiver {k}", pads)
        if receivers.positions.shape[1] != model.ndim:
            raise ValueError(
                f"receivers are {receivers.positions.shape[1]}-D, model {model.ndim}-D"
            )


def _check_position(model: Model, pos: np.ndarray, label: str, pads) -> None:
    grid = model.grid
    if pos.shape != (grid.ndim,):
        raise ValueError(f"{label} position {tuple(pos)} needs {grid.ndim} coordinates")
    if grid.contains(pos):
        return
    lo = np.asarray(grid.origin) - np.asarray([p[0] for p in pads]) * grid.spacing
    hi = np.asarray(grid.origin) + grid.extent + np.asarray([p[1] for p in pads]) * grid.spacing
    box = ", ".join(
        f"{a} in [{o:g}, {o + e:g}]"
        for a, o, e in zip(grid.axis_names, grid.origin, grid.extent, strict=True)
    )
    where = (
        "inside the absorbing layer" if np.all((pos >= lo) & (pos <= hi)) else "outside the grid"
    )
    raise ValueError(f"{label} at {tuple(float(c) for c in pos)} m is {where}; allowed: {box}")


def _validate_time_step(physics: Physics, model: Model, time: TimeAxis, f0: float, config) -> None:
    limit = physics.stable_dt(model.grid.spacing)
    if time.dt > limit:
        raise ValueError(
            f"dt = {time.dt:g} s violates the CFL condition: the largest stable dt for this "
            f"model (max unrelaxed velocity {physics.velocity_bounds()[1]:.6g} m/s), grid "
            f"spacing and space order {config.space_order} is {limit:.6g} s"
        )
    vmin = physics.velocity_bounds()[0]
    positive_vs = model.vs[model.vs > 0]
    if positive_vs.size and config.kind.value == "viscoelastic":
        vmin = min(vmin, float(positive_vs.min()))
    ppw = vmin / (2.5 * f0 * max(model.grid.spacing))
    needed = MIN_POINTS_PER_WAVELENGTH[config.space_order]
    if ppw < needed:
        warnings.warn(
            f"only {ppw:.2f} grid points per minimum wavelength (v_min {vmin:g} m/s at "
            f"2.5 f0 = {2.5 * f0:g} Hz); space order {config.space_order} needs about "
            f"{needed:g}: expect numerical dispersion",
            UserWarning,
            stacklevel=3,
        )


__all__ = ["Component", "Simulation", "SimulationBlowUp", "TimeAxis", "pad_model"]
