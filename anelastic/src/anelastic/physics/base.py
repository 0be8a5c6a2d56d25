"""The physics interface: what a rheology declares so the generic solver can run it.

A rheology (``Physics`` subclass) is built from a padded model and a time step. It never creates
Devito objects itself except through the arguments it receives, so the same stencil code builds
the forward operator, a replay operator and the adjoint on other field sets.

A rheology declares

1. ``field_specs()``: its COMPLETE solver state: every ``TimeFunction`` the time integrator
   reads (wavefields, memory variables, absorbing-boundary auxiliaries). Every field has
   ``time_order=1`` and is advanced by ``f.forward = F(f, ...)``; the update of step n only reads
   the current slot ``t`` (or slots written earlier in the same step), so the state at step n is
   exactly the slot ``n % 2`` of every declared field. ``SolverState`` saves these slots.
2. ``coefficient_specs()``: precomputed model-derived arrays on the padded grid (folded with dt,
   so a stencil reads few arrays). Values never change during a run.
3. ``stages(fields, coeffs, layout)``: the equations of one time step, as ordered named stages
   (e.g. "velocity" then "pressure"); sources are injected right after the stage they name.
   ``layout`` (an ``AbsorbingLayout``) gives the regions (interior + absorbing strips, each a
   Devito SubDomain) and the C-PML / sponge helpers; interior equations carry no boundary terms.
4. ``injections(source)``: how a ``Source`` enters: a list of ``Injection`` (target field,
   stage, scale folded into the wavelet, time shift of the wavelet sampling in steps).
5. ``record(fields, component)``: the expression a receiver interpolates, evaluated at integer
   time ``t_n`` (after all stages of step n, so ``f.forward`` is available: a velocity stored at
   half steps is averaged ``(v^{n-1/2} + v^{n+1/2}) / 2``).
6. ``velocity_bounds()``: min and max wave speeds (unrelaxed max) for the CFL check and the
   points-per-wavelength warning; ``stencil_sum`` of the space order gives the CFL constant.

Optionally (kernels and reverse storage):

7. ``adjoint()``: the exact discrete adjoint of the step, an
   :class:`~anelastic.physics.adjoint.AdjointScheme`;
8. ``inverse_stages(fields, coeffs, interiors)``: the inverse of the step on the undamped
   interior (backward reconstruction of a lossless forward field).

Names must not look like Devito temporaries (``r0``, ``r1``...): use descriptive names.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from anelastic.acquisition import Component, Source

if TYPE_CHECKING:
    from anelastic.physics.adjoint import AdjointScheme


VELOCITY_NAMES = {"x": "vx", "y": "vy", "z": "vz"}
"""Name of the velocity field (and receiver component) along each axis."""


class PhysicsKind(enum.Enum):
    VISCOACOUSTIC = "viscoacoustic"
    VISCOELASTIC = "viscoelastic"


class BoundaryKind(enum.Enum):
    CPML = "cpml"
    SPONGE = "sponge"


class FieldRole(enum.Enum):
    WAVEFIELD = "wavefield"
    MEMORY = "memory"
    BOUNDARY = "boundary"


@dataclass(frozen=True)
class PhysicsConfig:
    """Numerical choices. ``band`` (Hz) defaults to [f0/10, 10 f0] of the first source."""

    kind: PhysicsKind = PhysicsKind.VISCOACOUSTIC
    space_order: int = 8
    boundary: BoundaryKind = BoundaryKind.CPML
    pml_width: int = 20
    n_sls: int = 3
    band: tuple[float, float] | None = None
    free_surface: bool = False
    dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.space_order not in STENCIL_SUMS:
            raise ValueError(
                f"space_order must be one of {sorted(STENCIL_SUMS)}, got {self.space_order}"
            )
        if self.pml_width < 0:
            raise ValueError(f"pml_width must be >= 0 cells, got {self.pml_width}")
        if self.n_sls < 1:
            raise ValueError(f"n_sls must be >= 1, got {self.n_sls}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype}")


# Sum of |c_k| of the staggered first-derivative coefficients: the CFL limit of the leapfrog
# scheme is dt <= 1 / (v_max * stencil_sum * sqrt(sum_i 1 / h_i^2)) (= h / (v sqrt(d) sum|c|)).
STENCIL_SUMS = {
    2: 1.0,
    4: 9 / 8 + 1 / 24,
    6: 75 / 64 + 25 / 384 + 3 / 640,
    8: 1225 / 1024 + 245 / 3072 + 49 / 5120 + 5 / 7168,
}


@dataclass(frozen=True)
class FieldSpec:
    """One state field: ``staggered`` lists the axis names where it sits at +h/2."""

    name: str
    staggered: tuple[str, ...] = ()
    role: FieldRole = FieldRole.WAVEFIELD
    space_order: int | None = None  # None: the physics space order


@dataclass(frozen=True, eq=False)
class CoefficientSpec:
    """A model-derived array ``values`` on the padded grid, [*padded_shape]."""

    name: str
    values: np.ndarray
    staggered: tuple[str, ...] = ()
    space_order: int = 0


@dataclass(frozen=True)
class Injection:
    """Source ``s(t)`` enters ``field.forward += scale * s((n + time_shift) dt)`` after
    stage ``stage`` of step n (multilinear interpolation weights over the cell)."""

    field: str
    stage: str
    scale: float
    time_shift: float


@dataclass(frozen=True)
class Stage:
    name: str
    equations: list


RecordExpr = Callable[[dict], object]


class Physics(ABC):
    """Base of every rheology; see the module docstring for the contract."""

    kind: PhysicsKind

    def __init__(self, padded_model, config: PhysicsConfig, dt: float, band, sls_fit=None) -> None:
        """``sls_fit``: a fixed ``SLSFit`` to use instead of fitting the model's Q values (the
        kernel pass and its finite-difference checks hold the relaxation mechanisms fixed)."""
        self.model = padded_model
        self.config = config
        self.dt = float(dt)
        self.band = band
        self.sls_fit = sls_fit

    @abstractmethod
    def field_specs(self) -> tuple[FieldSpec, ...]: ...

    @abstractmethod
    def coefficient_specs(self) -> tuple[CoefficientSpec, ...]: ...

    @abstractmethod
    def stages(self, fields: dict, coeffs: dict, layout) -> list[Stage]: ...

    @abstractmethod
    def injections(self, source: Source, cell_volume: float) -> list[Injection]: ...

    @abstractmethod
    def record(self, fields: dict, component: Component): ...

    @abstractmethod
    def velocity_bounds(self) -> tuple[float, float]: ...

    def operator_key(self) -> tuple:
        """Everything, besides shapes, that changes the generated code (for operator caching)."""
        return (type(self).__name__, self.config)

    def stable_dt(self, spacing: tuple[float, ...]) -> float:
        """Largest stable time step of the leapfrog staggered scheme for this model."""
        vmax = self.velocity_bounds()[1]
        inv_h = np.sqrt(np.sum(1.0 / np.asarray(spacing) ** 2))
        return float(1.0 / (vmax * STENCIL_SUMS[self.config.space_order] * inv_h))

    @staticmethod
    @abstractmethod
    def wavefield_arrays(ndim: int) -> int:
        """Grid arrays of the wavefields (role WAVEFIELD: no memory variables, no C-PML
        auxiliaries), known from the configuration alone (reverse storage's ring)."""

    @staticmethod
    @abstractmethod
    def replay_frame_arrays(ndim: int, attenuating: bool) -> int:
        """Grid arrays in one replay-buffer frame (``len(adjoint().buffer_specs())``),
        known from the configuration alone, so a memory budget is checked before compute."""

    def adjoint(self) -> AdjointScheme:
        """The exact discrete adjoint of this rheology's step (refuses what it cannot
        transpose, with the reason)."""
        raise ValueError(f"kernels are not implemented for the {self.kind.value} physics")

    def inverse_stages(self, fields: dict, coeffs: dict, interiors: dict) -> list[Stage]:
        """Inverse-step stages in execution order (the forward's stages reversed), on the
        undamped interior SubDomains ``interiors`` (staggering tuple -> SubDomain)."""
        raise ValueError(f"no inverse step for the {self.kind.value} physics")
