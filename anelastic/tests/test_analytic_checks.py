"""Accuracy against analytic solutions (the same functions `anelastic verify analytic` runs)."""

import json

import numpy as np
import pytest

from anelastic.app.cli import main
from anelastic.checks import solutions
from anelastic.checks.analytic import run_case, viscoacoustic_homogeneous_traces


@pytest.mark.parametrize("name", ["viscoacoustic_2d_homogeneous", "viscoacoustic_3d_homogeneous"])
def test_analytic_case_within_tolerance(name):
    result = run_case(name)
    assert result.relative_l2 <= result.tolerance, result


def test_q_from_spectral_ratio_matches_input_q():
    q_input = 50.0
    run = viscoacoustic_homogeneous_traces(dim=2, q=q_input)
    near, far = run.traces[:, 0], run.traces[:, 1]
    q = solutions.q_from_spectral_ratio(
        near, far, run.sim.time.dt, run.offsets[0], run.offsets[1], 2000.0, 5.0, 20.0, 2
    )
    assert q == pytest.approx(q_input, rel=0.10)


def test_attenuation_visible_in_traces():
    lossy = viscoacoustic_homogeneous_traces(dim=2, q=20.0).traces
    lossless = viscoacoustic_homogeneous_traces(dim=2, q=1e9).traces
    ratio = np.abs(lossy[:, 1]).max() / np.abs(lossless[:, 1]).max()
    # Far receiver (700 m, ~3.5 wavelengths at 10 Hz): exp(-pi f r / (v Q)) ~ 0.58 at Q = 20.
    assert 0.45 < ratio < 0.75


def test_verify_cli_json(capsys):
    code = main(["verify", "analytic", "--json", "--case", "viscoacoustic_2d_homogeneous"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    (case,) = report["cases"]
    assert set(case) >= {"name", "relative_l2", "tolerance"}
    assert "viscoacoustic" in case["name"] and "2d" in case["name"]
