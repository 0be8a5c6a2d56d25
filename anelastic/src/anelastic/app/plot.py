"""PNG figures: wavefield snapshots and seismogram sections (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from anelastic.acquisition import Component, Seismograms  # noqa: E402
from anelastic.model import Grid  # noqa: E402

UNITS = {Component.P: "Pa", Component.VX: "m/s", Component.VY: "m/s", Component.VZ: "m/s"}
"""Units of each recorded quantity (a unit source: pressure in Pa, particle velocity in m/s)."""


def wavefield_png(
    field: np.ndarray,
    grid: Grid,
    path: str | Path,
    title: str,
    sources: np.ndarray | None = None,
    receivers: np.ndarray | None = None,
    units: str = "",
) -> None:
    """Image of a 2-D field [nx, nz] (or the middle y-slice of a 3-D one) with positions;
    ``units`` labels the colour bar."""
    maps_png([(title, field)], grid, path, sources, receivers, columns=1, units=units)


def maps_png(
    panels: list[tuple[str, np.ndarray]],
    grid: Grid,
    path: str | Path,
    sources: np.ndarray | None = None,
    receivers: np.ndarray | None = None,
    columns: int = 3,
    shared_scale: bool = False,
    units: str | list[str] = "",
) -> None:
    """Maps of 2-D fields [nx, nz] (middle y-slice of 3-D ones) with source and receiver
    positions, symmetric colour scales (each its own, or one shared), colour bars labelled
    with ``units`` (one for all panels, or one per panel)."""
    labels = [units] * len(panels) if isinstance(units, str) else list(units)
    fields = [f[:, f.shape[1] // 2, :] if f.ndim == 3 else f for _, f in panels]
    shared = max(_clip(f) for f in fields) if shared_scale else None
    columns = min(columns, len(panels))
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5.2 * columns, 4.4 * rows), squeeze=False)
    for ax in axes.ravel()[len(panels) :]:
        ax.axis("off")
    for ax, (title, _), field, label in zip(axes.ravel(), panels, fields, labels, strict=False):
        clip = shared or _clip(field)
        x0, z0 = grid.origin[0], grid.origin[-1]
        x1, z1 = x0 + grid.extent[0], z0 + grid.extent[-1]
        im = ax.imshow(
            field.T, extent=(x0, x1, z1, z0), cmap="seismic", vmin=-clip, vmax=clip, aspect="equal"
        )
        if receivers is not None:
            ax.plot(receivers[:, 0], receivers[:, -1], "v", ms=3, color="k", label="receivers")
        if sources is not None:
            ax.plot(sources[:, 0], sources[:, -1], "*", ms=10, color="gold", label="sources")
        ax.set_xlabel("x (m)")
        ax.set_ylabel("z (m)")
        ax.set_title(title)
        fig.colorbar(im, ax=ax, shrink=0.8, label=label)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _clip(field: np.ndarray) -> float:
    return float(np.percentile(np.abs(field), 99.5)) or float(np.abs(field).max()) or 1.0


def seismogram_png(
    panels: list[tuple[str, Seismograms]],
    component: Component,
    path: str | Path,
    clip_fraction: float = 1.0,
    source: np.ndarray | None = None,
) -> None:
    """Side-by-side sections [nt, nrec] of one component, shared colour scale (labelled in
    the component's units), against offset x_receiver - x_source in m when ``source`` is
    given and the receivers lie in order along x (receiver index otherwise).

    The scale saturates at ``clip_fraction`` times the 99th percentile of |data| (below 1 it
    brings out weak scattered arrivals next to the direct wave).
    """
    clip = max(float(np.percentile(np.abs(s.data[component]), 99)) for _, s in panels) or 1.0
    clip *= clip_fraction
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 5), squeeze=False)
    for ax, (title, seis) in zip(axes[0], panels, strict=True):
        _section(fig, ax, seis, component, clip, source)
        ax.set_title(f"{title} ({component.value})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def components_png(seis: Seismograms, path: str | Path, source: np.ndarray | None = None) -> None:
    """One section per recorded component (each its own scale and units)."""
    comps = list(seis.data)
    fig, axes = plt.subplots(1, len(comps), figsize=(5 * len(comps), 5), squeeze=False)
    for ax, comp in zip(axes[0], comps, strict=True):
        clip = float(np.percentile(np.abs(seis.data[comp]), 99)) or 1.0
        _section(fig, ax, seis, comp, clip, source)
        ax.set_title(comp.value)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _section(fig, ax, seis: Seismograms, comp: Component, clip: float, source) -> None:
    data = seis.data[comp]
    x = seis.positions[:, 0]
    if source is not None and data.shape[1] > 1 and np.all(np.diff(x) > 0):
        offsets = x - float(np.asarray(source)[0])
        left, right, label = offsets[0], offsets[-1], "offset (m)"
    else:
        left, right, label = 0, data.shape[1] - 1, "receiver index"
    im = ax.imshow(
        data, aspect="auto", cmap="gray_r", vmin=-clip, vmax=clip,
        extent=(left, right, seis.times[-1], 0),
    )  # fmt: skip
    ax.set_xlabel(label)
    ax.set_ylabel("time (s)")
    fig.colorbar(im, ax=ax, shrink=0.8, label=f"{comp.value} ({UNITS[comp]})")


def traces_png(
    times: np.ndarray, traces: list[tuple[str, np.ndarray]], path: str | Path, title: str
) -> None:
    """Overlay of a few traces [nt] (e.g. with and without attenuation)."""
    fig, ax = plt.subplots(figsize=(8, 3.5))
    for label, trace in traces:
        ax.plot(times, trace, label=label, lw=1)
    ax.set_xlabel("time (s)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
