"""Sensitivity kernels: exactness, storage strategies, resume, refusals, CLI.

All runs use the small float64 problem of ``anelastic.checks.kernels`` so that the compiled
operators are shared between tests.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace

import numpy as np
import pytest

from anelastic.acquisition import Component, Receivers, Seismograms
from anelastic.checks.kernels import NT, check_event, verify_kernels
from anelastic.kernel.compute import compute_kernels
from anelastic.kernel.inputs import Event, KernelSettings, Storage
from anelastic.kernel.misfit import Misfit, MisfitKind
from anelastic.kernel.named import named_kernels
from anelastic.kernel.snapshots import SnapshotStore, StoreMismatchError
from anelastic.physics import PhysicsKind

WAVEFORM = Misfit(MisfitKind.WAVEFORM)


@pytest.fixture(scope="module")
def report():
    return verify_kernels([PhysicsKind.VISCOACOUSTIC])


def test_checkpoint_kernels_equal_full_storage(report):
    cases = report["checkpoint_vs_full"]["cases"]
    assert {c["divides_nt"] for c in cases} == {True, False}
    assert report["checkpoint_vs_full"]["max_rel_diff"] <= 1e-6
    assert all(c["time_steps"] == 3 * NT for c in cases)


def test_kernels_predict_finite_differences(report):
    rows = report["gradient_check"]
    pressure = {(r["misfit"], r["parameter"]) for r in rows if r["data"] == "p"}
    assert pressure == {(m, p) for m in ("waveform", "cc_traveltime") for p in ("vp", "rho", "qp")}
    # Two-component particle-velocity data, every misfit kind: the adjoint source enters the
    # adjoint velocity as the exact transpose of the time-averaged, staggered record.
    velocity = {(r["misfit"], r["parameter"]) for r in rows if r["data"] == "vx+vz"}
    misfits = ("waveform", "cc_traveltime", "log_amplitude")
    assert velocity == {(m, p) for m in misfits for p in ("vp", "rho", "qp")}
    # The discrete adjoint is exact: the 2 % tolerance of the issue is met with room to spare.
    for row in rows:
        assert row["rel_error"] < 1e-3, row


def test_time_steps_and_dispersion_only_difference(report):
    assert report["time_steps"] == {"nt": NT, "checkpoint": 3 * NT, "dispersion_only": 4 * NT}
    assert report["dispersion_only_vs_exact"]["q30"] > 0.05  # attenuation matters at Q = 30
    assert report["dispersion_only_vs_exact"]["q_inf"] < 1e-6  # and not at all without it
    assert report["passed"]


def _settings(tmp_path, **kwargs) -> KernelSettings:
    return KernelSettings(WAVEFORM, Storage.CHECKPOINT, chunk=60, store=tmp_path, **kwargs)


def test_resume_after_interrupted_forward(tmp_path, monkeypatch):
    event = check_event(PhysicsKind.VISCOACOUSTIC)
    reference = compute_kernels(event, _settings(tmp_path / "clean"))
    original = SnapshotStore.write
    calls = {"n": 0}

    def crash_after_three(self, step, state, namespace="forward"):
        calls["n"] += 1
        if calls["n"] > 3:
            raise KeyboardInterrupt("simulated crash")
        original(self, step, state, namespace)

    monkeypatch.setattr(SnapshotStore, "write", crash_after_three)
    with pytest.raises(KeyboardInterrupt):
        compute_kernels(event, _settings(tmp_path / "crash"))
    monkeypatch.setattr(SnapshotStore, "write", original)
    resumed = compute_kernels(event, _settings(tmp_path / "crash"))
    assert resumed.summary["time_steps"]["forward"] == NT - 120  # resumed from step 120
    for name, kernel in reference.kernels.items():
        np.testing.assert_array_equal(resumed.kernels[name], kernel)


def test_interrupted_kernel_pass_restarts(tmp_path, monkeypatch):
    from anelastic.kernel.operators import KernelOperators

    event = check_event(PhysicsKind.VISCOACOUSTIC)
    reference = compute_kernels(event, _settings(tmp_path / "clean"))
    original = KernelOperators.adjoint_chunk
    calls = {"n": 0}

    def crash_on_third_chunk(self, start, stop, residual):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("simulated crash")
        original(self, start, stop, residual)

    monkeypatch.setattr(KernelOperators, "adjoint_chunk", crash_on_third_chunk)
    with pytest.raises(KeyboardInterrupt):
        compute_kernels(event, _settings(tmp_path / "crash", restart_interval=0.0))
    restarted = compute_kernels(event, _settings(tmp_path / "crash", restart_interval=0.0))
    assert restarted.summary["time_steps"]["adjoint"] == NT - 120  # two chunks were kept
    assert restarted.summary["time_steps"]["forward"] == 0  # the forward store was complete
    for name, kernel in reference.kernels.items():
        np.testing.assert_array_equal(restarted.kernels[name], kernel)


def test_mismatched_store_is_refused(tmp_path):
    event = check_event(PhysicsKind.VISCOACOUSTIC)
    compute_kernels(event, _settings(tmp_path))
    other = Event(
        event.model.replace(vp=event.model.vp * 1.01), event.sources, event.receivers,
        event.time, event.config, event.observed,
    )  # fmt: skip
    with pytest.raises(StoreMismatchError, match="another run"):
        compute_kernels(other, _settings(tmp_path))


def test_reverse_storage_refuses_attenuation_before_compute():
    from anelastic.kernel.reconstruction import ReverseUnstableError

    event = check_event(PhysicsKind.VISCOACOUSTIC)
    begin = time.perf_counter()
    with pytest.raises(ReverseUnstableError, match="1/alpha_l"):
        compute_kernels(event, KernelSettings(WAVEFORM, Storage.REVERSE))
    assert time.perf_counter() - begin < 1.0


def test_reverse_storage_equals_checkpoint_without_attenuation():
    event = check_event(PhysicsKind.VISCOACOUSTIC, q=np.inf)
    exact = compute_kernels(event, KernelSettings(WAVEFORM, Storage.CHECKPOINT, chunk=60))
    rebuilt = compute_kernels(event, KernelSettings(WAVEFORM, Storage.REVERSE, chunk=60))
    assert rebuilt.summary["time_steps"]["total"] == 3 * NT
    for name, kernel in exact.kernels.items():
        scale = np.abs(kernel).max() or 1.0
        assert np.abs(rebuilt.kernels[name] - kernel).max() / scale < 1e-8, name


def test_bad_input_is_refused_clearly():
    event = check_event(PhysicsKind.VISCOACOUSTIC)
    velocity = Receivers(event.receivers.positions, (Component.VX,))
    bad = Event(event.model, event.sources, velocity, event.time, event.config, event.observed)
    with pytest.raises(ValueError, match=r"vx traces must be \[nt, nrec\]"):
        compute_kernels(bad, KernelSettings(WAVEFORM))  # observed data lack the component
    short = Seismograms(event.time.dt, event.receivers.positions, {Component.P: np.zeros((5, 2))})
    bad = Event(event.model, event.sources, event.receivers, event.time, event.config, short)
    with pytest.raises(ValueError, match=r"\[nt, nrec\]"):
        compute_kernels(bad, KernelSettings(WAVEFORM))
    with pytest.raises(ValueError, match="--chunk"):
        KernelSettings(WAVEFORM, chunk=0)
    with pytest.raises(ValueError, match="--memory-budget"):
        compute_kernels(event, KernelSettings(WAVEFORM, memory_budget=1000))


@pytest.mark.parametrize("kind", [PhysicsKind.VISCOACOUSTIC, PhysicsKind.VISCOELASTIC])
def test_named_kernels_obey_the_parameter_relations(kind):
    """K_rho' = K_rho + K_kappa + K_mu, K_alpha = 2 (kappa + c mu) / kappa K_kappa, and
    K_beta = 2 K_mu - 2 c mu / kappa K_kappa (fixed Q), for arbitrary gradients."""
    event = check_event(PhysicsKind.VISCOACOUSTIC)
    rng = np.random.default_rng(1)
    shape = event.model.grid.shape
    model = event.model.replace(
        vs=np.full(shape, 1100.0) if kind is PhysicsKind.VISCOELASTIC else 0.0,
        qp=rng.uniform(20, 80, shape),
        qs=rng.uniform(15, 60, shape),
    )
    names = ("rho", "vp", "vs", "qp", "qs")
    g = {n: rng.standard_normal(shape) for n in names}
    k = named_kernels(model, kind, g)
    k_mu = k.get("K_mu", 0.0)
    np.testing.assert_allclose(k["K_rho_prime"], k["K_rho"] + k["K_kappa"] + k_mu, atol=1e-12)
    c = 1.0  # 2 (d - 1) / d in 2-D
    mu = model.rho * model.vs**2
    kappa = model.rho * model.vp**2 - c * mu
    np.testing.assert_allclose(k["K_alpha"], 2 * (kappa + c * mu) / kappa * k["K_kappa"], rtol=1e-9)
    if kind is PhysicsKind.VISCOELASTIC:
        expected = 2 * k["K_mu"] - 2 * c * mu / kappa * k["K_kappa"]
        np.testing.assert_allclose(k["K_beta"], expected, rtol=1e-9, atol=1e-12)


CONFIG = """
[model]
type = "gaussian"
shape = [56, 44]
spacing = [10.0, 10.0]
vp = 2000.0
rho = 2000.0
qp = 30.0
f_ref = 12.0
center = [300.0, 220.0]
radius = 60.0
relative = {{vp = 0.05}}

[observed_model]
type = "homogeneous"
shape = [56, 44]
spacing = [10.0, 10.0]
vp = 2040.0
rho = 2000.0
qp = 30.0
f_ref = 12.0

[source]
position = [150.0, 240.0]
f0 = 12.0

[receivers]
positions = [[450.0, 180.0], [450.0, 300.0]]

[time]
dt = 0.001
nt = {nt}

[physics]
space_order = 8
pml_width = 10
dtype = "float64"

[kernel]
misfit = "cc_traveltime"
window = [0.1, 0.35]
"""


def test_kernel_command_writes_every_output(tmp_path):
    import xarray as xr

    from anelastic.app.cli import main

    config = tmp_path / "kernel.toml"
    config.write_text(CONFIG.format(nt=NT))
    out = tmp_path / "out"
    assert main(["kernel", str(config), "--out", str(out), "--chunk", "97", "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    event = summary["per_event"][0]
    assert event["time_steps"] == {"forward": NT, "replay": NT, "adjoint": NT, "total": 3 * NT}
    assert event["chunk"] == 97 and event["snapshots"] == 4 and event["store_bytes"] > 0
    rates = event["cell_updates_per_second"]  # model cells x steps / seconds, per phase
    for phase in ("forward", "replay", "adjoint"):
        assert rates[phase] == pytest.approx(56 * 44 * NT / event["seconds"][phase])
        assert event["threads"][phase] >= 1
    for name in ("K_rho", "K_kappa", "K_alpha", "K_Qkappa", "dchi_dvp"):
        assert np.load(out / f"{name}.npy").shape == (56, 44)
    with xr.open_dataset(out / "kernels.nc", engine="scipy") as data:
        np.testing.assert_allclose(data["K_alpha"].values, np.load(out / "K_alpha.npy"))
        assert data["x"].values[-1] == pytest.approx(550.0)
        # CF metadata: every variable and coordinate has units and a long name.
        assert data["K_alpha"].attrs["units"] == "s2 m-3"  # cc_traveltime: chi in s^2
        assert data["dchi_dvp"].attrs["units"] == "s2 (m s-1)-1"
        assert all(data[v].attrs.get("long_name") for v in list(data.data_vars) + ["x", "z"])
        assert data["z"].attrs["units"] == "m" and data.attrs["Conventions"] == "CF-1.8"
    assert (out / "kernels.png").stat().st_size > 10_000
    # The traveltime kernel of a faster observed model is nonzero between source and receivers.
    assert np.abs(np.load(out / "K_alpha.npy")).max() > 0


def test_q_kernel_exact_where_q_varies():
    """Q varying in space (per-point SLS weights, the 'general' coefficient layout): the Q and
    vp kernels still predict central finite differences."""
    from anelastic.checks.kernels import F0, REL_STEP, misfit_value, perturbation
    from anelastic.kernel.inputs import kernel_fit
    from anelastic.model import gaussian_anomaly

    event = check_event(PhysicsKind.VISCOACOUSTIC)
    model = gaussian_anomaly(event.model, (250.0, 200.0), 80.0, {"qp": 0.5})
    event = Event(model, event.sources, event.receivers, event.time, event.config, event.observed)
    result = compute_kernels(event, KernelSettings(WAVEFORM, Storage.CHECKPOINT, chunk=60))
    fit = kernel_fit(model, event.config, F0)
    for name in ("qp", "vp"):
        dm = REL_STEP * getattr(model, name) * perturbation(model.grid)
        predicted = float(np.sum(result.gradients[name] * dm))
        plus = misfit_value(
            event, WAVEFORM, fit, model.replace(**{name: getattr(model, name) + dm})
        )
        minus = misfit_value(
            event, WAVEFORM, fit, model.replace(**{name: getattr(model, name) - dm})
        )
        assert predicted == pytest.approx((plus - minus) / 2, rel=1e-4), name


def test_full_storage_on_disk_when_ram_is_short(tmp_path):
    """Full storage beyond the budget keeps every frame on disk (N in RAM at a time): the same
    kernels as every frame in RAM, bit for bit, in 3 nt steps."""
    event = check_event(PhysicsKind.VISCOACOUSTIC)
    in_ram = compute_kernels(event, KernelSettings(WAVEFORM, Storage.FULL))
    frame = 3 * np.prod([n + 20 for n in event.model.grid.shape]) * 8  # 3 float64 arrays
    settings = KernelSettings(WAVEFORM, Storage.FULL, memory_budget=int(97.5 * frame))
    on_disk = compute_kernels(event, replace(settings, store=tmp_path))
    assert on_disk.summary["frames_on_disk"] and on_disk.summary["chunk"] == 97
    assert on_disk.summary["time_steps"]["total"] == 3 * NT
    assert on_disk.summary["store_bytes"] > NT * frame  # every frame was written
    for name, kernel in in_ram.kernels.items():
        np.testing.assert_array_equal(on_disk.kernels[name], kernel)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("[receivers]\n", '[receivers]\ncomponents = ["p", "vy"]\n'), "cannot record vy"),
        (
            ('misfit = "cc_traveltime"', 'misfit = "waveform"\nmemory_budget = "1KiB"'),
            "holds no replay frame: one frame of this grid takes",
        ),
        (
            (
                'misfit = "cc_traveltime"',
                'misfit = "waveform"\nstorage = "dispersion-only"\nmemory_budget = "1MiB"',
            ),
            "plus the boundary ring that dispersion-only storage keeps for every step",
        ),
        (('misfit = "cc_traveltime"', 'misfit = "waveform"\nstorage = "reverse"'), "1/alpha_l"),
        (("window = [0.1, 0.35]", "window = [0.1, 5.0]"), "after the last sample"),
        (("window = [0.1, 0.35]", "band = [1.0, 900.0]"), "Nyquist"),
        (
            (
                'dtype = "float64"\n\n[kernel]\n',
                'dtype = "float64"\nfree_surface = true\n\n[kernel]\nstorage = "reverse"\n',
            ),
            "Also: --storage reverse rebuilds the forward field with the interior inverse step",
        ),
        (("[kernel]\n", '[kernel]\nobserved = ["missing.npz"]\n'), "missing.npz does not exist"),
    ],
)
def test_config_mistakes_are_refused_before_any_simulation(tmp_path, monkeypatch, edit, message):
    """Every mistake a [kernel] config can hold stops the run with its message before a
    simulation is even built (the [observed_model] one included), exit code 2."""
    from anelastic.app.cli import main
    from anelastic.forward.simulation import Simulation

    def no_simulation(*args, **kwargs):
        raise AssertionError("a simulation was built before the mistake was found")

    monkeypatch.setattr(Simulation, "__init__", no_simulation)
    text = CONFIG.format(nt=NT)
    assert edit[0] in text
    config = tmp_path / "kernel.toml"
    config.write_text(text.replace(edit[0], edit[1], 1))
    with pytest.raises(Exception) as info:  # noqa: PT011 - the message is checked below
        from anelastic.app.runs import run_kernel

        run_kernel(config, tmp_path / "out", progress=False)
    assert message in str(info.value)
    assert main(["kernel", str(config), "--out", str(tmp_path / "out"), "--no-progress"]) == 2


def test_observed_file_mistakes_are_named(tmp_path):
    from anelastic.app.runs import run_kernel

    text = CONFIG.format(nt=NT)
    text = text.split("[observed_model]")[0] + "[source]" + text.split("[source]")[1]
    text = text.replace('misfit = "cc_traveltime"', 'misfit = "waveform"\nobserved = ["obs.npz"]')
    config = tmp_path / "kernel.toml"
    config.write_text(text)
    with pytest.raises(FileNotFoundError, match="obs.npz does not exist"):
        run_kernel(config, tmp_path / "out", progress=False)
    positions = np.array([[450.0, 180.0], [450.0, 300.0]])
    Seismograms(0.001, positions, {Component.P: np.zeros((NT - 1, 2))}).save_npz(
        tmp_path / "obs.npz"
    )
    with pytest.raises(ValueError, match=r"obs.npz: p traces must be \[nt, nrec\]"):
        run_kernel(config, tmp_path / "out", progress=False)


def test_store_of_another_run_is_refused_naming_what_differs(tmp_path):
    """A snapshot store made for another model is refused, naming the model arrays, before
    the forward run or the [observed_model] simulation starts."""
    from anelastic.app.runs import run_kernel
    from anelastic.forward.simulation import Simulation
    from anelastic.kernel.snapshots import StoreMismatchError

    config = tmp_path / "kernel.toml"
    config.write_text(CONFIG.format(nt=NT))
    store = tmp_path / "store"
    run_kernel(config, tmp_path / "out", chunk=97, store=store, progress=False)
    config.write_text(
        CONFIG.format(nt=NT).replace("relative = {vp = 0.05}", "relative = {vp = 0.07}", 1)
    )
    runs = []
    original = Simulation.run
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            Simulation, "run", lambda self, *a, **k: runs.append(1) or original(self, *a, **k)
        )
        with pytest.raises(StoreMismatchError, match="model arrays"):
            run_kernel(config, tmp_path / "out2", chunk=97, store=store, progress=False)
    assert runs == []


@pytest.mark.parametrize("damage", ["truncate", "delete", "flip-a-byte", "synthetics", "first"])
def test_damaged_store_recovers_bitwise(tmp_path, damage):
    """A snapshot truncated, deleted or with changed bytes (found at the kernel pass's read),
    damaged synthetics, or the step-0 snapshot lost: each is reported by name and rebuilt from
    the nearest good snapshot before it, and the kernels are bitwise those of a clean run."""
    from anelastic.kernel.storage import SnapshotRebuilt

    event = check_event(PhysicsKind.VISCOACOUSTIC)
    reference = compute_kernels(event, _settings(tmp_path / "clean"))
    store = tmp_path / "store"
    compute_kernels(event, _settings(store))
    snaps = sorted(store.glob("forward_*.snap"))
    assert len(snaps) >= 3
    target = {"first": snaps[0], "synthetics": next(store.glob("synthetics_*.snap"))}.get(
        damage, snaps[1]
    )
    data = bytearray(target.read_bytes())
    if damage == "truncate":
        target.write_bytes(data[: len(data) // 2])
    elif damage in ("delete", "first"):
        target.unlink()
    else:  # same size, one byte changed in the arrays
        data[-100] ^= 0xFF
        target.write_bytes(bytes(data))
    with pytest.warns(SnapshotRebuilt, match=target.name.split("_")[1].split(".")[0]):
        again = compute_kernels(event, _settings(store))
    for name, kernel in reference.kernels.items():
        np.testing.assert_array_equal(again.kernels[name], kernel)
    assert target.exists()


def test_unreadable_store_manifest_is_named(tmp_path):
    event = check_event(PhysicsKind.VISCOACOUSTIC)
    compute_kernels(event, _settings(tmp_path))
    (tmp_path / "manifest.json").write_text("{ truncated")
    with pytest.raises(StoreMismatchError, match="manifest.json is not a readable"):
        compute_kernels(event, _settings(tmp_path))


def test_failed_snapshot_write_leaves_the_store_consistent(tmp_path, monkeypatch):
    store = SnapshotStore.open(tmp_path, {"run": 1})
    store.write(0, {"p": np.zeros(3)})
    real_fsync = __import__("os").fsync

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.fsync", disk_full)
    with pytest.raises(OSError, match="cannot write snapshot .*No space left on device"):
        store.write(10, {"p": np.ones(3)})
    monkeypatch.setattr("os.fsync", real_fsync)
    assert store.steps() == [0] and not list(tmp_path.glob(".*.tmp"))
    np.testing.assert_array_equal(store.read(0)["p"], np.zeros(3))


def test_viscoelastic_velocity_kernels_predict_finite_differences():
    """Vertical-component data in the viscoelastic physics: the record's 8-point staggered
    taps, transposed tap by tap, give the exact gradient of every parameter."""
    from anelastic.checks.kernels import gradient_check

    rows = gradient_check(PhysicsKind.VISCOELASTIC, MisfitKind.WAVEFORM, (Component.VZ,))
    assert {r["parameter"] for r in rows} == {"vp", "vs", "rho", "qp", "qs"}
    for row in rows:
        assert row["rel_error"] < 1e-3, row


def test_3d_velocity_kernels_predict_finite_differences():
    """3-D, two horizontal-and-vertical velocity components (viscoacoustic, Q = 30): the
    kernel-predicted misfit change of vp, rho, Qp equals central finite differences."""
    from anelastic.acquisition import Source, ricker
    from anelastic.checks.kernels import central_difference
    from anelastic.forward.simulation import TimeAxis
    from anelastic.kernel.inputs import kernel_fit
    from anelastic.model import Grid, gaussian_anomaly, homogeneous
    from anelastic.physics import PhysicsConfig

    grid = Grid((26, 22, 24), (10.0, 10.0, 10.0))
    base = homogeneous(grid, 2000.0, 2000.0, 0.0, 30.0, 30.0, f_ref=15.0)
    model = gaussian_anomaly(base, (120.0, 110.0, 120.0), 30.0, {"vp": 0.05})
    config = PhysicsConfig(PhysicsKind.VISCOACOUSTIC, space_order=4, pml_width=6, dtype="float64")
    source = Source((60.0, 110.0, 120.0), ricker(15.0))
    positions = np.array([[190.0, 100.0, 110.0], [190.0, 120.0, 140.0]])
    receivers = Receivers(positions, (Component.VX, Component.VZ))
    axis = TimeAxis(1e-3, 200)
    zeros = {c: np.zeros((axis.nt, 2)) for c in receivers.components}
    observed = Seismograms(axis.dt, positions, zeros)
    event = Event(model, [source], receivers, axis, config, observed)
    result = compute_kernels(event, KernelSettings(WAVEFORM, Storage.CHECKPOINT, chunk=70))
    fit = kernel_fit(model, config, 15.0)
    x, y, z = np.meshgrid(*[grid.coordinates(k) for k in range(3)], indexing="ij")
    blob = np.exp(-((x - 130) ** 2 + (y - 110) ** 2 + (z - 125) ** 2) / (2 * 25.0**2))

    for name in ("vp", "rho", "qp"):
        predicted, fd = central_difference(event, WAVEFORM, fit, result.gradients, name, blob)
        assert abs(predicted - fd) < 1e-3 * abs(fd), (name, predicted, fd)


@pytest.mark.parametrize("kind", [PhysicsKind.VISCOACOUSTIC, PhysicsKind.VISCOELASTIC])
def test_frame_size_from_the_config_equals_the_built_simulation(kind):
    """The memory-budget check before compute sizes a replay frame from the config alone; it
    must agree with the frame the kernel operators then allocate."""
    from anelastic.checks.kernels import problem
    from anelastic.kernel.inputs import replay_frame_bytes
    from anelastic.kernel.storage import frame_bytes

    for q in (30.0, np.inf):
        p = problem(kind, q)
        sim = p.simulation()
        attenuating = bool(np.isfinite(q))
        assert replay_frame_bytes(p.model, p.config, attenuating) == frame_bytes(sim)
