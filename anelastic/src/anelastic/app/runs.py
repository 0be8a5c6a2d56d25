"""The runs of the CLI: config -> simulations -> files on disk.

``anelastic forward CONFIG.toml`` (:func:`run_forward`): one simulation of all sources (or,
with ``--per-source``, one per source into ``source_000/``, ...; on Dask when there are
several); writes ``seismograms.npz``, ``seismograms.mseed`` and ``sac/`` (SEED-named, start
at ``[time] origin_time``, receiver coordinates in the SAC headers: :mod:`anelastic.formats`),
``wavefield.png`` (snapshot at nt/2), ``seismograms.png`` (one section per component against
offset) and ``summary.json``.

``anelastic kernel CONFIG.toml`` (:func:`run_kernel`): the kernels of every event of a config,
summed. Each source of the config is one event. Observed data come from one Seismograms ``.npz`` per
event (``[kernel] observed``) or are synthesised from ``[observed_model]``. One event runs in
this process with progress bars; several run in parallel on Dask (a LocalCluster, or the
cluster at ``--scheduler``), each worker computing whole events, the kernels summed as they
arrive. Outputs in ``--out``:

- ``K_<name>.npy`` and ``dchi_d<param>.npy`` [*grid shape]: summed kernels / gradients;
- ``kernels.nc``: the same as one netCDF file with coordinates (xarray, netCDF3 via scipy);
- ``kernels.png``: maps with sources and receivers;
- ``summary.json``: per event: misfit, time steps and wall time per phase, peak RAM, disk bytes
  of the snapshot store, chunk length N, buffer bytes.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from anelastic.acquisition import Seismograms
from anelastic.app import plot
from anelastic.app.config import RunConfig, load_config
from anelastic.forward import decomposition
from anelastic.forward.simulation import Simulation
from anelastic.kernel.compute import check_observed, compute_kernels
from anelastic.kernel.inputs import (
    DEFAULT_BUDGET,
    Event,
    KernelSettings,
    Storage,
    SyntheticObserved,
    check_kernel_run,
)
from anelastic.kernel.misfit import MisfitKind
from anelastic.kernel.schedule import parse_bytes

GRADIENT_PREFIX = "dchi_d"


def run_forward(
    config_path: Path,
    out: Path,
    progress: bool = True,
    per_source: bool = False,
    scheduler: str | None = None,
    workers: int | None = None,
) -> dict:
    """Everything of ``anelastic forward`` (see the module docstring); returns the summary.

    per_source: one gather per source (``OUT/source_000/``, ...), each its own simulation;
    several run in parallel on Dask like kernel events (a LocalCluster, or ``scheduler``).
    """
    cfg = load_config(config_path)
    out.mkdir(parents=True, exist_ok=True)
    progress = progress and decomposition.is_root()
    if not per_source:
        summary = forward_gather((cfg, None, out, progress))[1]
    else:
        jobs = [(cfg, k, out / f"source_{k:03d}", progress) for k in range(len(cfg.sources))]
        if len(jobs) == 1 or decomposition.size() > 1:  # under MPI: one after another
            per_event = {k: forward_gather(job)[1] for k, job in enumerate(jobs)}
        else:
            from anelastic.app.parallel import run_events

            jobs = [(c, k, d, False) for c, k, d, _ in jobs]
            per_event = run_events(forward_gather, jobs, scheduler, workers, progress=progress)
            per_event = per_event.per_event
        summary = {"sources": len(jobs), "per_source": [per_event[k] for k in sorted(per_event)]}
    if decomposition.is_root():
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def forward_gather(job: tuple) -> tuple[dict, dict]:
    """One forward run and its files (module docstring): ``job`` = (config, source index or
    None for all sources at once, output directory, progress). Module-level so that Dask can
    pickle it; returns (no kernels, summary)."""
    cfg, index, out, progress = job
    out.mkdir(parents=True, exist_ok=True)
    sources = list(cfg.sources) if index is None else [cfg.sources[index]]
    start = time.perf_counter()
    sim = Simulation(cfg.model, sources, cfg.receivers, cfg.time, cfg.physics, threads=cfg.threads)
    built = time.perf_counter()
    snapshot_step = cfg.time.nt // 2
    sim.advance(snapshot_step, progress=progress)
    field = sim.physics.field_specs()[0].name
    snapshot = sim.wavefield(field)
    seis = sim.run(progress=progress)
    done = time.perf_counter()
    summary = _forward_summary(cfg, sim, len(sources), built - start, done - built)
    if decomposition.is_root():  # under MPI every rank holds the gathered results
        _write_forward_files(cfg, sources, out, seis, snapshot, field, snapshot_step)
    return {}, summary


def _write_forward_files(cfg, sources, out: Path, seis, snapshot, field: str, step: int) -> None:
    """seismograms.npz / .mseed / sac/, wavefield.png (``snapshot`` of ``field`` at ``step``),
    seismograms.png."""
    seis.save_npz(out / "seismograms.npz")
    seis.write(out / "seismograms.mseed", "MSEED", cfg.origin_time, cfg.stations)
    (out / "sac").mkdir(exist_ok=True)
    seis.write(out / "sac" / "seismograms.sac", "SAC", cfg.origin_time, cfg.stations)
    positions = np.array([s.position for s in sources])
    plot.wavefield_png(
        snapshot, cfg.model.grid, out / "wavefield.png",
        f"{field} at t = {step * cfg.time.dt:.3f} s", positions, cfg.receivers.positions,
    )  # fmt: skip
    plot.components_png(seis, out / "seismograms.png", positions[0])


def _forward_summary(cfg, sim: Simulation, sources: int, setup: float, run: float) -> dict:
    fit = getattr(sim.physics, "fit", None)
    return {
        "sls_fit_max_rel_error": None if fit is None else round(fit.max_rel_error, 5),
        "setup_seconds": round(setup, 3),
        "run_seconds": round(run, 3),
        "nt": cfg.time.nt,
        "grid": list(cfg.model.grid.shape),
        "sources": sources,
        "mpi_ranks": decomposition.size(),
        "files": ["seismograms.npz", "seismograms.mseed", "sac/", "wavefield.png",
                  "seismograms.png"],
    }  # fmt: skip


def run_kernel(
    config_path: Path,
    out: Path,
    storage: str | None = None,
    memory_budget: str | None = None,
    chunk: int | None = None,
    store: Path | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> dict:
    """Everything of ``anelastic kernel`` (arguments override the config's [kernel] section).
    Under MPI the events run one after another, each decomposed over all ranks, and rank 0
    writes the outputs."""
    cfg = load_config(config_path)
    if cfg.kernel is None:
        raise ValueError(f"{config_path} has no [kernel] section (misfit, observed data)")
    settings = _settings(cfg, storage, memory_budget, chunk, store or out / "store")
    check_kernel_run(cfg.model, cfg.receivers, cfg.time, cfg.physics, settings)
    events = build_events(cfg)  # observed files read and checked; nothing simulated yet
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    jobs = [(event, _event_settings(settings, k, len(events))) for k, event in enumerate(events)]
    if len(jobs) == 1 or decomposition.size() > 1:
        total, per_event = _events_in_turn(jobs, progress and decomposition.is_root())
    else:
        from anelastic.app.parallel import run_events

        result = run_events(event_task, jobs, scheduler=scheduler, n_workers=workers)
        total, per_event = result.total, result.per_event
    summary = {
        "config": str(config_path),
        "events": len(events),
        "storage": settings.storage.value,
        "misfit": float(sum(s["misfit"] for s in per_event.values())),
        "seconds": round(time.perf_counter() - start, 3),
        "per_event": [per_event[k] for k in sorted(per_event)],
    }
    if decomposition.is_root():
        write_outputs(out, total, cfg, summary)
    return summary


def _events_in_turn(jobs: list, progress: bool) -> tuple[dict, dict]:
    """Each event in this process (group of MPI ranks), one after another; the kernels summed."""
    total: dict[str, np.ndarray] = {}
    per_event = {}
    for k, job in enumerate(jobs):
        arrays, per_event[k] = event_task(job, progress=progress)
        for name, array in arrays.items():
            total[name] = total[name] + array if name in total else array
    return total, per_event


def _settings(cfg: RunConfig, storage, memory_budget, chunk, store: Path) -> KernelSettings:
    section = cfg.kernel
    budget = memory_budget if memory_budget is not None else section.memory_budget
    return KernelSettings(
        misfit=section.misfit,
        storage=Storage(storage) if storage is not None else section.storage,
        chunk=chunk if chunk is not None else section.chunk,
        memory_budget=parse_bytes(budget if budget is not None else DEFAULT_BUDGET),
        store=store,
        threads=cfg.threads,
    )


def _event_settings(settings: KernelSettings, index: int, count: int) -> KernelSettings:
    """One snapshot store per event; one thread per event when events run in parallel on Dask
    (under MPI they run in turn, each on every rank's threads)."""
    store = settings.store / f"event_{index:03d}" if settings.store is not None else None
    threads = settings.threads if count == 1 or decomposition.size() > 1 else 1
    return replace(settings, store=store, threads=threads)


def build_events(cfg: RunConfig) -> list[Event]:
    """One Event per source with its observed data: the event's recorded file, read and
    checked now, or the ``[observed_model]`` to simulate when the event runs."""
    events = []
    for k, source in enumerate(cfg.sources):
        if cfg.kernel.observed:
            observed = read_observed(cfg.kernel.observed[k], cfg)
        else:
            observed = SyntheticObserved(cfg.observed_model)
        events.append(Event(cfg.model, [source], cfg.receivers, cfg.time, cfg.physics, observed))
    return events


def read_observed(path: Path, cfg: RunConfig) -> Seismograms:
    """One event's observed data: a Seismograms ``.npz``, or files ObsPy reads (MiniSEED,
    SAC, ...; ``path`` may be a glob) matched to the receivers, cut and resampled to the run's
    time axis (:func:`anelastic.formats.read_observed`); errors name the file."""
    from anelastic.formats import read_observed as read_with_obspy

    if path.suffix == ".npz":
        if not path.is_file():
            raise FileNotFoundError(f"observed data file {path} does not exist")
        try:
            observed = Seismograms.load_npz(path)
        except (OSError, ValueError, KeyError) as err:
            raise ValueError(f"{path} is not a readable Seismograms .npz file: {err}") from None
    else:
        files = (
            sorted(path.parent.glob(path.name)) if any(c in path.name for c in "*?[") else [path]
        )
        if not files:
            raise FileNotFoundError(f"no observed data file matches {path}")
        observed = read_with_obspy(
            files, cfg.receivers, cfg.time.dt, cfg.time.nt, cfg.origin_time, cfg.stations
        )
    check_observed(observed, cfg.receivers, cfg.time, source=str(path))
    return observed


def event_task(job: tuple[Event, KernelSettings], progress: bool = False):
    """(kernels + gradients, summary) of one event; module-level so Dask can pickle it."""
    event, settings = job
    result = compute_kernels(event, settings, progress=progress)
    arrays = dict(result.kernels)
    arrays.update({GRADIENT_PREFIX + k: v for k, v in result.gradients.items()})
    return arrays, _jsonable(result.summary)


def _jsonable(summary: dict) -> dict:
    return json.loads(json.dumps(summary, default=float))


# Units of the misfit chi for pressure data (Pa): sum dt (P s - P d)^2, dT^2, ln(A/A)^2.
CHI_UNITS = {MisfitKind.WAVEFORM: "Pa2 s", MisfitKind.CC_TRAVELTIME: "s2",
             MisfitKind.LOG_AMPLITUDE: "1"}  # fmt: skip
PARAMETER_UNITS = {"vp": "m s-1", "vs": "m s-1", "rho": "kg m-3", "qp": "1", "qs": "1"}


def _cf_attributes(name: str, chi: str) -> dict:
    """CF ``units`` and ``long_name`` of a kernel density or a per-cell gradient."""
    if name.startswith(GRADIENT_PREFIX):
        parameter = name[len(GRADIENT_PREFIX) :]
        unit = PARAMETER_UNITS.get(parameter, "1")
        units = chi if unit == "1" else f"{chi} ({unit})-1"
        return {"units": units, "long_name": f"derivative of the misfit with respect to "
                f"{parameter} in each cell"}  # fmt: skip
    return {"units": f"{chi} m-3", "long_name": f"{name[2:]} sensitivity kernel density "
            f"(delta chi = integral of {name} delta {name[2:]} / {name[2:]} dV)"}  # fmt: skip


def write_outputs(out: Path, arrays: dict[str, np.ndarray], cfg: RunConfig, summary: dict) -> None:
    """npy per array, kernels.nc (xarray), kernels.png, summary.json."""
    import xarray as xr

    grid = cfg.model.grid
    for name, array in arrays.items():
        np.save(out / f"{name}.npy", array)
    dims = grid.axis_names
    coords = {
        a: (
            a,
            grid.coordinates(k),
            {"units": "m", "long_name": f"{a} coordinate", "axis": a.upper()},
        )
        for k, a in enumerate(dims)
    }
    chi = CHI_UNITS[cfg.kernel.misfit.kind]
    variables = {
        name: (dims, np.asarray(a), _cf_attributes(name, chi)) for name, a in arrays.items()
    }
    dataset = xr.Dataset(
        variables,
        coords=coords,
        attrs={"Conventions": "CF-1.8", "storage": summary["storage"],
               "events": summary["events"], "misfit": cfg.kernel.misfit.kind.value,
               "misfit_units": chi,
               "definition": "delta chi = sum K_m (delta m / m) dV; dchi_d<m>: per cell"},
    )  # fmt: skip
    dataset.to_netcdf(out / "kernels.nc", engine="scipy")  # netCDF3: no HDF5 library needed
    kernels = [(name, a) for name, a in sorted(arrays.items()) if name.startswith("K_")]
    sources = np.array([s.position for s in cfg.sources])
    plot.maps_png(
        kernels, grid, out / "kernels.png", sources, cfg.receivers.positions,
        units=f"{chi} m-3",
    )  # fmt: skip
    summary["files"] = sorted(p.name for p in out.iterdir() if p.is_file()) + ["summary.json"]
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
