"""The analytic solutions against independent facts: closed-form time-domain Green's functions,
the elastodynamic equation itself, the force balance around the source, and a known Q."""

import numpy as np
import pytest

from anelastic.checks import solutions

RHO = 2000.0
VP = 2000.0
VS = 1150.0
F0 = 10.0
DT = 1e-3
NT = 1200
T = np.arange(NT) * DT
T0 = 1.2 / F0


def ricker(t: np.ndarray) -> np.ndarray:
    a = (np.pi * F0) ** 2
    tau = t - T0
    return (1 - 2 * a * tau**2) * np.exp(-a * tau**2)


def ricker_derivative(t: np.ndarray) -> np.ndarray:
    a = (np.pi * F0) ** 2
    tau = t - T0
    return 2 * a * tau * (2 * a * tau**2 - 3) * np.exp(-a * tau**2)


def constant(value: complex):
    return lambda omega: np.full(omega.shape, value, dtype=complex)


def kjartansson(m0: float, q: float, f_ref: float = F0):
    """Exactly constant-Q modulus M0 (i omega / omega0)^(2 gamma), tan(pi gamma) = 1/Q."""
    gamma = np.arctan(1.0 / q) / np.pi
    return lambda omega: m0 * (1j * omega / (2 * np.pi * f_ref)) ** (2 * gamma)


def rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_acoustic_3d_lossless_is_delayed_derivative():
    r = 600.0
    p = solutions.acoustic_pressure_trace(T, ricker(T), r, RHO, constant(RHO * VP**2), dim=3)
    expected = ricker_derivative(T - r / VP) / (4 * np.pi * VP**2 * r)
    assert rel_l2(p, expected) < 1e-4


def test_acoustic_2d_lossless_matches_time_domain_green_function():
    # p = (1/c^2) (g * s')(t) with g(t) = H(t - r/c) / (2 pi sqrt(t^2 - r^2/c^2)); the
    # substitution tau = (r/c) cosh(u) removes the square-root singularity.
    r = 600.0
    p = solutions.acoustic_pressure_trace(T, ricker(T), r, RHO, constant(RHO * VP**2), dim=2)
    expected = np.zeros(NT)
    for n, t in enumerate(T):
        if t * VP > r:
            u = np.linspace(0.0, np.arccosh(t * VP / r), 4001)
            integrand = ricker_derivative(t - r / VP * np.cosh(u))
            expected[n] = np.trapezoid(integrand, u) / (2 * np.pi * VP**2)
    assert rel_l2(p, expected) < 1e-3


@pytest.mark.parametrize("q", [np.inf, 20.0])
def test_elastic_green_2d_solves_the_elastodynamic_equation(q):
    omega = np.array([2 * np.pi * 7.0])
    mu = RHO * VS**2 * (1 + 1j / q)
    lam = RHO * VP**2 * (1 + 0.5j / q) - 2 * mu
    h = 0.5
    x0, z0 = 300.0, -200.0
    stencil = range(-2, 3)
    g = {
        (a, b): solutions.elastic_green_2d(
            omega, (x0 + a * h, z0 + b * h), RHO, constant(lam), constant(mu)
        )[..., 0]
        for a in stencil
        for b in stencil
    }
    w = np.array([1, -8, 0, 8, -1]) / (12 * h)  # 4th-order first derivative
    w2 = np.array([-1, 16, -30, 16, -1]) / (12 * h**2)  # 4th-order second derivative
    d_xx = sum(w2[a + 2] * g[(a, 0)] for a in stencil)
    d_zz = sum(w2[b + 2] * g[(0, b)] for b in stencil)
    d_xz = sum(w[a + 2] * w[b + 2] * g[(a, b)] for a in stencil for b in stencil)
    hess = [[d_xx, d_xz], [d_xz, d_zz]]
    g0 = g[(0, 0)]
    for i in range(2):
        for j in range(2):
            grad_div = sum(hess[i][k][k, j] for k in range(2))
            residual = (
                mu * (d_xx + d_zz)[i, j] + (lam + mu) * grad_div + RHO * omega[0] ** 2 * g0[i, j]
            )
            scale = RHO * omega[0] ** 2 * np.abs(g0).max()
            assert abs(residual) < 1e-5 * scale


def test_elastic_green_2d_balances_the_point_force():
    # Integrating the equation over a small disc: the traction through its rim equals -f
    # (the inertia term is O((k eps)^2 log) and negligible).
    omega = np.array([2 * np.pi * 2.0])
    mu, lam = RHO * VS**2, RHO * VP**2 - 2 * RHO * VS**2
    force = np.array([0.6, 0.8])
    eps, h, n = 0.5, 1e-4, 256

    def displacement(x, z):
        green = solutions.elastic_green_2d(omega, (x, z), RHO, constant(lam), constant(mu))
        return green[..., 0] @ force

    total = np.zeros(2, dtype=complex)
    for theta in np.arange(n) * 2 * np.pi / n:
        x, z = eps * np.cos(theta), eps * np.sin(theta)
        du_dx = (displacement(x + h, z) - displacement(x - h, z)) / (2 * h)
        du_dz = (displacement(x, z + h) - displacement(x, z - h)) / (2 * h)
        grad = np.stack([du_dx, du_dz], axis=1)  # grad[i, j] = d u_i / d x_j
        stress = lam * np.trace(grad) * np.eye(2) + mu * (grad + grad.T)
        total += stress @ np.array([np.cos(theta), np.sin(theta)]) * (2 * np.pi * eps / n)
    np.testing.assert_allclose(total.real, -force, atol=2e-3)
    assert np.abs(total.imag).max() < 2e-3


def test_elastic_velocity_on_the_force_axis_is_p_dominated_far_away():
    # Far along the force axis only the P wave carries energy: the vz trace vanishes by symmetry
    # and vx peaks at the P traveltime.
    r = 1500.0
    mu, lam = RHO * VS**2, RHO * VP**2 - 2 * RHO * VS**2
    vx, vz = solutions.elastic_velocity_trace_2d(
        T, ricker(T), (r, 0.0), RHO, constant(lam), constant(mu), (1.0, 0.0)
    )
    assert np.abs(vz).max() < 1e-9 * np.abs(vx).max()
    peak_time = T[np.argmax(np.abs(vx))]
    assert abs(peak_time - (r / VP + T0)) < 0.03


@pytest.mark.parametrize("dim", [2, 3])
def test_q_from_spectral_ratio_recovers_constant_q(dim):
    q = 50.0
    modulus = kjartansson(RHO * VP**2, q)
    r_near, r_far = 400.0, 1400.0
    t = np.arange(4096) * DT
    wavelet = ricker(t)
    near = solutions.acoustic_pressure_trace(t, wavelet, r_near, RHO, modulus, dim)
    far = solutions.acoustic_pressure_trace(t, wavelet, r_far, RHO, modulus, dim)
    q_est = solutions.q_from_spectral_ratio(near, far, DT, r_near, r_far, VP, 4.0, 25.0, dim)
    assert abs(q_est - q) / q < 0.05


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="dim"):
        solutions.scalar_green(np.array([1.0]), 10.0, dim=1)
    with pytest.raises(ValueError, match="distance"):
        solutions.acoustic_pressure_trace(T, ricker(T), 0.0, RHO, constant(1.0), dim=2)
    with pytest.raises(ValueError, match="uniformly"):
        solutions.acoustic_pressure_trace(T**2, ricker(T), 10.0, RHO, constant(1.0), dim=2)
    with pytest.raises(ValueError, match="r_near < r_far"):
        solutions.q_from_spectral_ratio(T, T, DT, 10.0, 5.0, VP, 1.0, 2.0, 2)
