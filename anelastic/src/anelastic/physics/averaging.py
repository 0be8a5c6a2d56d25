"""Averages of node arrays at staggered points, and their transposes (for the kernels' chain rule).

A coefficient at an (i, j)-staggered point (a shear stress and its memory variables) is a mean
of the 4 surrounding node values, the arrays being edge-replicated past the last node. The
kernels need the transpose of each average: the gradient at the staggered points scattered back
to the nodes it was computed from. Arrays are [*shape]; ``i`` and ``j`` are axis indices.
"""

from __future__ import annotations

import numpy as np


def corners(values: np.ndarray, i: int, j: int) -> list[np.ndarray]:
    """The 4 node values around each (i, j)-staggered point, each [*shape] (edge-replicated),
    in the order (0, 0), (0, 1), (1, 0), (1, 1) of offsets along (i, j)."""
    pad = [(0, 0)] * values.ndim
    pad[i], pad[j] = (0, 1), (0, 1)
    ext = np.pad(values, pad, mode="edge")
    out = []
    for di in (0, 1):
        for dj in (0, 1):
            idx = [slice(0, n) for n in values.shape]
            idx[i] = slice(di, di + values.shape[i])
            idx[j] = slice(dj, dj + values.shape[j])
            out.append(ext[tuple(idx)])
    return out


def harmonic_mean(values: np.ndarray, i: int, j: int) -> np.ndarray:
    """Harmonic mean of ``values`` at the (i, j)-staggered points (0 if any corner is 0)."""
    with np.errstate(divide="ignore"):
        inv = sum(
            np.where(c > 0, 1.0 / np.where(c > 0, c, 1.0), np.inf) for c in corners(values, i, j)
        )
    return np.where(np.isinf(inv), 0.0, 4.0 / np.where(np.isinf(inv), 1.0, inv))


def corner_mean(values: np.ndarray, i: int, j: int) -> np.ndarray:
    """Arithmetic mean of ``values`` at the (i, j)-staggered points."""
    return sum(corners(values, i, j)) / 4.0


def corner_transpose(values: np.ndarray, i: int, j: int, corner: int) -> np.ndarray:
    """Transpose of ``corners(...)[corner]`` (a shifted read of the node array padded by one
    edge-replicated row along i and j): adds each value to the node it read."""
    shape = list(values.shape)
    shape[i] += 1
    shape[j] += 1
    ext = np.zeros(shape)
    idx = [slice(None)] * values.ndim
    idx[i] = slice(corner // 2, corner // 2 + values.shape[i])
    idx[j] = slice(corner % 2, corner % 2 + values.shape[j])
    ext[tuple(idx)] += values
    for axis in (i, j):  # the padded row is a copy of the last one: fold it back
        last, pad = [slice(None)] * ext.ndim, [slice(None)] * ext.ndim
        last[axis], pad[axis] = slice(-2, -1), slice(-1, None)
        ext[tuple(last)] += ext[tuple(pad)]
        ext = ext[tuple(slice(0, -1) if k == axis else slice(None) for k in range(ext.ndim))]
    return ext


def harmonic_mean_transpose(grad: np.ndarray, values: np.ndarray, i: int, j: int) -> np.ndarray:
    """Node gradient from ``grad`` at the (i, j) points of ``H = 4 / sum_k 1/c_k`` over the 4
    corners c_k: dH/dc_k = H^2 / (4 c_k^2) (0 where a corner is 0)."""
    grad = np.asarray(grad, dtype=np.float64)
    harmonic = harmonic_mean(values, i, j)
    total = np.zeros_like(values, dtype=np.float64)
    for k, corner in enumerate(corners(values, i, j)):
        safe = np.where(corner > 0, corner, 1.0)
        slope = np.where(corner > 0, harmonic**2 / (4.0 * safe**2), 0.0)
        total += corner_transpose(grad * slope, i, j, k)
    return total


def node_buoyancy_gradient(grads: dict[str, np.ndarray], axes) -> np.ndarray:
    """dchi/dbuoy at nodes [*shape] from ``grad_buoy_<axis>`` at half nodes: the half node
    i + 1/2 of each axis averaged buoy[i] and buoy[i + 1], so each gets half of its gradient."""
    total = 0.0
    for k, a in enumerate(axes):
        g = np.asarray(grads[f"grad_buoy_{a}"], dtype=np.float64)
        below = np.zeros_like(g)
        dst = [slice(None)] * g.ndim
        src = [slice(None)] * g.ndim
        dst[k], src[k] = slice(1, None), slice(None, -1)
        below[tuple(dst)] = g[tuple(src)]
        total = total + 0.5 * (g + below)
    return total
