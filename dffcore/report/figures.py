"""Figures of a report: depth, error and all-in-focus panels of several results.

:func:`draw_figures` writes, for one stack, ``depth_<stem>.png`` (the ground truth and
every result on one colour scale), ``error_<stem>.png`` (|result - truth| on one scale,
capped at the 99th percentile) and ``aif_<stem>.png`` (a crop of every all-in-focus image
around the strongest depth edge, :func:`edge_crop`). Matplotlib is imported only when a
figure is drawn.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dffcore.io.images import atomic_write_bytes
from dffcore.ops.convert import to_float32

CROP_SIZE = 128  # side of the all-in-focus crop of the figures
FIGURE_DPI = 150
NO_DATA = 0.85  # grey of the pixels a result does not cover


@dataclass(frozen=True)
class ResultMaps:
    """One result to draw: its ``name`` and maps in the result's pixel grid.

    ``depth`` is in the unit of the ground-truth map (slice index, disparity, ...),
    ``all_in_focus`` an image; ``crop`` ``(x, y, w, h)`` places a cropped result in the
    reference grid (None: the result covers it). A None map is drawn as "failed".
    """

    name: str
    depth: np.ndarray | None = None
    all_in_focus: np.ndarray | None = None
    crop: Sequence[int] | None = None


def edge_crop(truth: np.ndarray, size: int = CROP_SIZE) -> tuple[int, int, int, int]:
    """The box around the strongest depth edge of a ground-truth map.

    Parameters
    ----------
    truth : ndarray
        (H, W) map; NaN has no gradient.
    size : int
        Side of the box (the image's, if smaller).

    Returns
    -------
    tuple of int
        ``(x, y, w, h)``: a ``size`` x ``size`` box centred on the largest gradient
        magnitude of ``truth`` (the first one), kept inside the image; the centre of the
        image when ``truth`` has no edge.
    """
    h, w = truth.shape
    cw, ch = min(size, w), min(size, h)
    gy, gx = np.gradient(np.asarray(truth, np.float64))
    mag = np.nan_to_num(np.hypot(gx, gy), nan=0.0)
    if mag.max() > 0:
        y, x = np.unravel_index(int(np.argmax(mag)), mag.shape)
    else:
        y, x = h // 2, w // 2
    x0 = int(np.clip(x - cw // 2, 0, w - cw))
    y0 = int(np.clip(y - ch // 2, 0, h - ch))
    return x0, y0, cw, ch


def paste(
    arr: np.ndarray, crop: Sequence[int] | None, shape: Sequence[int], fill: float
) -> np.ndarray:
    """A result in its (possibly cropped) grid, placed in the full reference grid.

    Parameters
    ----------
    arr : ndarray
        (h, w) or (h, w, C) result.
    crop : sequence of int or None
        ``(x, y, ...)`` of the result's top-left corner in the reference grid.
    shape : sequence of int
        ``(H, W)`` of the reference grid.
    fill : float
        Value of the pixels the result does not cover.

    Returns
    -------
    ndarray
        float32 (H, W) or (H, W, C).
    """
    if crop is None and tuple(arr.shape[:2]) == tuple(shape):
        return arr.astype(np.float32)
    full = np.full((*shape, *arr.shape[2:]), fill, np.float32)
    x, y = (crop or (0, 0))[:2]
    h, w = arr.shape[:2]
    full[y : y + h, x : x + w] = arr
    return full


def rgb01(image: np.ndarray) -> np.ndarray:
    """An image as float32 in [0, 1], one-channel images made RGB (for ``imshow``)."""
    img = np.clip(to_float32(image), 0, 1)
    return np.repeat(img, 3, axis=2) if img.ndim == 3 and img.shape[2] == 1 else img


def panels_figure(
    panels: Sequence[tuple[str, np.ndarray | None]],
    cmap: Any,
    vmin: float,
    vmax: float,
    label: str,
    extend: str = "neither",
) -> bytes:
    """Titled image panels, up to 4 a row, with one colour bar, as PNG bytes.

    Parameters
    ----------
    panels : sequence of (str, ndarray or None)
        Title and map of each panel (at least one map); a None map is a grey "failed"
        placeholder.
    cmap : matplotlib colormap or None
        Colour map of the maps; None: the maps are RGB images in [0, 1], no colour bar.
    vmin, vmax : float
        Range of the colour scale.
    label : str
        Label of the colour bar.
    extend : str
        The colour bar's ``extend`` (``"max"`` when values above ``vmax`` are capped).

    Returns
    -------
    bytes
        The PNG file.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = len(panels)
    cols = min(n, 4)
    rows = -(-n // cols)
    shape = next(p.shape for _, p in panels if p is not None)
    h, w = shape[:2]
    pw = 2.6  # inches per panel
    fig = Figure(
        figsize=(pw * cols + (0.9 if cmap else 0.1), (pw * h / w + 0.35) * rows),
        layout="constrained",
    )
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    image = None
    for ax, (title, data) in itertools.zip_longest(axes.ravel(), panels, fillvalue=(None, None)):
        ax.set_axis_off()
        if title is None:
            continue
        ax.set_title(title, fontsize=8)
        if data is None:
            data = np.full(shape, np.nan if cmap else NO_DATA, np.float32)
            ax.text(0.5, 0.5, "failed", ha="center", va="center", transform=ax.transAxes)
        if cmap is None:
            ax.imshow(data, interpolation="nearest")
        else:
            image = ax.imshow(data, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    if image is not None:
        fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.9, label=label, extend=extend)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=FIGURE_DPI)
    return buf.getvalue()


def draw_figures(
    root: Path,
    stem: str,
    results: Sequence[ResultMaps],
    *,
    truth: np.ndarray | None = None,
    true_aif: np.ndarray | None = None,
    shape: Sequence[int] | None = None,
    label: str = "slice index",
) -> list[str]:
    """Write the depth, error and all-in-focus figures of one stack into ``root``.

    Parameters
    ----------
    root : Path
        The report folder.
    stem : str
        Part of the file names: ``depth_<stem>.png``, ``error_<stem>.png``,
        ``aif_<stem>.png``.
    results : sequence of ResultMaps
        One per result, in panel order.
    truth : ndarray, optional
        Ground-truth map (reference grid), in the unit of the results' ``depth``.
    true_aif : ndarray, optional
        The true all-in-focus image (reference grid).
    shape : sequence of int, optional
        ``(H, W)`` of the reference grid; default: the first result's depth map's.
    label : str
        Label of the depth colour bar (the unit of the maps).

    Returns
    -------
    list of str
        The names of the files written: those figures that have something to show
        (none when no map is known).
    """
    import matplotlib

    cmap = matplotlib.colormaps["viridis"].with_extremes(bad=str(NO_DATA))
    hot = matplotlib.colormaps["magma"].with_extremes(bad=str(NO_DATA))
    preds: list[tuple[str, np.ndarray | None]] = [
        (
            r.name,
            None if r.depth is None else paste(r.depth, r.crop, shape or r.depth.shape, np.nan),
        )
        for r in results
    ]
    if shape is None:
        shape = next((p.shape for _, p in preds if p is not None), None)
    if shape is None:
        return []  # nothing known: nothing to draw
    written: list[str] = []

    def save(name: str, data: bytes) -> None:
        atomic_write_bytes(root / name, data)
        written.append(name)

    maps = ([("ground truth", truth)] if truth is not None else []) + preds
    finite = [m[np.isfinite(m)] for _, m in maps if m is not None]
    finite = [f for f in finite if f.size]
    vmin = min(float(f.min()) for f in finite) if finite else 0.0
    vmax = max(float(f.max()) for f in finite) if finite else 1.0
    if finite:
        save(f"depth_{stem}.png", panels_figure(maps, cmap, vmin, max(vmax, vmin + 1e-6), label))
    if truth is not None and any(p is not None for _, p in preds):
        errors = [(n, None if p is None else np.abs(p - truth)) for n, p in preds]
        values = np.concatenate([e[np.isfinite(e)] for _, e in errors if e is not None])
        top = float(np.percentile(values, 99)) if values.size else 1.0
        save(
            f"error_{stem}.png",
            panels_figure(errors, hot, 0.0, max(top, 1e-6), f"|error|, {label}", "max"),
        )
    x, y, w, h = edge_crop(truth) if truth is not None else edge_crop(np.zeros(shape))
    crops: list[tuple[str, np.ndarray | None]] = []
    if true_aif is not None:
        crops.append(("ground truth", rgb01(true_aif)[y : y + h, x : x + w]))
    for r in results:
        img = None
        if r.all_in_focus is not None:
            img = paste(rgb01(r.all_in_focus), r.crop, shape, NO_DATA)[y : y + h, x : x + w]
        crops.append((r.name, img))
    if any(c is not None for _, c in crops):
        save(f"aif_{stem}.png", panels_figure(crops, None, 0, 1, ""))
    return written
