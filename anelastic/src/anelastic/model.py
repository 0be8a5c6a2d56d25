"""Earth models on a regular grid: P and S velocities, density, quality factors.

Arrays are indexed ``[nx, nz]`` in 2-D and ``[nx, ny, nz]`` in 3-D; ``z`` is depth (positive
down). Grid point ``i`` along an axis sits at ``origin + i * spacing``. Velocities are the phase
velocities at the reference frequency ``f_ref`` (Hz); the solver derives the unrelaxed moduli from
them (physical dispersion, see :mod:`anelastic.attenuation`). ``Q = inf`` means no attenuation.

Q convention: ``qp`` is the quality factor of the P-wave modulus used by the viscoacoustic
physics (bulk modulus there, since vs = 0 in a fluid); the viscoelastic physics reads ``qp`` and
``qs`` as the P and S quality factors (SPECFEM's convention of Q_kappa / Q_mu is derived there).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

FIELDS = ("vp", "vs", "rho", "qp", "qs")


@dataclass(frozen=True)
class Grid:
    """Regular grid: ``shape`` points per axis, ``spacing`` metres, ``origin`` metres.

    Axes are (x, z) in 2-D and (x, y, z) in 3-D.
    """

    shape: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if len(self.shape) not in (2, 3):
            raise ValueError(f"grid must be 2-D or 3-D, got shape {self.shape}")
        if len(self.spacing) != len(self.shape):
            raise ValueError(f"spacing {self.spacing} must have one entry per axis {self.shape}")
        if any(int(n) < 2 for n in self.shape):
            raise ValueError(f"every axis needs at least 2 points, got shape {self.shape}")
        if any(not np.isfinite(h) or h <= 0 for h in self.spacing):
            raise ValueError(f"grid spacing must be positive and finite, got {self.spacing}")
        object.__setattr__(self, "shape", tuple(int(n) for n in self.shape))
        object.__setattr__(self, "spacing", tuple(float(h) for h in self.spacing))
        origin = self.origin if self.origin is not None else (0.0,) * len(self.shape)
        if len(origin) != len(self.shape):
            raise ValueError(f"origin {origin} must have one entry per axis {self.shape}")
        object.__setattr__(self, "origin", tuple(float(o) for o in origin))

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def extent(self) -> tuple[float, ...]:
        """Distance from the first to the last grid point along each axis (m)."""
        return tuple((n - 1) * h for n, h in zip(self.shape, self.spacing, strict=True))

    @property
    def axis_names(self) -> tuple[str, ...]:
        return ("x", "z") if self.ndim == 2 else ("x", "y", "z")

    def coordinates(self, axis: int) -> np.ndarray:
        """Coordinates of the grid points along ``axis``, shape [shape[axis]]."""
        n, h, o = self.shape[axis], self.spacing[axis], self.origin[axis]
        return o + h * np.arange(n)

    def contains(self, point: np.ndarray) -> bool:
        """True if ``point`` [ndim] lies inside the closed box of the grid."""
        p = np.asarray(point, dtype=float)
        lo = np.asarray(self.origin)
        hi = lo + np.asarray(self.extent)
        return bool(np.all(p >= lo - 1e-9 * (1 + abs(lo))) and np.all(p <= hi + 1e-9 * (1 + hi)))


@dataclass(frozen=True, eq=False)
class Model:
    """Physical model: arrays of shape ``grid.shape``.

    vp, vs: m/s at ``f_ref``; rho: kg/m^3; qp, qs: dimensionless quality factors (inf allowed).
    ``Model`` never mutates its arrays; builders return new models.
    """

    grid: Grid
    vp: np.ndarray
    vs: np.ndarray
    rho: np.ndarray
    qp: np.ndarray
    qs: np.ndarray
    f_ref: float
    name: str = field(default="model")

    def __post_init__(self) -> None:
        for name in FIELDS:
            arr = np.asarray(getattr(self, name), dtype=np.float64)
            if arr.ndim == 0:
                arr = np.full(self.grid.shape, float(arr))
            if arr.shape != self.grid.shape:
                raise ValueError(f"{name} has shape {arr.shape}, grid shape is {self.grid.shape}")
            arr = arr.copy()
            arr.flags.writeable = False
            object.__setattr__(self, name, arr)
        validate_model(self)

    @property
    def ndim(self) -> int:
        return self.grid.ndim

    @property
    def is_elastic(self) -> bool:
        """True when no point of the model attenuates (all Q infinite)."""
        return bool(np.all(np.isinf(self.qp)) and np.all(np.isinf(self.qs)))

    def replace(self, **arrays: np.ndarray | float) -> Model:
        """A copy with some fields replaced (e.g. ``model.replace(qp=np.inf)``)."""
        values = {name: getattr(self, name) for name in FIELDS}
        unknown = set(arrays) - set(FIELDS) - {"f_ref", "name"}
        if unknown:
            raise ValueError(f"unknown model fields {sorted(unknown)}; known: {FIELDS}")
        values.update({k: v for k, v in arrays.items() if k in FIELDS})
        return Model(
            self.grid,
            **values,
            f_ref=float(arrays.get("f_ref", self.f_ref)),
            name=str(arrays.get("name", self.name)),
        )

    def save(self, path: str | Path) -> None:
        """Write the model to an ``.npz`` file (arrays + grid + f_ref)."""
        np.savez(
            path,
            **{name: getattr(self, name) for name in FIELDS},
            shape=np.array(self.grid.shape),
            spacing=np.array(self.grid.spacing),
            origin=np.array(self.grid.origin),
            f_ref=np.array(self.f_ref),
            name=np.array(self.name),
        )

    @classmethod
    def load(cls, path: str | Path) -> Model:
        """Read a model written by :meth:`save`."""
        with np.load(path) as data:
            missing = [k for k in (*FIELDS, "shape", "spacing", "f_ref") if k not in data]
            if missing:
                raise ValueError(f"{path} is not an anelastic model file: missing {missing}")
            grid = Grid(
                tuple(int(n) for n in data["shape"]),
                tuple(float(h) for h in data["spacing"]),
                tuple(float(o) for o in data["origin"]) if "origin" in data else None,
            )
            name = str(data["name"]) if "name" in data else "model"
            return cls(grid, **{k: data[k] for k in FIELDS}, f_ref=float(data["f_ref"]), name=name)


def validate_model(model: Model) -> None:
    """Raise ValueError on non-physical values (NaN/inf, ranges, negative bulk modulus, Q<=0)."""
    for name in ("vp", "vs", "rho"):
        arr = getattr(model, name)
        bad = ~np.isfinite(arr)
        if bad.any():
            raise ValueError(f"{name} contains NaN or inf at {_first_index(bad)}")
    for name in ("qp", "qs"):
        arr = getattr(model, name)
        if np.isnan(arr).any():
            raise ValueError(f"{name} contains NaN at {_first_index(np.isnan(arr))}")
        if (arr <= 0).any():
            raise ValueError(
                f"{name} must be > 0 (use inf for no attenuation); found {arr.min():g} "
                f"at {_first_index(arr <= 0)}"
            )
    if (model.vp <= 0).any():
        raise ValueError(f"vp must be > 0 m/s; min is {model.vp.min():g}")
    if (model.vs < 0).any():
        raise ValueError(f"vs must be >= 0 m/s; min is {model.vs.min():g}")
    if (model.rho <= 0).any():
        raise ValueError(f"rho must be > 0 kg/m^3; min is {model.rho.min():g}")
    # Bulk modulus kappa = rho (vp^2 - 4/3 vs^2) must stay positive: vs < sqrt(3)/2 vp.
    kappa = model.rho * (model.vp**2 - 4.0 / 3.0 * model.vs**2)
    if (kappa <= 0).any():
        where = _first_index(kappa <= 0)
        raise ValueError(
            f"negative bulk modulus at {where}: vs={model.vs[where]:g} is too large for "
            f"vp={model.vp[where]:g}; vs must be < sqrt(3)/2 vp = {0.866 * model.vp[where]:g}"
        )
    if not np.isfinite(model.f_ref) or model.f_ref <= 0:
        raise ValueError(f"f_ref must be a positive frequency in Hz, got {model.f_ref}")


def _first_index(mask: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argwhere(mask)[0])


def homogeneous(
    grid: Grid,
    vp: float,
    rho: float,
    vs: float = 0.0,
    qp: float = np.inf,
    qs: float = np.inf,
    f_ref: float = 10.0,
) -> Model:
    """A uniform model."""
    full = lambda v: np.full(grid.shape, float(v))  # noqa: E731
    return Model(grid, full(vp), full(vs), full(rho), full(qp), full(qs), f_ref, "homogeneous")


def layered(
    grid: Grid, depths: list[float], layers: list[dict[str, float]], f_ref: float = 10.0
) -> Model:
    """Horizontal layers: layer ``k`` starts at depth ``depths[k]`` (the first at the top).

    ``layers[k]`` maps field names (vp, vs, rho, qp, qs) to values; vs defaults to 0, Q to inf.
    """
    if len(depths) != len(layers) or not layers:
        raise ValueError("layered needs one top depth per layer and at least one layer")
    if any(b <= a for a, b in zip(depths, depths[1:], strict=False)):
        raise ValueError(f"layer top depths must increase, got {depths}")
    z = grid.coordinates(grid.ndim - 1)
    index = np.clip(np.searchsorted(np.asarray(depths), z, side="right") - 1, 0, None)
    arrays = {}
    defaults = {"vs": 0.0, "qp": np.inf, "qs": np.inf}
    for name in FIELDS:
        values = [_layer_value(layer, name, defaults) for layer in layers]
        column = np.asarray(values)[index]
        arrays[name] = np.broadcast_to(column, grid.shape).copy()
    return Model(grid, **arrays, f_ref=f_ref, name="layered")


def _layer_value(layer: dict[str, float], name: str, defaults: dict[str, float]) -> float:
    unknown = set(layer) - set(FIELDS)
    if unknown:
        raise ValueError(f"unknown layer keys {sorted(unknown)}; known: {FIELDS}")
    if name in layer:
        return float(layer[name])
    if name in defaults:
        return defaults[name]
    raise ValueError(f"layer {layer} needs a value for {name}")


def gaussian_anomaly(
    background: Model,
    center: tuple[float, ...],
    radius: float,
    relative: dict[str, float],
) -> Model:
    """Background multiplied by ``1 + a exp(-|x - center|^2 / radius^2)`` per field.

    ``relative`` maps field names to amplitudes ``a`` (e.g. ``{"vp": 0.1}`` for +10 %).
    """
    if radius <= 0:
        raise ValueError(f"anomaly radius must be > 0 m, got {radius}")
    bump = np.exp(-_squared_distance(background.grid, center) / radius**2)
    arrays = {k: getattr(background, k) * (1.0 + a * bump) for k, a in relative.items()}
    return background.replace(**arrays, name=f"{background.name}+gaussian")


def checkerboard(background: Model, cell_size: float, relative: dict[str, float]) -> Model:
    """Background multiplied by ``1 + a s(x)``, ``s`` = product of sin(pi x_i / cell_size)."""
    if cell_size <= 0:
        raise ValueError(f"checkerboard cell size must be > 0 m, got {cell_size}")
    grid = background.grid
    pattern = np.ones(grid.shape)
    for axis in range(grid.ndim):
        shape = [1] * grid.ndim
        shape[axis] = grid.shape[axis]
        pattern = pattern * np.sin(np.pi * grid.coordinates(axis) / cell_size).reshape(shape)
    arrays = {k: getattr(background, k) * (1.0 + a * pattern) for k, a in relative.items()}
    return background.replace(**arrays, name=f"{background.name}+checkerboard")


def _squared_distance(grid: Grid, center: tuple[float, ...]) -> np.ndarray:
    if len(center) != grid.ndim:
        raise ValueError(f"center {center} must have {grid.ndim} coordinates")
    r2 = np.zeros(grid.shape)
    for axis in range(grid.ndim):
        shape = [1] * grid.ndim
        shape[axis] = grid.shape[axis]
        r2 = r2 + ((grid.coordinates(axis) - center[axis]) ** 2).reshape(shape)
    return r2
