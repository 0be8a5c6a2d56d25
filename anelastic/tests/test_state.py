"""Solver state: bitwise save/restore and split-range stepping (what checkpoints rely on)."""

import numpy as np
import pytest
from conftest import small_problem

from anelastic.acquisition import Component
from anelastic.forward.simulation import Simulation, SimulationBlowUp
from anelastic.forward.state import SolverState
from anelastic.physics import FieldRole


def _run_reference():
    sim = Simulation(*small_problem())
    seis = sim.run()
    return sim, seis, sim.state()


def test_state_declares_memory_and_pml_fields():
    sim = Simulation(*small_problem())
    roles = {s.name: s.role for s in sim.physics.field_specs()}
    assert [n for n, r in roles.items() if r is FieldRole.MEMORY] == ["zeta0", "zeta1", "zeta2"]
    assert {"psi_px", "psi_pz", "psi_vx", "psi_vz"} <= {
        n for n, r in roles.items() if r is FieldRole.BOUNDARY
    }
    assert set(sim.state().fields) == set(roles)


def test_split_range_stepping_is_bitwise_equal_to_one_run():
    _, seis_ref, state_ref = _run_reference()
    sim = Simulation(*small_problem())
    for stop in (1, 37, 38, 120, 200):
        sim.advance(stop)
    assert sim.state().bitwise_equal(state_ref)
    for comp in (Component.P, Component.VX):
        assert np.array_equal(sim.seismograms().data[comp], seis_ref.data[comp])


def test_save_restore_roundtrip_bitwise(tmp_path):
    _, seis_ref, state_ref = _run_reference()
    sim = Simulation(*small_problem())
    sim.advance(73)
    saved = sim.state()
    saved.save(tmp_path / "s73.npz")
    sim.advance(150)  # move on, then go back
    loaded = SolverState.load(tmp_path / "s73.npz")
    assert loaded.bitwise_equal(saved) and loaded.fingerprint == saved.fingerprint
    fresh = Simulation(*small_problem())  # a new simulation resumes from the file
    fresh.restore(loaded)
    assert fresh.state().bitwise_equal(saved)
    fresh.advance(200)
    assert fresh.state().bitwise_equal(state_ref)
    ref_p = seis_ref.data[Component.P]
    assert np.array_equal(fresh.seismograms().data[Component.P][73:], ref_p[73:])
    assert not (tmp_path / "s73.npz.partial").exists()


def test_restore_refuses_other_problem():
    sim = Simulation(*small_problem())
    state = sim.state()
    other = Simulation(*small_problem(q=41.0))
    with pytest.raises(ValueError, match="different problem"):
        other.restore(state)


def test_stale_simulation_refused():
    old = Simulation(*small_problem())
    Simulation(*small_problem())
    with pytest.raises(RuntimeError, match="taken over"):
        old.advance(5)


def test_blow_up_names_first_bad_step(monkeypatch):
    model, sources, receivers, time, config = small_problem()
    from anelastic.physics.viscoacoustic import Viscoacoustic

    limit = Viscoacoustic.stable_dt
    monkeypatch.setattr(Viscoacoustic, "stable_dt", lambda self, h: 1.0)  # bypass the CFL check
    unstable = type(time)(
        dt=1.6 * limit(Simulation(*small_problem()).physics, (10.0, 10.0)), nt=200
    )
    sim = Simulation(model, sources, receivers, unstable, config)
    with pytest.raises(SimulationBlowUp, match="step") as info:
        sim.run()
    step = info.value.step
    again = Simulation(model, sources, receivers, unstable, config)
    again.advance(step)
    assert np.isfinite(again.state().fields["p"]).all()
    again.propagator.apply(again, step, step + 1)
    assert not again.propagator.finite()


@pytest.mark.parametrize("layout", ["separable", "general"])
def test_memory_layouts_agree(monkeypatch, layout):
    """The folded one-array update (uniform Q) equals the general per-mechanism update."""
    from anelastic.physics.viscoacoustic import Viscoacoustic

    reference = Simulation(*small_problem())
    assert reference.physics.memory_layout == "uniform"
    ref = reference.run().data[Component.P]
    monkeypatch.setattr(Viscoacoustic, "forced_memory_layout", layout)
    other = Simulation(*small_problem(), instance=f"layout-{layout}")
    assert other.physics.memory_layout == layout
    traces = other.run().data[Component.P]
    assert np.max(np.abs(traces - ref)) <= 2e-5 * np.max(np.abs(ref))
