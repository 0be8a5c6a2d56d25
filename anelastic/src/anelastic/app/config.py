"""TOML run configuration -> frozen objects (model, sources, receivers, time, physics).

Sections (every key is checked; an unknown key is an error naming the allowed ones)::

    [model]      type = "homogeneous" | "layered" | "gaussian" | "checkerboard" | "file" |
                 "segy" | "netcdf"
                 shape, spacing, vp, vs, rho, qp, qs, f_ref     (path for "file")
                 center, radius, relative = {vp = 0.1}          (gaussian)
                 cell_size, relative                            (checkerboard)
                 [[model.layers]] depth, vp, vs, rho, qp, qs    (layered)
                 files = {vp = "vp.segy", rho = "rho.segy"}, file_spacing = [dx, dz],
                 file_origin (segy: traces along x, samples along depth; the other
                 parameters from vp, vs, rho, qp, qs values)
                 path, variables = {vp = "vp", qp = "Q"}  (netcdf: the file's coordinates)
                 segy and netcdf models are interpolated onto the grid of shape, spacing
    [[sources]]  position, kind = "pressure"|"force"|"moment", wavelet = "ricker"|
                 "gaussian_derivative"|"array", f0, delay, amplitude, direction, moment,
                 file (.npy samples), sample_dt        ([source] is accepted for one source)
    [receivers]  positions = [[x, z], ...] or start, stop, count; components = ["p", "vx"];
                 stations = ["S01", ...] (SEED station codes; default R0000, R0001, ...)
    [time]       dt, nt, origin_time = "2026-03-01T12:00:00Z" (start of the records)
    [physics]    kind = "viscoacoustic"|"viscoelastic", space_order, boundary = "cpml"|"sponge",
                 pml_width, n_sls, band = [fmin, fmax], free_surface, dtype, threads
    [kernel]     misfit = "waveform"|"cc_traveltime"|"log_amplitude", window = [t0, t1],
                 taper (fraction), band = [fmin, fmax] (zero-phase band-pass), storage =
                 "checkpoint"|"full"|"reverse"|"dispersion-only", chunk, memory_budget = "2GiB",
                 observed = ["event0.npz", "event1/*.sac", "event2.mseed", ...] (one entry
                 per source/event: a Seismograms .npz, or files ObsPy reads, a glob allowed)
    [observed_model]  the model that makes synthetic observed data (keys of [model]), instead of
                 observed files

Each source is one event of a kernel run; the kernels of all events are summed.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from anelastic import model as models
from anelastic.acquisition import (
    Component,
    Receivers,
    Source,
    SourceKind,
    Wavelet,
    WaveletKind,
    receiver_line,
)
from anelastic.forward.simulation import TimeAxis
from anelastic.kernel.inputs import Storage
from anelastic.kernel.misfit import BandPass, Misfit, MisfitKind, TimeWindow
from anelastic.kernel.schedule import parse_bytes
from anelastic.physics import BoundaryKind, PhysicsConfig, PhysicsKind

SECTIONS = {
    "model",
    "source",
    "sources",
    "receivers",
    "time",
    "physics",
    "kernel",
    "observed_model",
}
KERNEL_KEYS = {"misfit", "window", "taper", "band", "storage", "chunk", "memory_budget", "observed"}
MODEL_KEYS = {
    "type", "shape", "spacing", "origin", "vp", "vs", "rho", "qp", "qs", "f_ref", "path",
    "center", "radius", "relative", "cell_size", "layers", "files", "file_spacing",
    "file_origin", "variables",
}  # fmt: skip
LAYER_KEYS = {"depth", "vp", "vs", "rho", "qp", "qs"}
SOURCE_KEYS = {
    "position", "kind", "wavelet", "f0", "delay", "amplitude", "direction", "moment", "file",
    "sample_dt",
}  # fmt: skip
RECEIVER_KEYS = {"positions", "start", "stop", "count", "components", "stations"}
TIME_KEYS = {"dt", "nt", "origin_time"}
PHYSICS_KEYS = {
    "kind", "space_order", "boundary", "pml_width", "n_sls", "band", "free_surface", "dtype",
    "threads",
}  # fmt: skip


@dataclass(frozen=True)
class KernelSection:
    """The [kernel] section: misfit and storage of a kernel run, where observed data come from."""

    misfit: Misfit
    storage: Storage = Storage.CHECKPOINT
    chunk: int | None = None
    memory_budget: int | None = None
    observed: tuple[Path, ...] = ()


@dataclass(frozen=True, eq=False)
class RunConfig:
    model: models.Model
    sources: tuple[Source, ...]
    receivers: Receivers
    time: TimeAxis
    physics: PhysicsConfig
    threads: int | None = None
    kernel: KernelSection | None = None
    observed_model: models.Model | None = None
    origin_time: str | None = None  # ISO time of the first sample; None: 1970-01-01
    stations: tuple[str, ...] | None = None  # SEED station code per receiver


def load_config(path: str | Path) -> RunConfig:
    """Parse and validate a TOML file (relative paths resolve against its directory)."""
    path = Path(path)
    with open(path, "rb") as handle:
        try:
            raw = tomllib.load(handle)
        except tomllib.TOMLDecodeError as err:
            raise ValueError(f"{path}: invalid TOML: {err}") from err
    return parse_config(raw, base=path.parent)


def parse_config(raw: dict, base: Path = Path(".")) -> RunConfig:
    _check_keys(raw, SECTIONS, "top level")
    for required in ("model", "receivers", "time"):
        if required not in raw:
            raise ValueError(f"config needs a [{required}] section")
    if ("source" in raw) == ("sources" in raw):
        raise ValueError("config needs exactly one of [source] or [[sources]]")
    model = _parse_model(raw["model"], base)
    source_tables = [raw["source"]] if "source" in raw else raw["sources"]
    sources = tuple(_parse_source(s, base) for s in source_tables)
    receivers = _parse_receivers(raw["receivers"])
    stations = _parse_stations(raw["receivers"].get("stations"), receivers.count)
    _check_keys(raw["time"], TIME_KEYS, "[time]")
    time = TimeAxis(float(_need(raw["time"], "dt", "[time]")), _need(raw["time"], "nt", "[time]"))
    origin_time = _parse_origin_time(raw["time"].get("origin_time"))
    physics, threads = _parse_physics(raw.get("physics", {}))
    kernel = _parse_kernel(raw["kernel"], base, len(sources)) if "kernel" in raw else None
    observed_model = _parse_model(raw["observed_model"], base) if "observed_model" in raw else None
    if kernel is not None and not kernel.observed and observed_model is None:
        raise ValueError("a [kernel] run needs observed data: [kernel] observed = [...] files or "
                         "an [observed_model] section")  # fmt: skip
    if observed_model is not None and observed_model.grid != model.grid:
        raise ValueError("[observed_model] must have the same grid as [model]")
    return RunConfig(
        model, sources, receivers, time, physics, threads, kernel, observed_model, origin_time,
        stations,
    )  # fmt: skip


def _parse_stations(value, count: int) -> tuple[str, ...] | None:
    if value is None:
        return None
    codes = tuple(str(v) for v in value)
    if len(codes) != count:
        raise ValueError(f"[receivers] stations names {len(codes)} codes for {count} receivers")
    bad = [c for c in codes if not (1 <= len(c) <= 5 and c.isalnum())]
    if bad or len(set(codes)) != len(codes):
        raise ValueError(
            f"[receivers] stations must be distinct SEED station codes (1-5 letters or digits); "
            f"got {sorted(set(bad)) or 'duplicates'}"
        )
    return codes


def _parse_origin_time(value) -> str | None:
    if value is None:
        return None
    from obspy import UTCDateTime

    try:
        return str(UTCDateTime(str(value)))
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"[time] origin_time {value!r} is not a time; write it like "
            f'"2026-03-01T12:00:00Z" ({err})'
        ) from None


def _parse_kernel(table: dict, base: Path, n_events: int) -> KernelSection:
    _check_keys(table, KERNEL_KEYS, "[kernel]")
    window = table.get("window")
    band = table.get("band")
    misfit = Misfit(
        _enum(MisfitKind, table.get("misfit", "waveform"), "misfit"),
        TimeWindow(float(window[0]), float(window[1]), float(table.get("taper", 0.1)))
        if window is not None
        else None,
        BandPass(float(band[0]), float(band[1])) if band is not None else None,
    )
    observed = tuple(base / str(p) for p in table.get("observed", []))
    if observed and len(observed) != n_events:
        raise ValueError(
            f"[kernel] observed lists {len(observed)} file(s) for {n_events} source(s): give one "
            "Seismograms .npz per source (event)"
        )
    budget = table.get("memory_budget")
    return KernelSection(
        misfit,
        _enum(Storage, table.get("storage", "checkpoint"), "storage"),
        int(table["chunk"]) if "chunk" in table else None,
        parse_bytes(budget) if budget is not None else None,
        observed,
    )


def _check_keys(table: dict, allowed: set[str], where: str) -> None:
    if not isinstance(table, dict):
        raise ValueError(f"{where} must be a table")
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in {where}; allowed: {sorted(allowed)}")


def _need(table: dict, key: str, where: str):
    if key not in table:
        raise ValueError(f"{where} needs '{key}'")
    return table[key]


def _parse_model(table: dict, base: Path) -> models.Model:
    _check_keys(table, MODEL_KEYS, "[model]")
    kind = table.get("type", "homogeneous")
    if kind == "file":
        return models.Model.load(base / _need(table, "path", "[model]"))
    if kind in ("segy", "netcdf"):
        return _file_model(kind, table, base)
    grid = _grid(table)
    f_ref = float(table.get("f_ref", 10.0))
    if kind == "layered":
        layers = [dict(layer) for layer in _need(table, "layers", "[model]")]
        for layer in layers:
            _check_keys(layer, LAYER_KEYS, "[[model.layers]]")
        depths = [float(layer.pop("depth")) for layer in layers]
        return models.layered(grid, depths, layers, f_ref)
    background = models.homogeneous(
        grid,
        vp=float(_need(table, "vp", "[model]")),
        rho=float(_need(table, "rho", "[model]")),
        vs=float(table.get("vs", 0.0)),
        qp=float(table.get("qp", np.inf)),
        qs=float(table.get("qs", np.inf)),
        f_ref=f_ref,
    )
    relative = {k: float(v) for k, v in table.get("relative", {}).items()}
    if kind == "homogeneous":
        return background
    if kind == "gaussian":
        center = tuple(float(c) for c in _need(table, "center", "[model]"))
        return models.gaussian_anomaly(background, center, float(table["radius"]), relative)
    if kind == "checkerboard":
        return models.checkerboard(
            background, float(_need(table, "cell_size", "[model]")), relative
        )
    raise ValueError(
        f"unknown model type {kind!r}; use homogeneous, layered, gaussian, checkerboard or file"
    )


def _grid(table: dict) -> models.Grid:
    return models.Grid(
        tuple(_need(table, "shape", "[model]")),
        tuple(_need(table, "spacing", "[model]")),
        tuple(table["origin"]) if "origin" in table else None,
    )


def _file_model(kind: str, table: dict, base: Path) -> models.Model:
    """A SEG-Y or netCDF model interpolated onto the [model] grid; parameters the file does
    not give take the table's values (vs 0, Q infinite by default)."""
    from anelastic import formats

    grid = _grid(table)
    if kind == "segy":
        files = dict(_need(table, "files", "[model]"))
        arrays = {name: formats.read_segy(base / str(path)) for name, path in files.items()}
        first = next(iter(arrays.values()))
        spacing = tuple(_need(table, "file_spacing", "[model]"))
        origin = tuple(table.get("file_origin", (0.0,) * first.ndim))
        axes = [o + h * np.arange(n) for o, h, n in zip(origin, spacing, first.shape, strict=True)]
    else:
        variables = dict(_need(table, "variables", "[model]"))
        path = base / str(_need(table, "path", "[model]"))
        found, axes = formats.read_netcdf(path, list(variables.values()))
        arrays = {name: found[var] for name, var in variables.items()}
    unknown = sorted(set(arrays) - set(models.FIELDS))
    if unknown:
        raise ValueError(f"[model] files/variables name unknown parameter(s) {unknown}")
    if any(a.shape != next(iter(arrays.values())).shape for a in arrays.values()):
        raise ValueError("[model] files/variables must all have one shape")
    on_grid = formats.grid_model_arrays(
        arrays, axes, [grid.coordinates(k) for k in range(grid.ndim)]
    )
    defaults = {"vs": 0.0, "qp": np.inf, "qs": np.inf}
    values = {
        name: on_grid[name]
        if name in on_grid
        else float(table.get(name, defaults.get(name, np.nan)))
        for name in models.FIELDS
    }
    missing = [n for n, v in values.items() if not isinstance(v, np.ndarray) and np.isnan(v)]
    if missing:
        raise ValueError(f"[model] needs a value or a file for {missing}")
    return models.Model(grid, f_ref=float(table.get("f_ref", 10.0)), **values)


def _parse_source(table: dict, base: Path) -> Source:
    _check_keys(table, SOURCE_KEYS, "[[sources]]")
    wavelet_kind = _enum(WaveletKind, table.get("wavelet", "ricker"), "wavelet")
    samples = np.load(base / table["file"]) if "file" in table else None
    wavelet = Wavelet(
        wavelet_kind,
        float(table.get("f0", 10.0)),
        float(table["delay"]) if "delay" in table else None,
        float(table.get("amplitude", 1.0)),
        samples,
        float(table["sample_dt"]) if "sample_dt" in table else None,
    )
    return Source(
        tuple(_need(table, "position", "[[sources]]")),
        wavelet,
        _enum(SourceKind, table.get("kind", "pressure"), "source kind"),
        tuple(table["direction"]) if "direction" in table else None,
        np.asarray(table["moment"], dtype=float) if "moment" in table else None,
    )


def _parse_receivers(table: dict) -> Receivers:
    _check_keys(table, RECEIVER_KEYS, "[receivers]")
    if "positions" in table:
        positions = np.asarray(table["positions"], dtype=float)
    else:
        positions = receiver_line(
            tuple(_need(table, "start", "[receivers]")),
            tuple(_need(table, "stop", "[receivers]")),
            int(_need(table, "count", "[receivers]")),
        )
    components = tuple(_enum(Component, c, "component") for c in table.get("components", ["p"]))
    return Receivers(positions, components)


def _parse_physics(table: dict) -> tuple[PhysicsConfig, int | None]:
    _check_keys(table, PHYSICS_KEYS, "[physics]")
    band = table.get("band")
    config = PhysicsConfig(
        kind=_enum(PhysicsKind, table.get("kind", "viscoacoustic"), "physics kind"),
        space_order=int(table.get("space_order", 8)),
        boundary=_enum(BoundaryKind, table.get("boundary", "cpml"), "boundary"),
        pml_width=int(table.get("pml_width", 20)),
        n_sls=int(table.get("n_sls", 3)),
        band=(float(band[0]), float(band[1])) if band is not None else None,
        free_surface=bool(table.get("free_surface", False)),
        dtype=str(table.get("dtype", "float32")),
    )
    threads = int(table["threads"]) if "threads" in table else None
    return config, threads


def _enum(cls, value: str, what: str):
    try:
        return cls(str(value).lower())
    except ValueError:
        allowed = [m.value for m in cls]
        raise ValueError(f"unknown {what} {value!r}; allowed: {allowed}") from None
