"""Multi-label MRF on the pixel grid, solved by alpha-expansion with gco."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import numpy as np
from pydantic import Field

from dffcore.components import Context, Params, Regularizer
from dffcore.data import AlignedStack, DepthResult, FocusVolume
from dffcore.errors import DffError
from dffcore.filters import gaussian

logger = logging.getLogger(__name__)

#: gco aborts the whole process (SIGABRT) when an energy term exceeds this.
GCO_MAX_TERM = 10_000_000


class GraphCutParams(Params):
    solver: Literal["gco"] = Field("gco", description="graph-cut library")
    algorithm: Literal["expansion", "swap"] = Field("expansion", description="move type")
    sigma: float = Field(2.0, ge=0, description="Gaussian σ smoothing each focus slice (6σ+1)")
    unary_scale: float = Field(
        100.0, gt=0, description="unary cost = normalised negated focus × this, as int32"
    )
    pair_scale: float = Field(1.0, ge=0, description="pairwise cost = |i − j| × this")
    cycles: int = Field(
        1, ge=-1, description="expansion cycles over all labels; -1 = until convergence"
    )
    init: Literal["zero", "data"] = Field(
        "zero", description="initial labels: all 0 (gco's default), or the data term's minimum"
    )
    tile: int = Field(
        128, ge=0, description="solve in tiles of this size in parallel threads; 0 = whole image"
    )
    tile_overlap: int = Field(16, ge=0, description="pixels of context around each tile")


class GraphCut(Regularizer):
    """Graph-cut MRF: unary from the smoothed focus volume, linear pairwise |i − j|.

    Energies are integers checked against gco's limits before the call, so a bad
    parameter raises an error instead of aborting the process. The reported energy
    (``diagnostics.graphcut.energy``) is that of the whole-image labelling.
    """

    name = "graphcut"
    Params = GraphCutParams
    citation = (
        "Boykov, Veksler & Zabih, Fast approximate energy minimization via graph cuts, "
        "IEEE TPAMI 23(11), 2001; gco-v3 (Delong, Osokin, Isack & Boykov, IJCV 96(1), 2012)"
    )
    licence = "solver gco: the GCO C++ code inside gco-wrapper is for research use only"

    def __call__(
        self, result: DepthResult, volume: FocusVolume, aligned: AlignedStack, ctx: Context
    ) -> DepthResult:
        p = self.params
        t0 = time.perf_counter()
        unary = build_unary(volume, p.sigma, p.unary_scale)
        n = unary.shape[2]
        pair = (p.pair_scale * np.abs(np.subtract.outer(np.arange(n), np.arange(n)))).round()
        check_gco_energy(unary, pair.astype(np.int64))
        labels = solve_tiled(unary, pair.astype(np.int32), p, ctx)
        energy = grid_energy(unary, labels, p.pair_scale)
        diag = {
            "energy": energy,
            "cycles": p.cycles,
            "tile": p.tile,
            "seconds": round(time.perf_counter() - t0, 3),
        }
        logger.info("graphcut: energy %d", energy)
        diagnostics = dict(result.diagnostics)
        diagnostics["graphcut"] = diag
        return result.replace(index=labels.astype(np.float32), diagnostics=diagnostics)


def build_unary(volume: FocusVolume, sigma: float, scale: float) -> np.ndarray:
    """(H,W,N) int32 unary: per-slice blurred focus, negated, min-max normalised, × scale.

    A frame invalid at a pixel (outside it after warping) says nothing about that pixel:
    its cost is set to the pixel's lowest valid cost, so it neither wins by itself nor is
    excluded, and the pairwise term decides (it fills image borders from their inside).
    """
    n, h, w = volume.data.shape
    u = np.empty((h, w, n), np.float32)
    for i in range(n):
        valid = None if volume.valid is None else volume.valid[i]
        u[:, :, i] = gaussian(volume.data[i], sigma, valid)
    lo, hi = np.nanmin(u), np.nanmax(u)
    span = hi - lo if hi > lo else 1.0
    # negated and normalised: cost = (hi - u) / span in [0, 1]
    np.subtract(hi, u, out=u)
    u *= scale / span
    if volume.valid is not None:
        holes = np.isnan(u)
        if holes.any():
            best = np.nanmin(u, axis=2, keepdims=True)
            np.copyto(u, np.broadcast_to(best, u.shape), where=holes)
    return np.rint(u).astype(np.int32)


def check_gco_energy(unary: np.ndarray, pair: np.ndarray) -> None:
    """Raise a :class:`DffError` for energies that would abort or overflow gco."""
    top = max(int(unary.max(initial=0)), int(pair.max(initial=0)))
    if top > GCO_MAX_TERM:
        raise DffError(
            f"an energy term reaches {top:.3g}, above gco's limit {GCO_MAX_TERM:.0e} "
            "(it would abort the process); lower unary_scale or pair_scale"
        )
    if unary.min(initial=0) < 0 or pair.min(initial=0) < 0:
        raise DffError("energy terms must be non-negative for gco")
    n = pair.shape[0]
    # alpha-expansion needs a metric: V(a,b) + V(b,c) >= V(a,c)
    if n > 2 and (pair[:, :, None] + pair[None, :, :] < pair[:, None, :]).any():
        raise DffError("the pairwise cost is not a metric; alpha-expansion needs one (use swap)")


def grid_energy(unary: np.ndarray, labels: np.ndarray, pair_scale: float) -> int:
    """Energy of a labelling on the 4-connected grid with linear pairwise cost."""
    data = np.take_along_axis(unary, labels[:, :, None].astype(np.intp), axis=2).sum(dtype=np.int64)
    step = round(pair_scale)
    smooth = np.abs(np.diff(labels, axis=0)).sum(dtype=np.int64)
    smooth += np.abs(np.diff(labels, axis=1)).sum(dtype=np.int64)
    return int(data + step * smooth)


def solve_tiled(unary: np.ndarray, pair: np.ndarray, p: GraphCutParams, ctx: Context) -> np.ndarray:
    """Solve on overlapping tiles in parallel (gco releases the GIL) and stitch the cores."""
    h, w, _ = unary.shape
    size = p.tile if p.tile > 0 else max(h, w)
    ov = p.tile_overlap if p.tile > 0 else 0
    tiles = [(y, x) for y in range(0, h, size) for x in range(0, w, size)]
    labels = np.empty((h, w), np.int32)
    done = 0

    def run(tile: tuple[int, int]) -> None:
        y, x = tile
        y0, y1, x0, x1 = (
            max(0, y - ov),
            min(h, y + size + ov),
            max(0, x - ov),
            min(w, x + size + ov),
        )
        sub, _ = solve_gco(unary[y0:y1, x0:x1], pair, p)
        labels[y : y + size, x : x + size] = sub[y - y0 : y - y0 + size, x - x0 : x - x0 + size]

    workers = max(1, min(ctx.jobs, len(tiles)))
    with ThreadPoolExecutor(workers) as pool:
        for _ in pool.map(run, tiles):
            done += 1
            ctx.progress(done, len(tiles))
    return labels


def solve_gco(unary: np.ndarray, pair: np.ndarray, p: GraphCutParams) -> tuple[np.ndarray, int]:
    """One gco solve of an (H,W,N) int32 unary; returns the labels and gco's own energy.

    gco reads the raw memory of the arrays it is given: the unary is made C-contiguous
    here, since a transposed view would silently be read in the wrong order.
    """
    unary = np.ascontiguousarray(unary, dtype=np.int32)
    try:
        import gco
        from gco.cgco import _cgco
    except ImportError as exc:  # pragma: no cover - gco-wrapper is a dependency
        raise DffError(
            f"graphcut solver gco needs gco-wrapper (pip install gco-wrapper): {exc}"
        ) from None
    h, w, n = unary.shape
    idx = np.arange(h * w, dtype=np.int32).reshape(h, w)
    e_from = np.concatenate([idx[:-1].ravel(), idx[:, :-1].ravel()])
    e_to = np.concatenate([idx[1:].ravel(), idx[:, 1:].ravel()])
    g = gco.GCO()
    g.create_general_graph(h * w, n, False)
    try:
        g.set_data_cost(unary.reshape(h * w, n))
        g.set_all_neighbors(e_from, e_to, np.ones(e_from.size, np.int32))
        g.set_smooth_cost(pair)
        if p.init == "data":
            start = unary.reshape(h * w, n).argmin(axis=1)
            init = _cgco.gcoInitLabelAtSite
            for site in np.flatnonzero(start).tolist():
                init(g.handle, site, int(start[site]))
        if p.algorithm == "expansion":
            g.expansion(p.cycles)
        else:
            g.swap(p.cycles)
        return g.get_labels().reshape(h, w), int(g.compute_energy())
    finally:
        g.destroy_graph()
