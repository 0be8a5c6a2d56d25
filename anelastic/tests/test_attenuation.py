import numpy as np
import pytest

from anelastic.attenuation import (
    complex_modulus,
    default_band,
    fit_sls,
    modulus_ratio,
    sls_quality,
    unrelaxed_modulus,
)


def test_constant_q_fit_error_small_and_reported():
    fit = fit_sls(np.array([50.0]), default_band(10.0), n_sls=3)
    w = 2 * np.pi * np.geomspace(1.0, 100.0, 200)
    q = sls_quality(w, fit.y_table[0], fit.omega)
    assert np.max(np.abs(q / 50.0 - 1.0)) <= fit.max_rel_error + 1e-9
    assert fit.max_rel_error < 0.06


def test_more_mechanisms_fit_better():
    errors = [fit_sls(np.array([30.0]), (1.0, 100.0), n).max_rel_error for n in (1, 2, 3, 5)]
    assert errors == sorted(errors, reverse=True) and errors[-1] < 0.01


def test_infinite_q_gives_zero_weights_and_elastic_modulus():
    fit = fit_sls(np.array([np.inf, 40.0]), (1.0, 100.0))
    y = fit.weights(np.array([np.inf, 40.0]))
    assert np.all(y[:, 0] == 0.0) and np.all(y[:, 1] > 0)
    m = unrelaxed_modulus(np.array([8e9, 8e9]), y, fit.omega, 10.0)
    assert m[0] == 8e9 and m[1] > 8e9


def test_phase_velocity_at_f_ref_equals_model_velocity():
    rho, vp, f_ref = 2000.0, 2000.0, 7.0
    fit = fit_sls(np.array([20.0]), (1.0, 100.0))
    y = fit.weights(np.array([20.0]))
    m_u = unrelaxed_modulus(np.array([rho * vp**2]), y, fit.omega, f_ref)[0]
    modulus = complex_modulus(m_u, y[:, 0], fit.omega)
    w = 2 * np.pi * f_ref
    k = w * np.sqrt(rho / modulus(np.array([w]))[0])
    assert w / k.real == pytest.approx(vp, rel=1e-12)


def test_modulus_sign_convention_attenuating():
    fit = fit_sls(np.array([25.0]), (1.0, 100.0))
    ratio = modulus_ratio(2 * np.pi * np.geomspace(0.1, 1000, 50), fit.y_table[0], fit.omega)
    assert np.all(ratio.imag > 0)
    # Relaxed (w -> 0) modulus below the unrelaxed one: physical dispersion.
    assert modulus_ratio(np.array([0.0]), fit.y_table[0], fit.omega)[0].real < 1.0


def test_bad_band_rejected():
    with pytest.raises(ValueError, match="band"):
        fit_sls(np.array([30.0]), (10.0, 1.0))
