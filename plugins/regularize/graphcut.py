"""Multi-label MRF on the pixel grid, solved by graph-cut moves (gco or PyMaxflow).

The energy, in exact integers, is

    E(L) = Σ_p U_p(L_p) + Σ_(p,q) w_pq · V(L_p, L_q),   V(i, j) = round(pair_scale · f(|i − j|))

on the 4-connected grid: ``U`` from the smoothed, negated, normalised focus volume,
``f`` linear, truncated linear or truncated quadratic, ``w_pq`` 1 or contrast-sensitive
from the all-in-focus image. Both solvers see the same integers, so their energies
compare directly; every term is checked against the solver's limits before it runs.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from dffcore.core.components import Context, Params, Regularizer
from dffcore.core.data import AlignedStack, DepthResult, FocusVolume
from dffcore.core.errors import DffError
from dffcore.ops.convert import to_grey
from dffcore.ops.filters import gaussian, take_frames
from dffcore.ops.peaks import SubFrame, refine_index

from ._maxflow import Weights, grid_energy, solve_maxflow

__all__ = [
    "GraphCut",
    "GraphCutParams",
    "build_unary",
    "check_energy",
    "check_gco_energy",
    "check_params",
    "contrast_weights",
    "grid_energy",
    "initial_labels",
    "pairwise_matrix",
    "pool",
    "smooth_volume",
    "solve_gco",
    "solve_levels",
    "solve_tiled",
]

logger = logging.getLogger(__name__)

#: gco aborts the whole process (SIGABRT) when an energy term exceeds this.
GCO_MAX_TERM = 10_000_000
#: PyMaxflow's GraphInt has int32 capacities; a terminal link sums a unary difference and
#: the linear parts of four edges (each up to twice a term), so terms stay below 2³¹/16.
MAXFLOW_MAX_TERM = (2**31 - 1) // 16
#: both solvers sum energies in 64 bits; keep a margin
MAX_TOTAL = 2**62
TERM_LIMITS = {"gco": GCO_MAX_TERM, "maxflow": MAXFLOW_MAX_TERM}
#: what a user must know about the solver's licence (printed once per run, in run.json)
LICENCE_NOTICES = {
    "gco": "graphcut runs gco (the GCO C++ library in gco-wrapper): research use only, "
    "no commercial use; solver: maxflow avoids it",
    "maxflow": "graphcut runs PyMaxflow: GPL-3.0",
}

Solver = Literal["gco", "maxflow"]
Algorithm = Literal["expansion", "swap"]
Pairwise = Literal["linear", "truncated-linear", "truncated-quadratic"]


class GraphCutParams(Params):
    solver: Solver = Field(
        "gco",
        description="gco (C++, releases the GIL: tiles run in parallel) or maxflow "
        "(PyMaxflow graphs built here, holds the GIL)",
    )
    algorithm: Algorithm = Field(
        "expansion",
        description="alpha-expansion (needs a metric pairwise) or alpha-beta swap (any)",
    )
    sigma: float = Field(
        2.0,
        ge=0,
        le=200,
        description="Gaussian σ smoothing each focus slice (6σ+1) (at most 200 px)",
    )
    unary_scale: float = Field(
        100.0, gt=0, description="unary cost = normalised negated focus × this, as int32"
    )
    pairwise: Pairwise = Field(
        "linear",
        description="f(d) of the pairwise cost, d = |i − j|: d, min(d, truncation) or "
        "min(d, truncation)² (not a metric: needs algorithm swap)",
    )
    truncation: float = Field(
        4.0, gt=0, description="label distance where the truncated pairwise costs stop growing"
    )
    pair_scale: float = Field(
        1.0, ge=0, description="pairwise cost V(i, j) = round(pair_scale × f(|i − j|))"
    )
    contrast_sigma: float = Field(
        0.0,
        ge=0,
        description="edge weights exp(−ΔI² / 2σ²) from the grey all-in-focus image "
        "(intensities in [0, 1]), so depth edges follow intensity edges; 0 = uniform",
    )
    weight_scale: int = Field(
        10,
        ge=1,
        le=GCO_MAX_TERM,
        description="with contrast weights: integer edge weight round(weight_scale × w), "
        "unary multiplied by weight_scale to keep the balance",
    )
    cycles: int = Field(
        1,
        ge=-1,
        le=1000,
        description="cycles over all labels (pairs for swap); -1 = until convergence"
        " (at most 1000)",
    )
    init: Literal["zero", "data", "result"] = Field(
        "zero",
        description="initial labels: all 0 (gco's default), the data term's minimum, or "
        "the incoming result's index rounded",
    )
    coarse_to_fine: int = Field(
        0,
        ge=0,
        le=10,
        description="levels of 2× coarser problems (unary summed over blocks, edge weights "
        "summed across block borders) solved first, each initialising the next; 0 = off",
    )
    subframe: SubFrame = Field(
        "none",
        description="refine the chosen label on the smoothed focus curve: none, parabolic "
        "or gaussian 3-point fit",
    )
    tile: int = Field(
        128,
        ge=0,
        le=65536,
        description="solve in tiles of this size in parallel threads; 0 = whole image"
        " (at most 65536 px)",
    )
    tile_overlap: int = Field(
        16, ge=0, le=1000, description="pixels of context around each tile (at most 1000 px)"
    )

    @model_validator(mode="after")
    def _metric_for_expansion(self) -> GraphCutParams:
        # caught when the spec is validated, before any work (gco would abort the process)
        if self.pairwise == "truncated-quadratic" and self.algorithm == "expansion":
            raise ValueError(
                "pairwise truncated-quadratic is not a metric, which algorithm expansion "
                "needs; set algorithm: swap"
            )
        return self


class GraphCut(Regularizer):
    """Graph-cut MRF: unary from the smoothed focus volume, (truncated) pairwise |i − j|.

    Energies are integers checked against the solver's limits before the call, so a bad
    parameter raises an error instead of aborting the process. The reported energy
    (``diagnostics.graphcut.energy``) is that of the whole-image labelling, computed in
    numpy; with contrast weights every term is multiplied by ``weight_scale``.
    """

    name = "graphcut"
    Params = GraphCutParams
    citation = (
        "Boykov, Veksler & Zabih, Fast approximate energy minimization via graph cuts, "
        "IEEE TPAMI 23(11), 2001; Kolmogorov & Zabih, What energy functions can be "
        "minimized via graph cuts?, IEEE TPAMI 26(2), 2004; gco-v3 (Delong, Osokin, Isack "
        "& Boykov, IJCV 96(1), 2012); Boykov & Kolmogorov, An experimental comparison of "
        "min-cut/max-flow algorithms for energy minimization in vision, IEEE TPAMI 26(9), "
        "2004 (PyMaxflow)"
    )
    licence = (
        "solver gco: the GCO C++ code inside gco-wrapper is for research use only; "
        "solver maxflow: PyMaxflow is GPL-3.0"
    )

    def notices(self) -> list[str]:
        return [LICENCE_NOTICES[self.params.solver]]

    def __call__(
        self, result: DepthResult, volume: FocusVolume, aligned: AlignedStack, ctx: Context
    ) -> DepthResult:
        p = self.params
        t0 = time.perf_counter()
        check_params(p)
        smoothed = smooth_volume(volume, p.sigma) if p.subframe != "none" else None
        levels, pair = self.problem(result, volume, aligned, smoothed)
        init = initial_labels(p, levels[-1][0], result, 2**p.coarse_to_fine)
        labels, report = solve_levels(levels, pair, p, ctx, init)
        if smoothed is None:
            index = labels.astype(np.float32)
        else:
            index = refine_index(smoothed, labels, p.subframe)
        energy = report[-1]["energy"]
        diag = {
            "solver": p.solver,
            "algorithm": p.algorithm,
            "pairwise": p.pairwise,
            "energy": energy,
            "cycles": p.cycles,
            "tile": p.tile,
            "levels": report,
            "seconds": round(time.perf_counter() - t0, 3),
        }
        logger.info("graphcut (%s %s): energy %d", p.solver, p.algorithm, energy)
        diagnostics = dict(result.diagnostics)
        diagnostics["graphcut"] = diag
        return result.replace(index=index, diagnostics=diagnostics)

    def problem(
        self,
        result: DepthResult,
        volume: FocusVolume,
        aligned: AlignedStack,
        smoothed: np.ndarray | None = None,
    ) -> tuple[list[tuple[np.ndarray, Weights]], np.ndarray]:
        """The checked integer problem: [(unary, weights)] fine to coarse, and the pairwise.

        Every level is checked against the solver's limits before any solver runs.
        """
        p = self.params
        unary = build_unary(volume, p.sigma, p.unary_scale, smoothed)
        pair = pairwise_matrix(volume.n, p.pairwise, p.pair_scale, p.truncation)
        weights: Weights = None
        if p.contrast_sigma > 0:
            aif = result.all_in_focus
            if aif is None:
                aif = take_frames(aligned.frames, np.rint(result.index))
            weights = contrast_weights(to_grey(aif), p.contrast_sigma, p.weight_scale)
            unary *= np.int32(p.weight_scale)
        levels = [(unary, weights)]
        for _ in range(p.coarse_to_fine):
            levels.append(pool(*levels[-1]))
        for k, (u, w) in enumerate(levels):
            where = f" (coarse_to_fine level {k})" if k else ""
            check_energy(u, pair, w, solver=p.solver, algorithm=p.algorithm, where=where)
        levels = [(u.astype(np.int32, copy=False), w) for u, w in levels]
        return levels, pair.astype(np.int32)


def check_params(p: GraphCutParams) -> None:
    """Energy limits known from the parameters alone, checked before anything is computed.

    (A non-metric pairwise with expansion is refused by ``GraphCutParams`` itself.)
    """
    top = p.unary_scale * (p.weight_scale if p.contrast_sigma > 0 else 1)
    if top > TERM_LIMITS[p.solver]:  # the normalised unary reaches unary_scale
        raise DffError(_too_big("an energy term", top, p.solver, _UNARY_FIX))


def solve_levels(
    levels: list[tuple[np.ndarray, Weights]],
    pair: np.ndarray,
    p: GraphCutParams,
    ctx: Context,
    init: np.ndarray | None = None,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Solve coarsest first; each level's labels, upsampled, start the next finer one.

    Returns the finest labels and per level its index, shape, energy and seconds.
    """
    report: list[dict[str, Any]] = []
    for k in range(len(levels) - 1, -1, -1):
        t = time.perf_counter()
        u, w = levels[k]
        if init is not None and init.shape != u.shape[:2]:  # upsample the coarser labels
            init = np.repeat(np.repeat(init, 2, axis=0), 2, axis=1)[: u.shape[0], : u.shape[1]]
        labels = solve_tiled(u, pair, p, ctx, weights=w, init=init)
        seconds = time.perf_counter() - t
        energy = grid_energy(u, labels, pair, w)
        report.append(
            {"level": k, "shape": list(u.shape[:2]), "energy": energy, "seconds": round(seconds, 3)}
        )
        init = labels
    return labels, report


def smooth_volume(volume: FocusVolume, sigma: float) -> np.ndarray:
    """(N,H,W) float32: each focus slice blurred (masked); NaN where a frame is invalid."""
    n, h, w = volume.data.shape
    out = np.empty((n, h, w), np.float32)
    for i in range(n):
        valid = None if volume.valid is None else volume.valid[i]
        out[i] = gaussian(volume.data[i], sigma, valid)
    return out


def build_unary(
    volume: FocusVolume, sigma: float, scale: float, smoothed: np.ndarray | None = None
) -> np.ndarray:
    """(H,W,N) int32 unary: per-slice blurred focus, negated, min-max normalised, × scale.

    ``smoothed`` is :func:`smooth_volume`'s output when already computed. A frame
    invalid at a pixel (outside it after warping) says nothing about that pixel: its cost
    is set to the pixel's lowest valid cost, so it neither wins by itself nor is
    excluded, and the pairwise term decides (it fills image borders from their inside).
    """
    n, h, w = volume.data.shape
    if scale > np.iinfo(np.int32).max:
        raise DffError(_too_big("an energy term", scale, "int32", _UNARY_FIX))
    u = np.empty((h, w, n), np.float32)
    top = np.full((h, w), -np.inf, np.float32)  # each pixel's highest valid focus
    lo, hi = np.inf, -np.inf
    for i in range(n):
        valid = None if volume.valid is None else volume.valid[i]
        if smoothed is not None:
            s = smoothed[i]
        else:
            s = gaussian(volume.data[i], sigma, valid)
        u[:, :, i] = s
        np.fmax(top, s, out=top)  # fmax ignores the NaN of invalid pixels
        lo, hi = min(lo, float(np.nanmin(s))), max(hi, float(np.nanmax(s)))
    span = hi - lo if hi > lo else 1.0
    k = np.float32(scale / span)
    # negated and normalised: cost = (hi - u) / span in [0, 1], times scale
    np.subtract(np.float32(hi), u, out=u)
    u *= k
    if volume.valid is not None:
        best = (np.float32(hi) - top) * k  # the pixel's lowest valid cost
        for i in range(n):
            missing = ~volume.valid[i]
            if missing.any():
                u[:, :, i][missing] = best[missing]
    np.rint(u, out=u)
    return u.astype(np.int32)


def pairwise_matrix(n: int, kind: Pairwise, scale: float, truncation: float) -> np.ndarray:
    """(N,N) float64 of integers: V(i, j) = round(scale × f(|i − j|)), f by ``kind``."""
    d = np.abs(np.subtract.outer(np.arange(n), np.arange(n))).astype(np.float64)
    if kind == "truncated-linear":
        d = np.minimum(d, truncation)
    elif kind == "truncated-quadratic":
        d = np.minimum(d, truncation) ** 2
    return np.rint(scale * d)


def contrast_weights(grey: np.ndarray, sigma: float, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer edge weights round(scale × exp(−(I_p − I_q)² / 2σ²)), vertical and horizontal."""
    grey = grey.astype(np.float32)
    k = np.float32(-0.5 / sigma**2)
    dv = np.diff(grey, axis=0)
    dh = np.diff(grey, axis=1)
    return (
        np.rint(scale * np.exp(k * dv * dv)).astype(np.int32),
        np.rint(scale * np.exp(k * dh * dh)).astype(np.int32),
    )


def pool(unary: np.ndarray, weights: Weights) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """The 2× coarser problem whose energy equals the fine energy of its upsampled labels.

    A coarse pixel's unary sums its 2×2 block's costs; a coarse edge's weight sums the
    fine edges crossing between the two blocks (odd sizes: missing pixels cost 0).
    """
    h, w, n = unary.shape
    hc, wc = (h + 1) // 2, (w + 1) // 2
    u = np.zeros((2 * hc, 2 * wc, n), np.int64)
    u[:h, :w] = unary
    coarse = u.reshape(hc, 2, wc, 2, n).sum(axis=(1, 3))
    wv, wh = weights if weights is not None else (np.ones((h - 1, w)), np.ones((h, w - 1)))
    pv = np.zeros((2 * hc - 1, 2 * wc), np.int64)
    pv[: h - 1, :w] = wv
    ph = np.zeros((2 * hc, 2 * wc - 1), np.int64)
    ph[:h, : w - 1] = wh
    cv = pv[1::2].reshape(hc - 1, wc, 2).sum(axis=2)
    ch = ph[:, 1::2].reshape(hc, 2, wc - 1).sum(axis=1)
    return coarse, (cv, ch)


_UNARY_FIX = "lower unary_scale"


def _too_big(what: str, value: float, solver: str, fix: str) -> str:
    limits = {
        "gco": f"above gco's limit {GCO_MAX_TERM:.0e} (it would abort the process)",
        "maxflow": f"above maxflow's limit {MAXFLOW_MAX_TERM:.2e} (int32 capacities)",
        "int32": "above the int32 range",
    }
    return f"{what} reaches {value:.3g}, {limits[solver]}; {fix}"


def check_energy(
    unary: np.ndarray,
    pair: np.ndarray,
    weights: Weights = None,
    *,
    solver: Solver = "gco",
    algorithm: Algorithm = "expansion",
    where: str = "",
) -> None:
    """Raise a :class:`DffError` for energies that would abort or overflow the solver.

    Checks, in exact Python integers: every unary term, every weight × pairwise product,
    the largest possible total energy, and (for expansion) that the pairwise is a metric.
    """
    limit = TERM_LIMITS[solver]
    top_u = int(unary.max(initial=0))
    if top_u > limit:
        raise DffError(_too_big("an energy term", top_u, solver, _UNARY_FIX + where))
    top_v = int(np.max(pair, initial=0))
    top_w = 1 if weights is None else max(int(w.max(initial=0)) for w in weights)
    if top_v * top_w > limit:
        fix = "lower pair_scale" + (" or weight_scale" if weights is not None else "")
        if where:
            fix += where
        what = "an energy term" if weights is None else "an edge term (weight × pairwise)"
        raise DffError(_too_big(what, top_v * top_w, solver, fix))
    if unary.min(initial=0) < 0 or np.min(pair, initial=0) < 0:
        raise DffError("energy terms must be non-negative")
    if weights is not None and min(int(w.min(initial=0)) for w in weights) < 0:
        raise DffError("edge weights must be non-negative")
    h, w, _ = unary.shape
    if weights is None:
        edge_sum = (h - 1) * w + h * (w - 1)
    else:
        edge_sum = sum(int(x.sum(dtype=np.int64)) for x in weights)
    total = int(unary.max(axis=2).sum(dtype=np.int64)) + edge_sum * top_v
    if total > MAX_TOTAL:
        raise DffError(
            f"the total energy can reach {total:.3g}, above 2^62{where}; lower unary_scale "
            "or pair_scale"
        )
    n = pair.shape[0]
    # alpha-expansion needs a metric: V(a,b) + V(b,c) >= V(a,c)
    if algorithm == "expansion" and n > 2:
        v = np.asarray(pair, np.float64)
        if (v[:, :, None] + v[None, :, :] < v[:, None, :]).any():
            raise DffError(
                "the integer pairwise cost round(pair_scale × f) is not a metric, which "
                "algorithm expansion needs; use algorithm: swap or a larger pair_scale"
            )


def check_gco_energy(unary: np.ndarray, pair: np.ndarray) -> None:
    """:func:`check_energy` for gco's expansion with uniform weights."""
    check_energy(unary, pair)


def initial_labels(
    p: GraphCutParams, unary: np.ndarray, result: DepthResult, step: int = 1
) -> np.ndarray | None:
    """Starting labels for ``unary`` (the coarsest level, ``step``× subsampled); None = 0."""
    if p.init == "data":
        return unary.argmin(axis=2).astype(np.int32)
    if p.init == "result":
        n = unary.shape[2]
        index = np.nan_to_num(result.index[::step, ::step], nan=0.0)
        return np.clip(np.rint(index), 0, n - 1).astype(np.int32)
    return None


def solve_tiled(
    unary: np.ndarray,
    pair: np.ndarray,
    p: GraphCutParams,
    ctx: Context,
    weights: Weights = None,
    init: np.ndarray | None = None,
) -> np.ndarray:
    """Solve on overlapping tiles in parallel and stitch the cores.

    gco releases the GIL, so its tiles run in parallel threads; PyMaxflow holds it, so
    its tiles mostly take turns. ``init`` (H,W) are starting labels; without them
    ``init: data`` starts from the unary's minimum and ``zero`` from label 0.
    """
    h, w, _ = unary.shape
    if init is None and p.init == "data":
        init = unary.argmin(axis=2).astype(np.int32)
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
        sub_w = None
        if weights is not None:
            sub_w = (weights[0][y0 : y1 - 1, x0:x1], weights[1][y0:y1, x0 : x1 - 1])
        sub_init = None if init is None else init[y0:y1, x0:x1]
        if p.solver == "gco":
            sub, _ = solve_gco(unary[y0:y1, x0:x1], pair, p, sub_w, sub_init)
        else:
            sub, _ = solve_maxflow(
                unary[y0:y1, x0:x1], pair, sub_w, sub_init, p.algorithm, p.cycles
            )
        labels[y : y + size, x : x + size] = sub[y - y0 : y - y0 + size, x - x0 : x - x0 + size]

    workers = max(1, min(ctx.jobs, len(tiles)))
    with ThreadPoolExecutor(workers) as pool_:
        for _ in pool_.map(run, tiles):
            done += 1
            ctx.progress(done, len(tiles))
    return labels


def solve_gco(
    unary: np.ndarray,
    pair: np.ndarray,
    p: GraphCutParams,
    weights: Weights = None,
    init: np.ndarray | None = None,
) -> tuple[np.ndarray, int]:
    """One gco solve of an (H,W,N) int32 unary; returns the labels and gco's own energy.

    gco reads the raw memory of the arrays it is given: they are made C-contiguous int32
    here, since a transposed view would silently be read in the wrong order. ``weights``
    as in :data:`Weights`; ``init`` (H,W) starting labels (``init: data`` without them
    starts from the unary's minimum).
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
    if n < 2:  # gco aborts with fewer than two labels; the only labelling is all 0
        labels = np.zeros((h, w), np.int32)
        return labels, grid_energy(unary, labels, pair, weights)
    idx = np.arange(h * w, dtype=np.int32).reshape(h, w)
    e_from = np.concatenate([idx[:-1].ravel(), idx[:, :-1].ravel()])
    e_to = np.concatenate([idx[1:].ravel(), idx[:, 1:].ravel()])
    if weights is None:
        e_weight = np.ones(e_from.size, np.int32)
    else:
        e_weight = np.concatenate([weights[0].ravel(), weights[1].ravel()]).astype(np.int32)
    if init is None and p.init == "data":
        init = unary.argmin(axis=2)
    g = gco.GCO()
    g.create_general_graph(h * w, n, False)
    try:
        g.set_data_cost(unary.reshape(h * w, n))
        if e_from.size:  # a 1x1 tile has no edges (and gco-wrapper rejects empty arrays)
            g.set_all_neighbors(e_from, e_to, e_weight)
        g.set_smooth_cost(np.ascontiguousarray(pair, dtype=np.int32))
        if init is not None:
            start = np.asarray(init).ravel()
            set_label = _cgco.gcoInitLabelAtSite
            for site in np.flatnonzero(start).tolist():  # gco has no whole-array setter
                set_label(g.handle, site, int(start[site]))
        if p.algorithm == "expansion":
            g.expansion(p.cycles)
        else:
            g.swap(p.cycles)
        return g.get_labels().reshape(h, w), int(g.compute_energy())
    finally:
        g.destroy_graph()
