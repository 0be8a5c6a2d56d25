import numpy as np
import pytest

from anelastic.model import Grid, Model, checkerboard, gaussian_anomaly, homogeneous, layered

GRID = Grid((30, 20), (5.0, 5.0))


def test_builders_values():
    base = homogeneous(GRID, 2000.0, 1800.0, vs=800.0, qp=60.0, qs=30.0)
    assert base.vp.shape == (30, 20) and np.all(base.qs == 30.0)
    bump = gaussian_anomaly(base, (75.0, 50.0), 20.0, {"vp": 0.1})
    assert bump.vp.max() == pytest.approx(2000.0 * 1.1, rel=1e-3)
    assert bump.vp[0, 0] == pytest.approx(2000.0, rel=1e-3)
    board = checkerboard(base, 25.0, {"vs": 0.05})
    assert board.vs.max() <= 840.0 + 1e-9 and board.vs.min() >= 760.0 - 1e-9
    lay = layered(GRID, [0.0, 50.0], [{"vp": 1500.0, "rho": 1000.0}, {"vp": 2500.0, "rho": 2200.0}])
    z = GRID.coordinates(1)
    assert np.all(lay.vp[:, z < 50.0] == 1500.0) and np.all(lay.vp[:, z >= 50.0] == 2500.0)
    assert np.all(np.isinf(lay.qp))


def test_save_load_roundtrip(tmp_path):
    model = gaussian_anomaly(
        homogeneous(GRID, 2000.0, 1800.0, qp=50.0), (50, 50), 20.0, {"rho": -0.2}
    )
    model.save(tmp_path / "m.npz")
    back = Model.load(tmp_path / "m.npz")
    assert back.grid == model.grid and back.f_ref == model.f_ref
    for name in ("vp", "vs", "rho", "qp", "qs"):
        assert np.array_equal(getattr(back, name), getattr(model, name))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"qp": 0.0}, "qp must be > 0"),
        ({"qs": -5.0}, "qs must be > 0"),
        ({"vs": 1900.0}, "negative bulk modulus"),
        ({"rho": -1.0}, "rho must be > 0"),
    ],
)
def test_invalid_values_rejected(change, message):
    base = homogeneous(GRID, 2000.0, 1800.0, vs=500.0)
    with pytest.raises(ValueError, match=message):
        base.replace(**change)


def test_nan_rejected_with_location():
    vp = np.full(GRID.shape, 2000.0)
    vp[3, 4] = np.nan
    with pytest.raises(ValueError, match=r"vp contains NaN or inf at \(3, 4\)"):
        homogeneous(GRID, 2000.0, 1000.0).replace(vp=vp)


def test_model_arrays_are_read_only():
    model = homogeneous(GRID, 2000.0, 1000.0)
    with pytest.raises(ValueError):
        model.vp[0, 0] = 1.0
