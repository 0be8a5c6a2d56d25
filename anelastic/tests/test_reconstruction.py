"""Reverse storage: a lossless forward field rebuilt backwards equals the forward field.

Reference states come from a separate forward run of the same problem (stepping is bitwise
reproducible, see test_state.py). Errors are max |reconstructed - forward| over the physical
domain, relative to the field's max |forward| over the compared steps.
"""

import numpy as np
import pytest

from anelastic.acquisition import Component, Receivers, Source, SourceKind, ricker
from anelastic.forward.simulation import Simulation, TimeAxis
from anelastic.kernel import reconstruction
from anelastic.kernel.inputs import ring_bytes_bound
from anelastic.kernel.reconstruction import (
    ForwardReconstruction,
    ReverseUnstableError,
    reversed_attenuating_growth,
)
from anelastic.model import Grid, gaussian_anomaly, homogeneous
from anelastic.physics import BoundaryKind, PhysicsConfig, PhysicsKind

ACOUSTIC = PhysicsKind.VISCOACOUSTIC
ELASTIC = PhysicsKind.VISCOELASTIC
TIME = TimeAxis(1e-3, 200)
KEEP = (0, 1, 57, 120, 199, 200)


def _sources(kind: PhysicsKind, ndim: int) -> list[Source]:
    """An explosion and a force (one injection per stage), off-grid; a moment tensor in 2-D
    elastic; one source next to the domain edge, so injection touches the ring. 15 Hz (8 Hz
    elastic: 5 points per S wavelength)."""
    wavelet = ricker(8.0 if kind is ELASTIC else 15.0)
    if ndim == 3:
        return [Source((101.3, 118.0, 97.4), wavelet)]
    out = [
        Source((250.3, 200.7), wavelet),
        Source((352.0, 347.0), wavelet, SourceKind.FORCE, direction=(1.0, 0.5)),
        Source((588.0, 15.0), wavelet),
    ]
    if kind is ELASTIC:
        moment = np.array([[1.0, 0.3], [0.3, -0.5]])
        out.append(Source((200.0, 380.0), wavelet, SourceKind.MOMENT, moment=moment))
    return out


def _problem(kind=ACOUSTIC, order=4, dtype="float64", boundary=BoundaryKind.CPML, ndim=2):
    """(model, sources, receivers, time, config): 60 x 60 cells (24^3 in 3-D) + 10 (6) PML."""
    n, width = (60, 10) if ndim == 2 else (24, 6)
    grid = Grid((n,) * ndim, (10.0,) * ndim)
    vs = 1000.0 if kind is ELASTIC else 0.0
    model = homogeneous(grid, 2000.0, 2000.0, vs, f_ref=15.0)
    model = gaussian_anomaly(model, (n * 5.0,) * ndim, 80.0, {"vp": 0.2, "rho": -0.1})
    config = PhysicsConfig(kind, order, boundary, width, dtype=dtype)
    receivers = Receivers(np.full((1, ndim), 150.0), (Component.P,))
    time = TIME if ndim == 2 else TimeAxis(1e-3, 90)
    return model, _sources(kind, ndim), receivers, time, config


def _forward_states(problem, keep) -> dict[int, dict[str, np.ndarray]]:
    sim = Simulation(*problem, threads=1)
    out = {}
    for n in keep:
        sim.advance(n)
        out[n] = sim.state().fields
    return out


def _physical(sim, array: np.ndarray) -> np.ndarray:
    shape = sim.physics.model.grid.shape
    return array[tuple(slice(lo, n - hi) for (lo, hi), n in zip(sim.pads, shape, strict=True))]


def _relative_errors(sim, recon, reference, keep) -> dict[str, float]:
    """Per field: max over kept steps of max |rec - ref| on the physical domain / max |ref|."""
    keep = sorted(keep, reverse=True)
    errors: dict[str, float] = {}
    scale: dict[str, float] = {}
    for n, fields in recon.states_backward(keep[0], keep[-1]):
        if n not in reference:
            continue
        for name, array in fields.items():
            ref = _physical(sim, reference[n][name])
            diff = np.abs(_physical(sim, array) - ref).max()
            errors[name] = max(errors.get(name, 0.0), float(diff))
            scale[name] = max(scale.get(name, 0.0), float(np.abs(ref).max()))
    return {name: errors[name] / scale[name] for name in errors}


def _reconstruct(problem, keep=KEEP):
    reference = _forward_states(problem, keep)
    sim = Simulation(*problem, threads=1)
    recon = ForwardReconstruction(sim)
    recon.run_forward()
    return sim, recon, reference


@pytest.mark.parametrize(
    "kind, order, dtype, boundary, tolerance",
    [
        (ACOUSTIC, 4, "float64", BoundaryKind.CPML, 1e-10),
        (ACOUSTIC, 8, "float64", BoundaryKind.CPML, 1e-10),
        (ACOUSTIC, 4, "float32", BoundaryKind.CPML, 1e-4),
        (ACOUSTIC, 4, "float64", BoundaryKind.SPONGE, 1e-10),
        (ELASTIC, 4, "float64", BoundaryKind.CPML, 1e-10),
        (ELASTIC, 8, "float64", BoundaryKind.SPONGE, 1e-10),
    ],
)
def test_reconstructed_states_equal_forward_states(kind, order, dtype, boundary, tolerance):
    problem = _problem(kind, order, dtype, boundary)
    sim, recon, reference = _reconstruct(problem)
    errors = _relative_errors(sim, recon, reference, KEEP)
    assert set(errors) == set(recon.wavefields) and len(errors) >= 3
    assert max(errors.values()) < tolerance, errors
    assert recon.forward_steps == recon.backward_steps == TIME.nt


def test_reconstruction_3d_viscoacoustic():
    problem = _problem(ndim=3)
    keep = (0, 30, 89, 90)
    sim, recon, reference = _reconstruct(problem, keep)
    errors = _relative_errors(sim, recon, reference, keep)
    assert set(errors) == {"p", "vx", "vy", "vz"}
    assert max(errors.values()) < 1e-10, errors


def test_chunks_continue_without_recomputation_and_restart_from_the_end():
    sim, recon, reference = _reconstruct(_problem())
    chunks = [(200, 150), (150, 60), (59, 0)]  # the second starts at the last state yielded
    seen = {}
    for stop, start in chunks:
        for n, fields in recon.states_backward(stop, start):
            seen.setdefault(n, fields)
    assert sorted(seen) == list(range(201))
    assert recon.backward_steps == 200
    scale = np.abs(reference[120]["p"]).max()
    for n in KEEP:
        p = _physical(sim, reference[n]["p"])
        assert np.abs(_physical(sim, seen[n]["p"]) - p).max() <= 1e-10 * scale
    again = dict(recon.states_backward(120, 119))  # above the current state: from the end again
    assert recon.backward_steps == 200 + 81
    assert np.array_equal(again[120]["vx"], seen[120]["vx"])
    with pytest.raises(ValueError, match="start <= stop"):
        recon.states_backward(201, 0)


def test_ring_size_storage_and_zero_layer():
    sim, recon, _ = _reconstruct(_problem(), keep=())
    rings = {name: region.size for name, region in recon.regions.items()}
    assert recon.boundary_nbytes() == (TIME.nt + 1) * sum(rings.values()) * 8
    # 80 x 80 padded, interior 60 x 60 (59 along a staggered axis), ring 2 cells
    assert rings == {"p": 64 * 64 - 60 * 60, "vx": 63 * 64 - 59 * 60, "vz": 64 * 63 - 60 * 59}
    # the bound the budget check uses before any compute: never below, at most 1 % above
    bound = ring_bytes_bound(sim.model, sim.config, TIME.nt)
    assert recon.boundary_nbytes() <= bound <= 1.01 * recon.boundary_nbytes()
    n, fields = next(recon.states_backward(133, 133))
    for name, array in fields.items():
        support = recon.regions[name].support
        assert np.all(array[~support] == 0) and np.any(array[support] != 0)


def test_the_outermost_ring_layer_is_needed():
    """The stencils read space_order / 2 cells out: zeroing the saved ring's outermost layer
    (at that distance from the interior) makes the reconstruction wrong at O(1)."""
    sim, recon, reference = _reconstruct(_problem(), keep=(0, 100))
    radius = sim.config.space_order // 2
    for name, region in recon.regions.items():
        distance = np.zeros(region.size, dtype=int)
        for index, (start, stop) in zip(region.ring, region.interior, strict=True):
            distance = np.maximum(distance, np.maximum(start - index, index - (stop - 1)))
        assert distance.min() == 1 and distance.max() == radius
        recon._op.ring_views[name][:, distance == radius] = 0
    errors = _relative_errors(sim, recon, reference, (100, 0))
    assert max(errors.values()) > 1e-3, errors


def _attenuating_problem(q: float = 30.0):
    """The 2-D viscoacoustic problem with Qp = q everywhere."""
    model, *rest = _problem()
    return (model.replace(qp=np.full(model.grid.shape, q)), *rest)


def test_refuses_attenuation_before_any_compute():
    sim = Simulation(*_attenuating_problem(50.0), threads=1)
    compiled = len(reconstruction.INVERSE_STEP_OPERATORS)
    match = "Qp finite at 3600 of 3600 points.*unstable.*1/alpha_l per step.*checkpoint"
    with pytest.raises(ReverseUnstableError, match=match):
        ForwardReconstruction(sim)
    assert sim.step == 0 and len(reconstruction.INVERSE_STEP_OPERATORS) == compiled


def test_refuses_elastic_attenuation_and_free_surface_naming_both():
    model, sources, receivers, time, _ = _problem(ELASTIC)
    shape = model.grid.shape
    model = model.replace(qp=np.full(shape, 150.0), qs=np.full(shape, 40.0))
    config = PhysicsConfig(ELASTIC, 4, pml_width=10, n_sls=1, free_surface=True)  # fast to build
    sim = Simulation(model, sources, receivers, time, config, threads=1)
    compiled = len(reconstruction.INVERSE_STEP_OPERATORS)
    with pytest.raises(ReverseUnstableError, match="Qp finite.*Qs finite.*Also: .*free surface"):
        ForwardReconstruction(sim)
    assert sim.step == 0 and len(reconstruction.INVERSE_STEP_OPERATORS) == compiled


def test_reversed_attenuating_field_blows_up_while_the_forward_decays():
    """Q = 30: the exact inverse of the attenuating step tracks the forward field for a few
    dozen steps, then roundoff grows by 1/alpha_min per step (> 1e6 x the forward peak)."""
    problem = _attenuating_problem()
    sim = Simulation(*problem, threads=1)
    forward = np.empty(TIME.nt + 1)
    for n in range(TIME.nt + 1):
        sim.advance(n)
        forward[n] = np.abs(sim.wavefield("p")).max()
    assert forward[-1] < 0.2 * forward.max()  # the forward field decays

    sim = Simulation(*problem, threads=1)
    growth = reversed_attenuating_growth(sim, TIME.nt)  # entry k: state nt - 1 - k
    backward_forward = forward[TIME.nt - 1 :: -1]
    assert np.allclose(growth[:10], backward_forward[:10], rtol=1e-6)
    peak = np.max(np.where(np.isfinite(growth), growth, np.inf))  # NaN/inf count as blown up
    assert peak > 1e6 * forward.max()
    ratio = growth[101] / growth[100]  # steady amplification: 1 / alpha_min per step
    assert ratio == pytest.approx(1.0 / sim.physics.alpha.min(), rel=0.05)


@pytest.mark.parametrize("layout", ["separable", "general"])
def test_attenuating_inverse_step_is_exact_before_roundoff_grows(layout, monkeypatch):
    """Each memory-coefficient layout's inverse step (Q = 30, Q = inf in places) reproduces the
    forward states for the first steps; then it blows up like the uniform one."""
    from anelastic.physics.viscoacoustic import Viscoacoustic

    monkeypatch.setattr(Viscoacoustic, "forced_memory_layout", layout)
    grid = Grid((40, 40), (10.0, 10.0))
    qp = np.full(grid.shape, 30.0)
    qp[:, 30:] = np.inf
    model = homogeneous(grid, 2000.0, 2000.0, qp=30.0, f_ref=15.0).replace(qp=qp)
    config = PhysicsConfig(space_order=4, pml_width=10, dtype="float64")
    problem = (model, [Source((200.0, 200.0), ricker(15.0))], None, TimeAxis(1e-3, 60), config)
    sim = Simulation(*problem, threads=1)
    forward = []
    for n in range(61):
        sim.advance(n)
        forward.append(np.abs(sim.wavefield("p")).max())
    sim = Simulation(*problem, threads=1)
    assert sim.physics.memory_layout == layout
    growth = reversed_attenuating_growth(sim, 60)
    assert np.allclose(growth[:15], forward[59:44:-1], rtol=1e-8)
    assert growth[-1] > 1e3 * max(forward)
