"""File formats seismologists use, in and out: SEED-named seismograms (MiniSEED, SAC), observed
data from any ObsPy-readable file, velocity models from SEG-Y and netCDF.

Seismograms out (:func:`to_stream`): one trace per receiver and component with SEED codes:
network ``XX`` (SEED's code for an unregistered network, changeable), station ``R0000``...
(the receiver's index), location ``00``, and a channel of band code + instrument code +
orientation. The band code follows the sampling rate (SEED appendix A, the short-period
column: F >= 1000 Hz, C >= 250, E >= 80, S >= 10, M > 1, L ~ 1, V ~ 0.1, U below); the
instrument code is ``X`` (a synthetic, as SPECFEM writes them) for particle velocity with
orientation ``X``/``Y``/``Z`` (the model's axes), and ``DH`` (pressure, hydrophone) for
pressure. The start time is the run's ``origin_time``. SAC files carry the receiver's
coordinates in metres in ``user0``/``user1``/``user2`` (x, y, z; ``kuser0`` = "x y z m")
and the quantity in ``kuser1`` (SAC has no Cartesian station fields).

Observed data in (:func:`read_observed`): any file ObsPy reads; traces are matched to
receivers by station code (``R0000``... or the codes given) or, for SAC files, by the
coordinates in ``user0..2``; each is cut to the run's time axis from ``origin_time``
(zero-padded) and resampled onto dt when its samples are not the run's (ObsPy's Lanczos
``interpolate``, after a zero-phase low-pass below the new Nyquist when decimating); a
receiver with no trace is an error naming it.

Models in (:func:`grid_model_from_segy`, :func:`grid_model_from_netcdf`): each parameter
array on its own regular grid, interpolated (bilinear / trilinear) onto the run's grid.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from anelastic.acquisition import Component, Receivers, Seismograms

NETWORK = "XX"
LOCATION = "00"
# (minimum sampling rate in Hz, band code): SEED's short-period band codes.
_BANDS = ((1000.0, "F"), (250.0, "C"), (80.0, "E"), (10.0, "S"), (1.0001, "M"), (0.5, "L"),
          (0.05, "V"), (0.0, "U"))  # fmt: skip
_QUANTITY = {
    Component.P: "pressure (Pa)",
    Component.VX: "particle velocity x (m/s)",
    Component.VY: "particle velocity y (m/s)",
    Component.VZ: "particle velocity z (m/s)",
}


def band_code(dt: float) -> str:
    """SEED band code for sampling interval ``dt`` seconds."""
    rate = 1.0 / dt
    return next(code for minimum, code in _BANDS if rate >= minimum)


def channel_code(component: Component, dt: float) -> str:
    """Band + instrument + orientation: e.g. ``CXZ`` (vz at 500 Hz), ``CDH`` (pressure)."""
    band = band_code(dt)
    if component is Component.P:
        return f"{band}DH"
    return f"{band}X{component.value[1].upper()}"


def station_code(index: int) -> str:
    return f"R{index:04d}"


def to_stream(seismograms: Seismograms, origin_time=None, network: str = NETWORK, stations=None):
    """An ObsPy Stream, one trace per receiver and component, SEED-named (module docstring).

    origin_time: anything ``obspy.UTCDateTime`` takes (default 1970-01-01); stations: codes
    per receiver (default R0000, R0001, ...).
    """
    from obspy import Stream, Trace, UTCDateTime
    from obspy.core import AttribDict

    start = UTCDateTime(origin_time) if origin_time is not None else UTCDateTime(0)
    positions = seismograms.positions
    traces = []
    for comp, data in seismograms.data.items():
        for i in range(data.shape[1]):
            header = {
                "network": network,
                "station": stations[i] if stations is not None else station_code(i),
                "location": LOCATION,
                "channel": channel_code(comp, seismograms.dt),
                "delta": seismograms.dt,
                "starttime": start,
            }
            trace = Trace(np.ascontiguousarray(data[:, i], np.float32), header)
            xyz = _xyz(positions[i])
            trace.stats.sac = AttribDict(
                {
                    "user0": xyz[0],
                    "user1": xyz[1],
                    "user2": xyz[2],
                    "kuser0": "x y z m",
                    "kuser1": _QUANTITY[comp][:8],
                }  # fmt: skip
            )
            traces.append(trace)
    return Stream(traces)


def _xyz(position: np.ndarray) -> tuple[float, float, float]:
    """(x, y, z) metres of a 2-D (x, z) or 3-D (x, y, z) position."""
    if len(position) == 2:
        return float(position[0]), 0.0, float(position[1])
    return float(position[0]), float(position[1]), float(position[2])


def write_seismograms(
    seismograms: Seismograms,
    path: str | Path,
    format: str = "MSEED",
    origin_time=None,
    stations: Sequence[str] | None = None,
) -> list[Path]:
    """MiniSEED (one file) or SAC (one file per trace, ``<stem>.<SEED id>.sac``) through
    ObsPy; returns the files written."""
    stream = to_stream(seismograms, origin_time, stations=stations)
    path = Path(path)
    if format.upper() == "SAC":
        written = []
        for trace in stream:
            out = path.with_name(f"{path.stem}.{trace.id}.sac")
            trace.write(str(out), format="SAC")
            written.append(out)
        return written
    stream.write(str(path), format=format.upper())
    return [path]


def read_observed(
    paths: str | Path | Sequence[str | Path],
    receivers: Receivers,
    dt: float,
    nt: int,
    origin_time=None,
    stations: Sequence[str] | None = None,
    tolerance: float = 1.0,
) -> Seismograms:
    """Observed traces [nt, nrec] per component of ``receivers`` from ObsPy-readable files.

    A trace belongs to receiver i when its station code is the receiver's (``stations`` or
    R0000...), or when its SAC ``user0..2`` coordinates lie within ``tolerance`` metres of
    the receiver; its component comes from the channel's last letters (``DH``/``P``:
    pressure; ``X``/``Y``/``Z`` or ``E``/``N``/``Z``: velocity). Each trace is cut to
    [origin_time, origin_time + (nt - 1) dt] (zero outside the record) and resampled to dt.
    Raises naming the receivers and components with no trace.
    """
    from obspy import Stream, UTCDateTime, read

    files = [paths] if isinstance(paths, (str, Path)) else list(paths)
    stream = Stream()
    for path in files:
        if not Path(path).is_file():
            raise FileNotFoundError(f"observed data file {path} does not exist")
        try:
            stream += read(str(path))
        except Exception as err:  # ObsPy raises TypeError/ValueError/its own for a bad file
            raise ValueError(f"ObsPy cannot read {path} as seismic data: {err}") from None
    start = UTCDateTime(origin_time) if origin_time is not None else UTCDateTime(0)
    codes = (
        list(stations)
        if stations is not None
        else [station_code(i) for i in range(receivers.count)]
    )
    data = {c: np.zeros((nt, receivers.count)) for c in receivers.components}
    found = {c: np.zeros(receivers.count, bool) for c in receivers.components}
    for trace in stream:
        comp = _component_of(trace.stats.channel)
        index = _receiver_of(trace, codes, receivers.positions, tolerance)
        if comp not in data or index is None:
            continue
        data[comp][:, index] = _on_time_axis(trace, start, dt, nt)
        found[comp][index] = True
    missing = [
        f"{codes[i]} ({comp.value})" for comp, ok in found.items() for i in np.flatnonzero(~ok)
    ]
    if missing:
        raise ValueError(
            f"no observed trace for {len(missing)} receiver component(s): "
            f"{', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''} "
            f"(matched by station code or SAC user0..2 coordinates in {', '.join(map(str, files))})"
        )
    return Seismograms(dt, receivers.positions.copy(), data)


def _component_of(channel: str) -> Component | None:
    channel = channel.upper()
    if channel.endswith("DH") or channel == "P" or channel.endswith("P"):
        return Component.P
    orientation = channel[-1:]
    axis = {"X": "x", "E": "x", "Y": "y", "N": "y", "Z": "z"}.get(orientation)
    return Component(f"v{axis}") if axis else None


def _receiver_of(trace, codes: list[str], positions: np.ndarray, tolerance: float) -> int | None:
    if trace.stats.station in codes:
        return codes.index(trace.stats.station)
    sac = trace.stats.get("sac")
    if sac is None or "user0" not in sac:
        return None
    xyz = np.array([sac.get("user0", 0.0), sac.get("user1", 0.0), sac.get("user2", 0.0)])
    own = np.array([_xyz(p) for p in positions])
    distance = np.linalg.norm(own - xyz, axis=1)
    best = int(np.argmin(distance))
    return best if distance[best] <= tolerance else None


def _on_time_axis(trace, start, dt: float, nt: int) -> np.ndarray:
    """The trace on the run's samples ``start + n dt``, n < nt (zeros where it has no data):
    copied when it already has them, else resampled (Lanczos, after a zero-phase low-pass
    below the new Nyquist when decimating)."""
    trace = trace.copy()
    trace.data = np.asarray(trace.data, dtype=np.float64)
    offset = (trace.stats.starttime - start) / dt
    aligned = np.isclose(trace.stats.delta, dt, rtol=1e-9) and abs(offset - round(offset)) < 1e-6
    if aligned:
        first = int(round(offset))
    else:
        if trace.stats.delta < dt:
            trace.filter("lowpass", freq=0.4 / dt, zerophase=True)
        first = int(np.ceil(offset - 1e-9))
        trace.interpolate(1.0 / dt, method="lanczos", a=12, starttime=start + first * dt)
    out = np.zeros(nt)
    lo, hi = max(first, 0), min(first + trace.stats.npts, nt)
    if hi > lo:
        out[lo:hi] = trace.data[lo - first : hi - first]
    return out


def grid_model_arrays(
    arrays: Mapping[str, np.ndarray],
    source_axes: Sequence[np.ndarray],
    target_axes: Sequence[np.ndarray],
) -> dict[str, np.ndarray]:
    """Each array [*len(source_axes)] interpolated (multilinear) at the target grid's points;
    points outside the source grid take the nearest edge value."""
    from scipy.interpolate import RegularGridInterpolator

    mesh = np.meshgrid(*target_axes, indexing="ij")
    clipped = [np.clip(m, a[0], a[-1]) for m, a in zip(mesh, source_axes, strict=True)]
    points = np.stack([c.ravel() for c in clipped], axis=-1)
    out = {}
    for name, values in arrays.items():
        interpolate = RegularGridInterpolator(tuple(source_axes), np.asarray(values, float))
        out[name] = interpolate(points).reshape(mesh[0].shape)
    return out


def read_segy(path: str | Path) -> np.ndarray:
    """A SEG-Y file of one parameter as [ntraces, nsamples] (traces along x, samples along
    depth, as Marmousi's files are), read with segyio (``ignore_geometry``: no header
    sorting needed)."""
    try:
        import segyio
    except ImportError as err:
        raise ImportError("reading SEG-Y needs segyio: pip install segyio") from err
    if not Path(path).is_file():
        raise FileNotFoundError(f"SEG-Y file {path} does not exist")
    try:
        with segyio.open(str(path), ignore_geometry=True) as handle:
            return np.stack([np.asarray(t, float) for t in handle.trace])
    except (RuntimeError, ValueError, OSError) as err:
        raise ValueError(f"segyio cannot read {path}: {err}") from None


def read_netcdf(path: str | Path, names: Sequence[str]) -> tuple[dict[str, np.ndarray], list]:
    """Variables ``names`` of a netCDF file (xarray) and their coordinate axes (metres), in
    the variables' dimension order."""
    import xarray as xr

    if not Path(path).is_file():
        raise FileNotFoundError(f"netCDF file {path} does not exist")
    with xr.open_dataset(path) as data:
        absent = [n for n in names if n not in data]
        if absent:
            raise ValueError(f"{path} has no variable(s) {absent}; it has {list(data.data_vars)}")
        first = data[names[0]]
        axes = [np.asarray(data[d].values, float) for d in first.dims]
        return {n: np.asarray(data[n].transpose(*first.dims).values, float) for n in names}, axes
