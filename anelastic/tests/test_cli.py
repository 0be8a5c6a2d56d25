"""End-to-end command line: forward from TOML, demo."""

import json

import numpy as np
import pytest
from conftest import small_problem
from obspy import read

from anelastic.acquisition import Component, Seismograms
from anelastic.app.cli import main
from anelastic.app.demo import QP, run_demo
from anelastic.forward.simulation import Simulation

SMALL_TOML = """
[model]
type = "homogeneous"
shape = [61, 61]
spacing = [10.0, 10.0]
vp = 2000.0
rho = 2000.0
qp = 40.0
f_ref = 15.0

[[sources]]
position = [300.0, 300.0]
kind = "pressure"
wavelet = "ricker"
f0 = 15.0

[receivers]
positions = [[400.0, 300.0], [300.0, 450.0], [123.0, 77.0]]
components = ["p", "vx"]

[time]
dt = 0.001
nt = 200

[physics]
kind = "viscoacoustic"
space_order = 4
pml_width = 10
"""


def test_forward_cli_writes_outputs_equal_to_python_api(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text(SMALL_TOML)
    out = tmp_path / "out"
    assert main(["forward", str(config), "--out", str(out), "--no-progress"]) == 0
    for name in ("seismograms.npz", "seismograms.mseed", "wavefield.png", "seismograms.png"):
        assert (out / name).stat().st_size > 0
    seis = Seismograms.load_npz(out / "seismograms.npz")
    reference = Simulation(*small_problem()).run()
    for comp in (Component.P, Component.VX):
        assert np.array_equal(seis.data[comp], reference.data[comp])
    stream = read(str(out / "seismograms.mseed"))
    assert len(stream) == 6 and np.array_equal(stream[0].data, reference.data[Component.P][:, 0])
    assert json.loads((out / "summary.json").read_text())["nt"] == 200


def test_forward_cli_reports_bad_config(tmp_path, capsys):
    config = tmp_path / "bad.toml"
    config.write_text(SMALL_TOML.replace("nt = 200", "nt = 200\nsteps = 3"))
    assert main(["forward", str(config), "--out", str(tmp_path / "o")]) == 2
    assert "unknown key(s) ['steps'] in [time]" in capsys.readouterr().err


def test_demo_recovers_q_and_compares_kernels(tmp_path):
    summary = run_demo(tmp_path)
    assert summary["q_input"] == QP
    assert summary["q_recovered"] == pytest.approx(QP, rel=0.10)
    for name in summary["outputs"]:
        assert (tmp_path / name).stat().st_size > 0
    assert "kernel_alpha.png" in summary["outputs"]
    steps = {row["storage"]: row["time_steps"]["total"] for row in summary["storage_table"]}
    nt = summary["storage_table"][0]["time_steps"]["forward"]
    assert steps == {"checkpoint": 3 * nt, "dispersion-only": 4 * nt}
    # At Q = 30 the approximation misses the attenuation: a clearly different kernel.
    assert summary["kernel_rel_difference"] > 0.1


def test_forward_outputs_carry_seed_codes_origin_time_and_coordinates(tmp_path):
    """MiniSEED and SAC outputs read back with ObsPy: SEED codes (band C at 1 kHz... here
    dt = 1 ms: band F), the config's origin time and station codes, coordinates in SAC."""
    from obspy import UTCDateTime

    text = SMALL_TOML.replace("[time]\n", '[time]\norigin_time = "2026-03-01T12:00:00Z"\n')
    text = text.replace(
        'components = ["p", "vx"]', 'components = ["p", "vx"]\nstations = ["A1", "B2", "C3"]'
    )
    config = tmp_path / "run.toml"
    config.write_text(text)
    out = tmp_path / "out"
    assert main(["forward", str(config), "--out", str(out), "--no-progress"]) == 0
    stream = read(str(out / "seismograms.mseed"))
    assert {tr.id for tr in stream} == {
        f"XX.{s}.00.{c}" for s in ("A1", "B2", "C3") for c in ("FDH", "FXX")
    }
    assert all(tr.stats.starttime == UTCDateTime("2026-03-01T12:00:00Z") for tr in stream)
    sac = read(str(out / "sac" / "seismograms.XX.B2.00.FXX.sac"))[0]
    assert (sac.stats.sac.user0, sac.stats.sac.user2) == (300.0, 450.0)


def test_forward_per_source_writes_one_gather_per_source(tmp_path):
    text = SMALL_TOML.replace(
        "[[sources]]\n", "[[sources]]\nposition = [200.0, 200.0]\nf0 = 15.0\n\n[[sources]]\n", 1
    )
    config = tmp_path / "run.toml"
    config.write_text(text)
    out = tmp_path / "out"
    args = ["forward", str(config), "--out", str(out), "--no-progress", "--per-source"]
    assert main(args + ["--workers", "1"]) == 0
    single = Simulation(*small_problem()).run()  # the config's second source alone
    second = Seismograms.load_npz(out / "source_001" / "seismograms.npz")
    assert np.array_equal(second.data[Component.P], single.data[Component.P])
    first = Seismograms.load_npz(out / "source_000" / "seismograms.npz")
    assert not np.array_equal(first.data[Component.P], single.data[Component.P])
    assert json.loads((out / "summary.json").read_text())["sources"] == 2
