"""Viscoacoustic free surface (pressure release): the method of images, exactly.

A free surface at z = 0 is the upper half of an unbounded medium with an image source of
opposite sign mirrored about z = 0: p is odd and v_z even about the surface. On a staggered
grid whose surface is a node row, the surface scheme's images are those of the doubled grid, so
the free-surface run equals the doubled-grid run below z = 0 to rounding (float64).
"""

import numpy as np
import pytest

from anelastic.acquisition import Component, Receivers, Source, SourceKind, ricker
from anelastic.forward.simulation import Simulation, TimeAxis
from anelastic.model import Grid, gaussian_anomaly, homogeneous
from anelastic.physics import BoundaryKind, PhysicsConfig, PhysicsKind

NX, NZ, H, F0 = 48, 30, 10.0, 12.0
TIME = TimeAxis(1e-3, 260)


def _run(free_surface: bool, boundary: BoundaryKind, order: int):
    """Final state of p, vx, vz on the physical grid z >= 0 (the doubled grid's lower half)."""
    if free_surface:
        grid = Grid((NX, NZ), (H, H))
    else:
        grid = Grid((NX, 2 * NZ - 1), (H, H), origin=(0.0, -(NZ - 1) * H))
    model = homogeneous(grid, 2000.0, 2000.0, 0.0, 40.0, 40.0, f_ref=F0)
    position = np.array([170.0, 60.0])
    sources = [Source(tuple(position), ricker(F0), SourceKind.MOMENT, moment=np.eye(2))]
    if not free_surface:
        image = (position[0], -position[1])
        sources.append(Source(image, ricker(F0), SourceKind.MOMENT, moment=-np.eye(2)))
    receivers = Receivers(np.array([[300.0, 0.0], [300.0, 40.0]]), (Component.P, Component.VX))
    config = PhysicsConfig(
        PhysicsKind.VISCOACOUSTIC,
        space_order=order,
        boundary=boundary,
        pml_width=8,
        dtype="float64",
        free_surface=free_surface,
    )
    sim = Simulation(model, sources, receivers, TIME, config, threads=1)
    seismograms = sim.run()
    fields = sim.state().fields
    pads = sim.pads
    x = slice(pads[0][0], pads[0][0] + NX)
    top = pads[1][0] + (0 if free_surface else NZ - 1)
    z = slice(top, top + NZ - 1)
    return {k: fields[k][x, z] for k in ("p", "vx", "vz")}, seismograms


@pytest.mark.parametrize(("boundary", "order"), [(BoundaryKind.CPML, 4), (BoundaryKind.SPONGE, 8)])
def test_free_surface_is_the_method_of_images(boundary, order):
    surface, seis = _run(True, boundary, order)
    doubled, seis_doubled = _run(False, boundary, order)
    for name, value in surface.items():
        scale = np.abs(doubled[name]).max()
        assert scale > 0
        np.testing.assert_allclose(value, doubled[name], rtol=0, atol=1e-9 * scale, err_msg=name)
    assert np.abs(surface["p"][:, 0]).max() == 0.0  # p = 0 on the surface
    for comp in (Component.P, Component.VX):
        ref = seis_doubled.data[comp]
        np.testing.assert_allclose(seis.data[comp], ref, atol=1e-9 * np.abs(ref).max())


# The interior scheme's own level, measured without a free surface: 4e-13 with C-PML, 1.5e-9
# with the sponge (the forward rounds products of float32 profiles).
TRANSPOSE_TOLERANCE = {BoundaryKind.CPML: 1e-11, BoundaryKind.SPONGE: 1e-8}


@pytest.mark.parametrize(
    ("boundary", "order", "q"), [(BoundaryKind.CPML, 4, 30.0), (BoundaryKind.SPONGE, 8, np.inf)]
)
def test_adjoint_step_is_the_transpose_of_the_forward_step(boundary, order, q):
    from anelastic.checks.kernels import transpose_check
    from anelastic.kernel.operators import KernelOperators

    sim = _kernel_simulation(boundary, order, q)
    sim.run()
    ops = KernelOperators(sim, 2)
    ops.reset(sim.receivers.positions)
    lhs, rhs = transpose_check(sim, ops, step=30)
    assert abs(lhs - rhs) <= TRANSPOSE_TOLERANCE[boundary] * abs(lhs), (lhs, rhs)


def test_kernels_under_a_free_surface_predict_finite_differences():
    """Velocity data at and below the surface, a perturbation covering the surface rows: the
    kernels of vp, rho and Qp equal central finite differences (checkpointed kernel pass)."""
    from anelastic.acquisition import Seismograms
    from anelastic.checks.kernels import central_difference
    from anelastic.kernel.compute import compute_kernels
    from anelastic.kernel.inputs import Event, KernelSettings, Storage, kernel_fit
    from anelastic.kernel.misfit import Misfit, MisfitKind

    sim = _kernel_simulation(BoundaryKind.CPML, 8, 30.0, nt=300)
    model, receivers, axis, config = sim.model, sim.receivers, sim.time, sim.config
    source = sim.sources[0]
    zeros = {c: np.zeros((axis.nt, receivers.count)) for c in receivers.components}
    observed = Seismograms(axis.dt, receivers.positions, zeros)
    event = Event(model, [source], receivers, axis, config, observed)
    waveform = Misfit(MisfitKind.WAVEFORM)
    result = compute_kernels(event, KernelSettings(waveform, Storage.CHECKPOINT, chunk=110))
    fit = kernel_fit(model, config, F0)
    grid = model.grid
    x, z = np.meshgrid(grid.coordinates(0), grid.coordinates(1), indexing="ij")
    blob = np.exp(-((x - 220.0) ** 2 + (z - 20.0) ** 2) / (2 * 40.0**2))
    for name in ("vp", "rho", "qp"):
        predicted, fd = central_difference(event, waveform, fit, result.gradients, name, blob)
        assert abs(predicted - fd) < 1e-4 * abs(fd), (name, predicted, fd)


def _kernel_simulation(boundary, order, q, nt: int = 60) -> Simulation:
    """Q varying in space (the general memory layout) under a free surface."""
    grid = Grid((40, 30), (H, H))
    model = homogeneous(grid, 2000.0, 2000.0, 0.0, q, q, f_ref=F0)
    if np.isfinite(q):
        model = gaussian_anomaly(model, (200.0, 60.0), 50.0, {"vp": 0.1, "qp": 0.3})
    source = Source((120.0, 80.0), ricker(F0))
    receivers = Receivers(np.array([[300.0, 0.0], [260.0, 30.0]]), (Component.VX, Component.VZ))
    config = PhysicsConfig(
        PhysicsKind.VISCOACOUSTIC,
        space_order=order,
        boundary=boundary,
        pml_width=8,
        dtype="float64",
        free_surface=True,
    )
    return Simulation(model, [source], receivers, TimeAxis(1e-3, nt), config, threads=1)
