"""Absorbing layers: padding, regions (interior + strips) and C-PML / sponge helpers.

The computational grid is the model padded by ``width`` points on every side (not on top with a
free surface). It is partitioned into regions, each a Devito SubDomain with the list of axes
along which it damps (``Region.damped_axes``):

- the "band": interior along every axis but the last (z), whole along z; it damps along z only
  (the top/bottom layers ride along in the same loop nest: z is the contiguous axis, so thin
  z-strips would vectorise badly and cost a parallel region each);
- one strip per padded side of the other axes; strips of axis k span the interior of the axes
  before k and the whole of the axes after k, and damp along every axis (corners included).

The regions tile the grid. Bulk cells (the band) read two 1-D profiles and one auxiliary field
per z-derivative more than an undamped stencil; cells of the strips carry the full C-PML.

C-PML (Komatitsch & Martin 2007, kappa = 1): each derivative ``df/dx`` of the update becomes
``df/dx + psi`` with ``psi^{n+1} = b psi^n + a df/dx``, ``b = exp(-(d + alpha) dt)``,
``a = d (b - 1) / (d + alpha)``, ``d = d0 (l / L)^2``, ``d0 = -3 v_max ln(R) / (2 L)``,
``alpha = pi f0 (1 - l / L)``, ``l`` the depth into the layer of thickness ``L``. Outside the
layer of that axis ``a = 0`` so ``psi`` stays 0 (corners are handled by the same equations).
Sponge (Cerjan 1985): fields multiplied each step by ``prod_i exp(-(s l_i / h)^2)``,
``s = 0.015 * 20 / width``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from devito import Eq, Function, SubDomain

from anelastic.physics.base import BoundaryKind

CPML_REFLECTION = 1e-4
# Cerjan et al. (1985): factor exp(-(0.015 i)^2) at i points into a 20-point layer; thinner
# layers get a proportionally larger coefficient (same damping at the outer edge).
SPONGE_STRENGTH = 0.015
SPONGE_REFERENCE_WIDTH = 20


def padding(ndim: int, width: int, free_surface: bool) -> tuple[tuple[int, int], ...]:
    """Points added (before, after) each axis; no padding above a free surface (z top)."""
    pads = [(width, width)] * ndim
    if free_surface:
        pads[-1] = (0, width)
    return tuple(pads)


class _Box(SubDomain):
    """A rectangular SubDomain given as one Devito spec per dimension (None = whole axis)."""

    def __init__(self, name: str, spec: list, grid) -> None:
        self.name = name
        self._spec = spec
        super().__init__(grid=grid)

    def define(self, dimensions):
        return {d: (d if s is None else s) for d, s in zip(dimensions, self._spec, strict=True)}


@dataclass(frozen=True)
class Region:
    """A SubDomain and the axes (indices) along which its equations carry boundary terms."""

    name: str
    subdomain: SubDomain
    damped_axes: tuple[int, ...]

    @property
    def absorbing(self) -> bool:
        """True if any axis is damped here (equations then need boundary terms)."""
        return bool(self.damped_axes)

    def damps(self, axis: int) -> bool:
        """True if derivatives along ``axis`` need the C-PML correction in this region."""
        return axis in self.damped_axes


class AbsorbingLayout:
    """Regions and boundary coefficient Functions of one Devito grid.

    Profile Functions (1-D, [n_axis]) are created here and filled by :meth:`set_profiles`, so a
    cached operator can be reused with another model or time step.
    """

    def __init__(
        self, grid, pads: tuple[tuple[int, int], ...], kind: BoundaryKind, prefix: str = ""
    ) -> None:
        """``prefix`` names the regions (a second layout on the same grid needs its own)."""
        self.grid = grid
        self.pads = pads
        self.kind = kind
        self.dims = grid.dimensions
        self.prefix = prefix
        self.regions = self._make_regions()
        self.profiles = self._make_profile_functions()
        self._rows: dict[tuple[str, int], SubDomain] = {}

    def on_row(self, region: Region, row: int) -> SubDomain:
        """The part of ``region`` on grid row ``z = row`` (cached: one SubDomain per pair)."""
        key = (region.name, row)
        if key not in self._rows:
            n = self.grid.shape[-1]
            spec = [*region.subdomain._spec[:-1], ("middle", row, n - 1 - row)]
            self._rows[key] = _Box(f"{region.name}_row{row}", spec, self.grid)
        return self._rows[key]

    def _make_regions(self) -> list[Region]:
        ndim = len(self.pads)
        inner = [("middle", lo, hi) if lo or hi else None for lo, hi in self.pads]
        last = ndim - 1
        band_damped = (last,) if any(self.pads[last]) else ()
        band = inner[:last] + [None]
        band_name = f"{self.prefix}band"
        regions = [Region(band_name, _Box(band_name, band, self.grid), band_damped)]
        for k, (lo, hi) in enumerate(self.pads[:last]):
            for side, n in (("left", lo), ("right", hi)):
                if n == 0:
                    continue
                spec = inner[:k] + [(side, n)] + [None] * (ndim - k - 1)
                name = f"{self.prefix}{self.dims[k].name}{side}"
                regions.append(Region(name, _Box(name, spec, self.grid), tuple(range(ndim))))
        return regions

    def _make_profile_functions(self) -> dict[str, Function]:
        out = {}
        for dim, n in zip(self.dims, self.grid.shape, strict=True):
            if self.kind is BoundaryKind.CPML:
                for tag, stag in (("", None), ("h", dim)):
                    for ab in ("a", "b"):
                        name = f"cpml{ab}{tag}_{dim.name}"
                        out[name] = _profile_function(name, self.grid, dim, n, stag)
            else:
                for tag, stag in (("", None), ("h", dim)):
                    name = f"sponge{tag}_{dim.name}"
                    out[name] = _profile_function(name, self.grid, dim, n, stag)
        return out

    def set_profiles(self, vmax: float, f0: float, dt: float, spacing: tuple[float, ...]) -> None:
        """Fill the profile Functions for wave speed ``vmax``, frequency ``f0``, step ``dt``."""
        for k, dim in enumerate(self.dims):
            n, h, (lo, hi) = self.grid.shape[k], spacing[k], self.pads[k]
            width = max(lo, hi)
            for half in (False, True):
                depth = layer_depth(n, lo, hi, half) * h
                big_l = max(width, 1) * h
                if self.kind is BoundaryKind.CPML:
                    a, b = cpml_coefficients(depth, big_l, vmax, f0, dt)
                    tag = "h" if half else ""
                    self.profiles[f"cpmla{tag}_{dim.name}"].data[:] = a
                    self.profiles[f"cpmlb{tag}_{dim.name}"].data[:] = b
                else:
                    strength = SPONGE_STRENGTH * SPONGE_REFERENCE_WIDTH / max(width, 1)
                    damp = np.exp(-((strength * depth / h) ** 2))
                    self.profiles[f"sponge{'h' if half else ''}_{dim.name}"].data[:] = damp

    def cpml(self, derivative, psi, axis: int, half: bool, subdomain) -> tuple[Eq, object]:
        """C-PML update of ``psi`` (to place in an absorbing region) and the damped derivative.

        ``half``: the derivative lives at +h/2 along ``axis`` (staggered position).
        """
        tag = "h" if half else ""
        name = self.dims[axis].name
        a = self.profiles[f"cpmla{tag}_{name}"]
        b = self.profiles[f"cpmlb{tag}_{name}"]
        return Eq(
            psi.forward, b * psi + a * derivative, subdomain=subdomain
        ), derivative + psi.forward

    def sponge_factor(self, staggered: tuple[str, ...] = ()):
        """Product of the 1-D sponge profiles at a field's position (1 in the interior).

        ``staggered``: axis names along which the field sits at +h/2 (its own profile there, so
        Devito never interpolates a profile, which would need a halo).
        """
        factor = 1
        for dim in self.dims:
            tag = "h" if dim.name in staggered else ""
            factor = factor * self.profiles[f"sponge{tag}_{dim.name}"]
        return factor


def _profile_function(name: str, grid, dim, n: int, staggered) -> Function:
    """A 1-D profile [n] along ``dim``, on ``grid`` so that under MPI it is decomposed like the
    grid's axis; float32 whatever the grid's precision (as the forward has always used)."""
    return Function(
        name=name, grid=grid, dimensions=(dim,), shape=(n,), space_order=0,
        staggered=staggered, dtype=np.float32,
    )  # fmt: skip


def layer_depth(n: int, lo: int, hi: int, half: bool) -> np.ndarray:
    """Distance (in points) into the absorbing layer of node i (or i + 1/2), 0 inside."""
    pos = np.arange(n) + (0.5 if half else 0.0)
    left = np.clip(lo - pos, 0, None) if lo else np.zeros(n)
    right = np.clip(pos - (n - 1 - hi), 0, None) if hi else np.zeros(n)
    return left + right


def cpml_coefficients(
    depth: np.ndarray, thickness: float, vmax: float, f0: float, dt: float
) -> tuple[np.ndarray, np.ndarray]:
    """C-PML ``a``, ``b`` [n] for distances ``depth`` [n] (m) into a layer of ``thickness`` m."""
    ratio = np.clip(depth / thickness, 0.0, 1.0)
    d0 = -3.0 * vmax * np.log(CPML_REFLECTION) / (2.0 * thickness)
    d = d0 * ratio**2
    alpha = np.pi * f0 * (1.0 - ratio) * (depth > 0)
    b = np.exp(-(d + alpha) * dt)
    with np.errstate(invalid="ignore", divide="ignore"):
        a = np.where(d > 0, d * (b - 1.0) / (d + alpha), 0.0)
    return a, np.where(depth > 0, b, 1.0)
