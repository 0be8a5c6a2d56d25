"""Bad input is refused before any compute, with a message saying what would be right."""

import re

import numpy as np
import pytest
from conftest import small_problem

from anelastic.acquisition import Receivers, Source, ricker
from anelastic.app.config import parse_config
from anelastic.forward.simulation import Simulation, TimeAxis
from anelastic.physics import PhysicsConfig


def test_cfl_violation_reports_largest_stable_dt():
    model, sources, receivers, _, config = small_problem()
    with pytest.raises(ValueError, match="largest stable dt") as info:
        Simulation(model, sources, receivers, TimeAxis(5e-3, 10), config)
    limit = float(re.search(r"is ([0-9.e-]+) s", str(info.value)).group(1))
    # 4th-order staggered 2-D: dt_max = h / (v_max sqrt(2) (9/8 + 1/24)), v_max unrelaxed.
    vmax = Simulation(*small_problem()).physics.velocity_bounds()[1]
    assert limit == pytest.approx(10.0 / (vmax * np.sqrt(2) * (9 / 8 + 1 / 24)), rel=1e-5)
    assert vmax > 2000.0  # unrelaxed velocity above the f_ref velocity (dispersion)


def test_points_per_wavelength_warning_gives_the_number():
    model, _, receivers, time, config = small_problem()
    with pytest.warns(UserWarning, match=r"only 1\.60 grid points per minimum wavelength"):
        Simulation(model, [Source((300.0, 300.0), ricker(50.0))], receivers, time, config)


@pytest.mark.parametrize(
    "position, where",
    [((300.0, 750.0), "outside the grid"), ((300.0, -50.0), "inside the absorbing layer")],
)
def test_source_positions_checked(position, where):
    model, _, receivers, time, config = small_problem()
    with pytest.raises(ValueError, match=where):
        Simulation(model, [Source(position, ricker(15.0))], receivers, time, config)


def test_receiver_in_absorbing_layer_refused():
    model, sources, _, time, config = small_problem()
    with pytest.raises(ValueError, match="receiver 1 .* inside the absorbing layer"):
        Simulation(model, sources, Receivers(np.array([[10.0, 10.0], [-20.0, 5.0]])), time, config)


def test_physics_config_rejects_bad_choices():
    with pytest.raises(ValueError, match="space_order must be one of"):
        PhysicsConfig(space_order=5)


BASE_TOML = {
    "model": {"shape": [61, 61], "spacing": [10.0, 10.0], "vp": 2000.0, "rho": 2000.0},
    "source": {"position": [300.0, 300.0], "f0": 15.0},
    "receivers": {"positions": [[400.0, 300.0]]},
    "time": {"dt": 0.001, "nt": 100},
}


@pytest.mark.parametrize(
    "section, key, message",
    [
        ("model", "vpp", r"unknown key\(s\) \['vpp'\] in \[model\]"),
        ("time", "steps", r"unknown key\(s\) \['steps'\] in \[time\]"),
        ("source", "freq", r"unknown key\(s\) \['freq'\]"),
    ],
)
def test_unknown_config_key_refused(section, key, message):
    raw = {k: dict(v) for k, v in BASE_TOML.items()}
    raw[section][key] = 1
    with pytest.raises(ValueError, match=message):
        parse_config(raw)


def test_config_q_nonpositive_refused():
    raw = {k: dict(v) for k, v in BASE_TOML.items()}
    raw["model"]["qp"] = 0.0
    with pytest.raises(ValueError, match="qp must be > 0"):
        parse_config(raw)
