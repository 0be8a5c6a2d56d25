import numpy as np
import pytest
from obspy import read

from anelastic.acquisition import (
    Component,
    Receivers,
    Seismograms,
    Source,
    SourceKind,
    Wavelet,
    WaveletKind,
    ricker,
)


def test_ricker_peak_and_zero_mean():
    w = ricker(10.0)
    t = np.arange(0, 1.0, 1e-4)
    values = w(t)
    assert w(np.array([0.15]))[0] == pytest.approx(1.0)
    assert abs(values.sum() * 1e-4) < 1e-6


def test_gaussian_derivative_and_array_wavelets():
    g = Wavelet(WaveletKind.GAUSSIAN_DERIVATIVE, f0=5.0)
    t = np.arange(0, 1.0, 1e-4)
    assert np.max(np.abs(g(t))) == pytest.approx(1.0, rel=1e-3)
    samples = np.sin(np.linspace(0, np.pi, 11))
    arr = Wavelet(WaveletKind.ARRAY, samples=samples, sample_dt=0.01)
    assert arr(np.array([0.05]))[0] == pytest.approx(1.0)
    assert arr(np.array([0.025]))[0] == pytest.approx(0.5 * (samples[2] + samples[3]))
    assert arr(np.array([0.5]))[0] == 0.0


def test_source_validation():
    with pytest.raises(ValueError, match="direction"):
        Source((0.0, 0.0), ricker(5.0), SourceKind.FORCE)
    with pytest.raises(ValueError, match="symmetric"):
        Source((0.0, 0.0), ricker(5.0), SourceKind.MOMENT, moment=np.array([[1, 2], [0, 1]]))
    force = Source((0.0, 0.0), ricker(5.0), SourceKind.FORCE, direction=(3.0, 4.0))
    assert force.direction == pytest.approx((0.6, 0.8))


def test_seismogram_files_roundtrip(tmp_path):
    data = {Component.P: np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)}
    seis = Seismograms(0.002, np.zeros((3, 2)), data)
    seis.save_npz(tmp_path / "s.npz")
    back = Seismograms.load_npz(tmp_path / "s.npz")
    assert np.array_equal(back.data[Component.P], data[Component.P]) and back.dt == 0.002
    seis.write(tmp_path / "s.mseed", "MSEED")
    stream = read(str(tmp_path / "s.mseed"))
    assert len(stream) == 3 and stream[1].stats.delta == pytest.approx(0.002)
    assert np.array_equal(stream[1].data, data[Component.P][:, 1])
    assert stream[1].id == "XX.R0001.00.CDH"  # 500 Hz: band C; pressure: DH
    seis.write(tmp_path / "s.sac", "SAC")
    sac = read(str(tmp_path / "s.XX.R0002.00.CDH.sac"))
    assert np.allclose(sac[0].data, data[Component.P][:, 2])


def test_receivers_validation():
    with pytest.raises(ValueError, match="vy"):
        Receivers(np.zeros((2, 2)), (Component.VY,))
