"""Misfits: known measurements, exact adjoint sources (directional derivatives against central
finite differences), and the processing operators' algebra."""

import numpy as np
import pytest

from anelastic.kernel.misfit import BandPass, Misfit, MisfitKind, TimeWindow

DT = 2e-3
NT = 600
T = np.arange(NT) * DT


def ricker(t0: float, f0: float = 8.0) -> np.ndarray:
    a = (np.pi * f0) ** 2
    return (1 - 2 * a * (T - t0) ** 2) * np.exp(-a * (T - t0) ** 2)


def traces(shifts, scales) -> np.ndarray:
    return np.stack([s * ricker(0.5 + dt) for dt, s in zip(shifts, scales, strict=True)], axis=1)


SYNTHETIC = traces([0.0, 0.01, -0.02], [1.0, 0.8, 1.3])
OBSERVED = traces([0.013, 0.0, -0.005], [0.9, 1.1, 1.0]) + 0.05 * traces([0.3, 0.2, 0.1], [1, 1, 1])

PROCESSING = [
    {},
    {"window": TimeWindow(0.25, 0.8, 0.2)},
    {"window": TimeWindow(0.25, 0.8, 0.2), "band": BandPass(2.0, 15.0)},
]


@pytest.mark.parametrize("kind", list(MisfitKind))
@pytest.mark.parametrize("processing", PROCESSING)
def test_adjoint_source_is_the_exact_gradient(kind, processing):
    misfit = Misfit(kind, **processing)
    chi, adjoint = misfit.evaluate(SYNTHETIC, OBSERVED, DT)
    direction = (
        np.random.default_rng(0).standard_normal(SYNTHETIC.shape)
        * traces([0.0, 0.0, 0.0], [0.05, 0.05, 0.05]).std()
    )
    predicted = DT * np.sum(adjoint * direction)
    h = 1e-4
    chi_plus, _ = misfit.evaluate(SYNTHETIC + h * direction, OBSERVED, DT)
    chi_minus, _ = misfit.evaluate(SYNTHETIC - h * direction, OBSERVED, DT)
    finite_difference = (chi_plus - chi_minus) / (2 * h)
    assert chi > 0
    assert abs(predicted - finite_difference) <= 1e-6 * abs(finite_difference) + 1e-12


def test_cc_traveltime_recovers_a_subsample_shift():
    shift = 0.0123  # 6.15 samples
    synthetic = ricker(0.5)[:, None]
    observed = ricker(0.5 + shift)[:, None]
    measured = Misfit(MisfitKind.CC_TRAVELTIME).measurements(synthetic, observed, DT)
    assert abs(measured[0] - shift) < 1e-6


def test_log_amplitude_recovers_a_scale():
    measured = Misfit(MisfitKind.LOG_AMPLITUDE).measurements(
        2.5 * ricker(0.5)[:, None], ricker(0.5)[:, None], DT
    )
    assert abs(measured[0] - np.log(2.5)) < 1e-12


def test_identical_traces_have_zero_misfit_and_adjoint():
    for kind in MisfitKind:
        chi, adjoint = Misfit(kind).evaluate(SYNTHETIC, SYNTHETIC, DT)
        assert abs(chi) < 1e-20
        assert np.abs(adjoint).max() < 1e-9 * np.abs(SYNTHETIC).max()


def test_band_pass_is_zero_phase_and_symmetric():
    band = BandPass(3.0, 20.0)
    impulse = np.zeros(401)
    impulse[200] = 1.0
    response = band.apply(impulse, DT)
    np.testing.assert_allclose(response[200:], response[200::-1], atol=1e-12)
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((2, NT))
    assert abs(np.dot(band.apply(x, DT), y) - np.dot(x, band.apply(y, DT))) < 1e-10


def test_band_pass_removes_out_of_band_frequencies():
    low = np.sin(2 * np.pi * 0.5 * T)
    mid = np.sin(2 * np.pi * 8.0 * T)
    high = np.sin(2 * np.pi * 80.0 * T)
    out = BandPass(3.0, 20.0).apply(low + mid + high, DT)
    core = slice(100, NT - 100)
    assert np.abs(out[core] - mid[core]).max() < 0.05


def test_window_weights_taper_to_zero():
    w = TimeWindow(0.2, 0.6, 0.25).weights(NT, DT)
    assert w[T < 0.2].max() == 0 and w[T > 0.6].max() == 0
    assert w[(T > 0.31) & (T < 0.49)].min() == 1.0
    assert np.all(np.diff(w[(T >= 0.2) & (T <= 0.3)]) >= 0)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="t_start < t_end"):
        TimeWindow(0.5, 0.4)
    with pytest.raises(ValueError, match="after the last sample"):
        Misfit(window=TimeWindow(0.1, 5.0)).evaluate(SYNTHETIC, OBSERVED, DT)
    with pytest.raises(ValueError, match="Nyquist"):
        Misfit(band=BandPass(1.0, 400.0)).evaluate(SYNTHETIC, OBSERVED, DT)
    with pytest.raises(ValueError, match="fmin < fmax"):
        BandPass(10.0, 5.0)
    with pytest.raises(ValueError, match=r"\[nt, nrec\]"):
        Misfit().evaluate(SYNTHETIC, OBSERVED[:, :2], DT)
    with pytest.raises(ValueError, match="zero inside the window"):
        Misfit(MisfitKind.CC_TRAVELTIME).evaluate(SYNTHETIC, 0 * OBSERVED, DT)
    with pytest.raises(ValueError, match="NaN"):
        Misfit().evaluate(SYNTHETIC * np.nan, OBSERVED, DT)
