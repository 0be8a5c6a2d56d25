"""Formats in and out: SEED-named MiniSEED/SAC with origin time and coordinates, observed data
from ObsPy-readable files (matched, cut, resampled), SEG-Y and netCDF models."""

from __future__ import annotations

import numpy as np
import pytest
from obspy import UTCDateTime, read

from anelastic.acquisition import Component, Receivers, Seismograms
from anelastic.app.config import parse_config
from anelastic.formats import channel_code, read_observed

ORIGIN = "2026-03-01T12:00:00Z"
POSITIONS = np.array([[100.0, 20.0], [200.0, 20.0], [300.0, 20.0]])


def wavy(dt: float, nt: int, shift: float = 0.0) -> np.ndarray:
    """Smooth band-limited traces [nt, 3] (a 20 Hz Ricker per receiver)."""
    t = np.arange(nt)[:, None] * dt - shift
    centre = np.array([0.1, 0.15, 0.2])
    arg = (np.pi * 20.0 * (t - centre)) ** 2
    return (1 - 2 * arg) * np.exp(-arg)


def test_seed_codes_origin_time_and_sac_coordinates(tmp_path):
    seis = Seismograms(
        0.002, POSITIONS, {Component.P: wavy(0.002, 200), Component.VZ: wavy(0.002, 200)}
    )
    seis.write(tmp_path / "g.mseed", "MSEED", ORIGIN, ["ST1", "ST2", "ST3"])
    stream = read(str(tmp_path / "g.mseed"))
    assert {tr.id for tr in stream} >= {"XX.ST1.00.CDH", "XX.ST3.00.CXZ"}  # 500 Hz: band C
    assert all(tr.stats.starttime == UTCDateTime(ORIGIN) for tr in stream)
    files = seis.write(tmp_path / "g.sac", "SAC", ORIGIN)
    sac = read(str(files[1]))[0]
    assert (sac.stats.sac.user0, sac.stats.sac.user2) == (200.0, 20.0)
    assert channel_code(Component.VX, 0.05) == "SXX" and channel_code(Component.P, 0.0005) == "FDH"


def test_observed_mseed_is_matched_cut_and_resampled(tmp_path):
    """Traces recorded at 500 Hz starting 0.02 s after the origin, in a shuffled file, come
    back on a 1 kHz axis from the origin: equal to the same signal sampled there."""
    coarse = Seismograms(0.002, POSITIONS, {Component.P: wavy(0.002, 150, shift=-0.02)})
    stream = coarse.to_stream(UTCDateTime(ORIGIN) + 0.02)
    stream.reverse()
    stream.write(str(tmp_path / "obs.mseed"), format="MSEED")
    receivers = Receivers(POSITIONS)
    got = read_observed(tmp_path / "obs.mseed", receivers, 0.001, 320, ORIGIN)
    expected = wavy(0.001, 320)
    expected[:20] = 0.0  # before the record starts
    expected[20 + 299 :] = 0.0  # after it ends (0.02 + 149 x 0.002 s)
    error = np.abs(got.data[Component.P] - expected).max()
    assert error < 0.02 * np.abs(expected).max(), error


def test_observed_sac_matched_by_coordinates_and_missing_station_named(tmp_path):
    seis = Seismograms(0.001, POSITIONS, {Component.P: wavy(0.001, 100)})
    files = seis.write(tmp_path / "d.sac", "SAC", ORIGIN, ["A", "B", "C"])  # other codes
    receivers = Receivers(POSITIONS)
    got = read_observed(files, receivers, 0.001, 100, ORIGIN)
    np.testing.assert_allclose(got.data[Component.P], wavy(0.001, 100).astype(np.float32))
    with pytest.raises(ValueError, match=r"no observed trace for 1 receiver.*R0002 \(p\)"):
        read_observed(
            files[:2], receivers, 0.001, 100, ORIGIN, stations=["R0000", "R0001", "R0002"]
        )


def _model_config(model_table: str) -> dict:
    import tomllib

    text = f"""
[model]
{model_table}
shape = [41, 21]
spacing = [5.0, 5.0]
rho = 2000.0
[source]
position = [100.0, 50.0]
[receivers]
positions = [[50.0, 20.0]]
[time]
dt = 0.001
nt = 10
"""
    return tomllib.loads(text)


def test_segy_model_is_interpolated_onto_the_grid(tmp_path):
    import segyio

    vp = 1500.0 + 10.0 * np.arange(21)[:, None] + 2.0 * np.arange(11)[None, :]  # [x, z]
    segyio.tools.from_array2D(str(tmp_path / "vp.segy"), vp.astype(np.float32))
    raw = _model_config('type = "segy"\nfiles = {vp = "vp.segy"}\nfile_spacing = [10.0, 10.0]')
    model = parse_config(raw, base=tmp_path).model
    # On the file's nodes (every other grid point) the values are the file's; between them,
    # the linear interpolation of the neighbours.
    np.testing.assert_allclose(model.vp[::2, ::2], vp, rtol=1e-6)
    np.testing.assert_allclose(model.vp[1, 0], 0.5 * (vp[0, 0] + vp[1, 0]), rtol=1e-6)
    assert np.all(model.rho == 2000.0) and np.all(np.isinf(model.qp))


def test_netcdf_model_and_clear_errors(tmp_path):
    import xarray as xr

    x, z = np.arange(0, 201, 20.0), np.arange(0, 101, 20.0)
    vp = 2000.0 + 0.5 * x[:, None] + z[None, :]
    xr.Dataset({"velocity": (("x", "z"), vp)}, coords={"x": x, "z": z}).to_netcdf(
        tmp_path / "m.nc", engine="scipy"
    )
    raw = _model_config('type = "netcdf"\npath = "m.nc"\nvariables = {vp = "velocity"}')
    model = parse_config(raw, base=tmp_path).model
    grid_x = np.arange(41) * 5.0
    np.testing.assert_allclose(model.vp[:, 0], 2000.0 + 0.5 * grid_x)  # linear: exact
    bad = _model_config('type = "netcdf"\npath = "m.nc"\nvariables = {vp = "speed"}')
    with pytest.raises(ValueError, match=r"no variable\(s\) \['speed'\]"):
        parse_config(bad, base=tmp_path)
    missing = _model_config('type = "segy"\nfiles = {vp = "none.segy"}\nfile_spacing = [1, 1]')
    with pytest.raises(FileNotFoundError, match="none.segy does not exist"):
        parse_config(missing, base=tmp_path)
