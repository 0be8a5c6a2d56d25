"""Sparse points placed by anelastic.forward.points interpolate and inject exactly as Devito's
coordinate-based points do (float64), onto a staggered field's own lattice too."""

import numpy as np
from devito import Grid, Operator, SparseTimeFunction, TimeFunction

from anelastic.forward.points import place, point_function

POSITIONS = np.array([[55.3, 50.0], [12.0, 13.7], [-3.3, 41.1], [0.0, 0.0]])


def test_weights_computed_here_equal_devitos_own():
    grid = Grid(shape=(11, 9), extent=(100.0, 80.0), origin=(-20.0, -10.0), dtype=np.float64)
    x, _ = grid.dimensions
    node = TimeFunction(name="u", grid=grid, space_order=2)
    fields = [TimeFunction(name=f"v{k}", grid=grid, space_order=2, staggered=x) for k in (1, 2)]
    theirs = SparseTimeFunction(name="a", grid=grid, npoint=4, nt=2, dtype=np.float64)
    theirs.coordinates.data[:] = POSITIONS
    ours_injected = point_function("c", grid, 4, 2, np.float64)
    place(ours_injected, POSITIONS, fields[1])
    theirs.data[:] = ours_injected.data[:] = [[1.0, 2.0, 3.0, 4.0]] * 2
    node.data[:] = np.random.default_rng(0).random(node.data.shape)
    read = point_function("r", grid, 4, 2, np.float64)  # reads what b reads, Devito's way
    read_theirs = SparseTimeFunction(name="s", grid=grid, npoint=4, nt=2, dtype=np.float64)
    read_theirs.coordinates.data[:] = POSITIONS
    place(read, POSITIONS)
    equations = (
        read_theirs.interpolate(expr=node)
        + read.interpolate(expr=node)
        + theirs.inject(field=fields[0].forward, expr=theirs)
        + ours_injected.inject(field=fields[1].forward, expr=ours_injected)
    )
    Operator(equations)(time_m=0, time_M=0)
    # Plain arrays: numpy's comparisons of Devito's Data views pass whatever the values.
    ours, devitos = np.array(read.data[0]), np.array(read_theirs.data[0])
    assert np.abs(ours).min() > 0
    np.testing.assert_allclose(ours, devitos, rtol=1e-13)
    injected = [np.array(f.data[1]) for f in fields]
    assert np.count_nonzero(injected[0]) >= 8  # spread over neighbours, staggered lattice
    np.testing.assert_allclose(injected[1], injected[0], rtol=0, atol=1e-13)
