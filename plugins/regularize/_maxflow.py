"""Alpha-expansion and alpha-beta-swap moves on PyMaxflow graphs, built with numpy.

PyMaxflow's own grid alpha-expansion takes no per-edge weights, so the moves are built
here. A move gives every *active* pixel ``p`` the choice between two labels, ``lab0[p]``
(binary variable ``x_p = 0``) and ``lab1[p]`` (``x_p = 1``); the other pixels keep their
label (``lab0 = lab1`` there). For a 4-connected edge ``(p, q)`` with weight ``w`` the
four costs ``E_ij = w V(lab_i[p], lab_j[q])`` are split (Kolmogorov & Zabih 2004) into

    E(x_p, x_q) = E00 + (E10 − E00) x_p + (E11 − E10) x_q + (E01 + E10 − E00 − E11)(1 − x_p) x_q

so the linear parts go to the terminal links and the last term is one edge ``p → q``
whose capacity is non-negative when the move is submodular (always for a swap; for an
expansion when ``V`` is a metric). An edge touching a fixed pixel has a zero last term,
so the graph holds the active pixels only. Every array operation covers the whole grid
at once: no Python loop over pixels or edges, only over the labels (moves).

A move's energy is a constant plus the max flow; it is applied only when it lowers the
energy. With gco's label order and tie-breaking (see :func:`_cycle`) both solvers
usually follow the same path to the same labelling.

Energies are integers (int64 in numpy; capacities must fit PyMaxflow's int32 ``GraphInt``,
which the caller checks). PyMaxflow holds the GIL while it solves.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

#: per-edge weights of the 4-connected grid: vertical (H−1, W) and horizontal (H, W−1);
#: ``None`` means every weight is 1
Weights = tuple[np.ndarray, np.ndarray] | None

#: the two edge directions of the grid: (slice of p, slice of q), q below / right of p
_EDGES = (
    ((slice(None, -1), slice(None)), (slice(1, None), slice(None))),
    ((slice(None), slice(None, -1)), (slice(None), slice(1, None))),
)


def _take(unary: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """unary[y, x, labels[y, x]] as int64 (H, W)."""
    lab = labels.astype(np.intp, copy=False)[:, :, None]
    return np.take_along_axis(unary, lab, axis=2)[:, :, 0].astype(np.int64)


def grid_energy(
    unary: np.ndarray, labels: np.ndarray, pair: np.ndarray | float, weights: Weights = None
) -> int:
    """Energy of a labelling on the 4-connected grid, in exact integers.

    ``E = Σ_p unary[p, L_p] + Σ_(p,q) w_pq · pair[L_p, L_q]``; ``pair`` is the (N, N)
    integer cost matrix, or a number ``s`` for the linear cost ``round(s·|i − j|)``;
    ``weights`` as in :data:`Weights` (``None``: all 1).
    """
    n = unary.shape[2]
    if np.ndim(pair) == 0:
        d = np.abs(np.subtract.outer(np.arange(n), np.arange(n)))
        pair = np.rint(float(pair) * d)
    flat = np.asarray(pair, np.int64).ravel()
    lab = labels.astype(np.intp, copy=False)
    total = int(_take(unary, lab).sum())
    for axis, (p, q) in enumerate(_EDGES):
        cost = flat[lab[p] * n + lab[q]]
        if weights is not None:
            cost = cost * weights[axis]
        total += int(cost.sum(dtype=np.int64))
    return total


def _move(
    unary: np.ndarray,
    labels: np.ndarray,
    energy: int,
    lab0: np.ndarray,
    lab1: np.ndarray,
    active: np.ndarray,
    pair: np.ndarray,
    weights: Weights,
) -> tuple[np.ndarray, int]:
    """The optimal binary move (one min cut) if it lowers ``energy``, else no change.

    Returns the labels and their energy, ``E = const + max flow``. Pixels left free by
    the cut (ties) stay on the source side, ``x = 0``.
    """
    import maxflow

    n = pair.shape[0]
    flat = pair.ravel()
    base = _take(unary, lab0)
    # cost of x_p = 1 minus cost of x_p = 0, unary first, then the edges' linear parts
    delta = _take(unary, lab1) - base
    const = int(base.sum())
    count = int(active.sum())
    node = np.full(labels.shape, -1, np.int32)
    node[active] = np.arange(count, dtype=np.int32)
    heads, tails, caps = [], [], []
    for axis, (p, q) in enumerate(_EDGES):
        p0, p1, q0, q1 = lab0[p] * n, lab1[p] * n, lab0[q], lab1[q]
        e00, e01, e10, e11 = flat[p0 + q0], flat[p0 + q1], flat[p1 + q0], flat[p1 + q1]
        lin_p, lin_q, cap = e10 - e00, e11 - e10, e01 + e10 - e00 - e11
        if weights is not None:
            w = weights[axis]
            e00, lin_p, lin_q, cap = e00 * w, lin_p * w, lin_q * w, cap * w
        const += int(e00.sum())
        delta[p] += lin_p
        delta[q] += lin_q
        keep = cap > 0  # only between two active pixels (zero when either is fixed)
        heads.append(node[p][keep])
        tails.append(node[q][keep])
        caps.append(cap[keep].astype(np.int32))
    head, tail, cap = np.concatenate(heads), np.concatenate(tails), np.concatenate(caps)
    d = delta[active]
    source, sink = np.maximum(d, 0).astype(np.int32), np.maximum(-d, 0).astype(np.int32)
    const -= int(sink.sum(dtype=np.int64))  # E(x) = const + cut(x)
    g = maxflow.GraphInt(count, head.size)
    nodes = g.add_grid_nodes((count,))
    # a node on the sink side (x = 1) cuts its source link: the source capacity is the
    # extra cost of lab1, the sink capacity that of lab0
    g.add_grid_tedges(nodes, source, sink)
    if head.size:
        g.add_edges(head, tail, cap, np.zeros_like(cap))
    new_energy = const + int(g.maxflow())
    if new_energy >= energy:
        return labels, energy
    x = g.get_grid_segments(nodes)
    out = labels.copy()
    out[active] = np.where(x, lab1[active], lab0[active])
    return out, new_energy


def _cycle(
    unary: np.ndarray,
    labels: np.ndarray,
    energy: int,
    pair: np.ndarray,
    weights: Weights,
    algorithm: Literal["expansion", "swap"],
) -> tuple[np.ndarray, int]:
    """One cycle: an expansion move per label, or a swap move per pair of labels.

    The order and the tie-breaking are gco's (labels ascending; for swap, β descending;
    ties go to α), so both solvers usually take the same path.
    """
    n = pair.shape[0]
    if algorithm == "expansion":
        for alpha in range(n):
            active = labels != alpha
            if active.any():
                lab0 = np.full_like(labels, alpha)
                labels, energy = _move(unary, labels, energy, lab0, labels, active, pair, weights)
        return labels, energy
    for alpha in range(n - 1):
        for beta in range(n - 1, alpha, -1):
            active = (labels == alpha) | (labels == beta)
            if active.any():
                lab0 = np.where(active, alpha, labels)
                lab1 = np.where(active, beta, labels)
                labels, energy = _move(unary, labels, energy, lab0, lab1, active, pair, weights)
    return labels, energy


def solve_maxflow(
    unary: np.ndarray,
    pair: np.ndarray,
    weights: Weights = None,
    init: np.ndarray | None = None,
    algorithm: Literal["expansion", "swap"] = "expansion",
    cycles: int = 1,
) -> tuple[np.ndarray, int]:
    """Minimise the grid energy of an (H, W, N) integer unary by moves solved with PyMaxflow.

    ``pair`` (N, N) integer costs (a metric for expansion), ``weights`` as in
    :data:`Weights`, ``init`` (H, W) starting labels (``None``: all 0). Runs ``cycles``
    cycles (-1: until a cycle no longer lowers the energy; a cycle that does not lower it
    also ends a fixed count early, as gco does). Returns the labels and their energy.
    """
    try:
        import maxflow  # noqa: F401
    except ImportError as exc:  # pragma: no cover - PyMaxflow is a dependency
        from dffcore.core.errors import DffError

        raise DffError(
            f"graphcut solver maxflow needs PyMaxflow (pip install PyMaxflow): {exc}"
        ) from None
    h, w, _ = unary.shape
    pair = np.asarray(pair, np.int64)
    if weights is not None:
        weights = (weights[0].astype(np.int64), weights[1].astype(np.int64))
    labels = np.zeros((h, w), np.int64) if init is None else init.astype(np.int64)
    energy = grid_energy(unary, labels, pair, weights)
    done = 0
    while cycles < 0 or done < cycles:
        labels, new_energy = _cycle(unary, labels, energy, pair, weights, algorithm)
        done += 1
        if new_energy >= energy:
            break
        energy = new_energy
    return labels.astype(np.int32), energy
