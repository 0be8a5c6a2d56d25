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
