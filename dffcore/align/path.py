"""One consistent motion path for the whole stack, fitted to pairwise estimates.

Chaining pairwise transforms multiplies their errors into every later frame, and one
failed pair ruins the rest of the stack. Instead, every frame's transform to the
reference is a free parameter, and :func:`fit_path` finds the path that agrees best with
all pairwise estimates at once:

- each estimate ``M_ab`` (frame ``a`` to frame ``b``) asks that ``T_b(y) = M_ab(T_a(y))``
  at the corners and the centre ``y`` of the reference grid; the misfit is in pixels
  and enters through a robust loss (soft L1, scale 1 px), so one estimate that disagrees
  with the others loses its pull;
- focus breathing changes magnification smoothly over the sweep: the second difference
  of each frame's log-magnification is penalised (``breathing``);
- a weak second-difference penalty on every parameter (``prior``) keeps the problem
  well posed: a frame without any usable estimate gets the motion interpolated from its
  neighbours (or carried on at the ends of the stack) instead of a guess.

Transforms are parameterised in normalised coordinates (centre at 0, half the larger
side = 1) by the aligner's motion model: translation (2 parameters), euclidean (3),
affine (6) or homography (8). Solved by a robust Gauss-Newton iteration whose Jacobian
uses that each residual involves at most three neighbouring frames.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

#: parameters per frame of each motion model
MODELS = {"translation": 2, "euclidean": 3, "affine": 6, "homography": 8}
#: robust loss scale of the pairwise misfit (px)
LOSS_SCALE_PX = 1.0
#: Gauss-Newton iterations at most
MAX_ITERATIONS = 30
#: control points per pair: the corners and the centre of the reference grid
POINTS = 5
#: a pair whose misfit exceeds this (px) and four times the median is left out
OUTLIER_PX = 2.0
#: slots (frames) apart that one residual may link: neighbours, bridges and the
#: second-difference penalties reach two frames
BAND = 2


@dataclass(frozen=True)
class PairEstimate:
    """A usable pairwise estimate: ``transform`` maps frame ``a``'s pixel coordinates to
    frame ``b``'s (3x3)."""

    a: int
    b: int
    transform: np.ndarray
    weight: float = 1.0


@dataclass
class PathFit:
    """The fitted path: ``transforms[k]`` maps reference pixels to frame ``k`` (None for
    the reference), ``residual_px[i]`` the RMS misfit of pair ``i`` at the control
    points, the frames no chain of kept pairs links to the reference (their motion comes
    from the smoothness penalties: ``interpolated``) and the pairs left out as outliers
    (``rejected``)."""

    transforms: list[np.ndarray | None]
    residual_px: list[float]
    interpolated: list[int]
    rejected: list[int]


class _Frame:
    """Pixel <-> normalised coordinates of a grid and the model's parameterisation."""

    def __init__(self, shape: tuple[int, int], model: str) -> None:
        h, w = shape
        self.size = max(h, w) / 2.0
        cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
        self.to_norm = np.array(
            [[1 / self.size, 0, -cx / self.size], [0, 1 / self.size, -cy / self.size], [0, 0, 1]]
        )
        self.to_pixels = np.linalg.inv(self.to_norm)
        self.model = model
        self.k = MODELS[model]
        gx = np.array([0.0, 2 * cx, 2 * cx, 0.0, cx])  # the corners and the centre
        gy = np.array([0.0, 0.0, 2 * cy, 2 * cy, cy])
        points = np.stack([gx, gy, np.ones(POINTS)])
        self.points = self.to_norm @ points  # (3, POINTS) control points, normalised

    def matrix(self, p: np.ndarray) -> np.ndarray:
        """Normalised 3x3 transform of the parameters ``p``."""
        return self.matrices(np.asarray(p, np.float64)[None])[0]

    def matrices(self, p: np.ndarray) -> np.ndarray:
        """``(n, 3, 3)`` normalised transforms of the ``(n, k)`` parameters ``p``."""
        m = np.zeros((p.shape[0], 3, 3))
        m[:, 0, 0] = m[:, 1, 1] = m[:, 2, 2] = 1.0
        if self.model == "translation":
            m[:, 0, 2], m[:, 1, 2] = p[:, 0], p[:, 1]
        elif self.model == "euclidean":
            c, s = np.cos(p[:, 0]), np.sin(p[:, 0])
            m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = c, -s, s, c
            m[:, 0, 2], m[:, 1, 2] = p[:, 1], p[:, 2]
        else:
            m[:, 0, 0] += p[:, 0]
            m[:, 0, 1], m[:, 0, 2], m[:, 1, 0] = p[:, 1], p[:, 2], p[:, 3]
            m[:, 1, 1] += p[:, 4]
            m[:, 1, 2] = p[:, 5]
            if self.model == "homography":
                m[:, 2, 0], m[:, 2, 1] = p[:, 6], p[:, 7]
        return m

    def params(self, t_pixels: np.ndarray) -> np.ndarray:
        """The parameters closest to a pixel transform (its model part)."""
        t = self.to_norm @ t_pixels @ self.to_pixels
        t = t / t[2, 2]
        if self.model == "translation":
            return np.array([t[0, 2], t[1, 2]])
        if self.model == "euclidean":
            return np.array([math.atan2(t[1, 0] - t[0, 1], t[0, 0] + t[1, 1]), t[0, 2], t[1, 2]])
        p = [t[0, 0] - 1, t[0, 1], t[0, 2], t[1, 0], t[1, 1] - 1, t[1, 2]]
        return np.array(p + ([t[2, 0], t[2, 1]] if self.model == "homography" else []))


def _apply(t: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``(m, 3, 3)`` transforms applied to ``(m, 3, p)`` or ``(3, p)`` homogeneous points:
    ``(m, 3, p)`` homogeneous results with last row 1."""
    q = t @ points
    return q / q[:, 2:3]


def fit_path(
    n: int,
    ref: int,
    shape: tuple[int, int],
    pairs: Sequence[PairEstimate],
    model: str,
    *,
    initial: Sequence[np.ndarray | None] | None = None,
    breathing: float = 0.1,
    prior: float = 0.05,
) -> PathFit:
    """The motion path most consistent with ``pairs`` (see the module docstring).

    After a first fit, estimates that disagree with the path far more than the others
    (misfit above :data:`OUTLIER_PX` and four times the median) are left out and the path
    is fitted again; their misfit stays in ``residual_px`` and their indices in
    ``rejected``.

    Parameters
    ----------
    n, ref, shape
        Number of frames, the reference frame, (H, W) of the frames.
    pairs : sequence of PairEstimate
        The usable estimates (failed and implausible pairs left out).
    model : str
        One of :data:`MODELS`.
    initial : sequence, optional
        Starting transforms (reference -> frame, pixels; None = identity), e.g. chained.
    breathing, prior : float
        Weights of the smooth-magnification and the weak smoothness penalties, in pixels
        of misfit per unit second difference at the image's half-size.
    """
    problem = _Problem(n, ref, shape, model, breathing, prior)
    pairs = list(pairs)
    kept = list(range(len(pairs)))
    transforms = problem.solve([pairs[i] for i in kept], initial)
    misfit = problem.misfit(transforms, pairs)
    for _ in range(2):
        typical = float(np.median([misfit[i] for i in kept])) if kept else 0.0
        worse = [i for i in kept if misfit[i] > max(OUTLIER_PX, 4 * typical)]
        if not worse:
            break
        kept = [i for i in kept if i not in worse]
        transforms = problem.solve([pairs[i] for i in kept], transforms)
        misfit = problem.misfit(transforms, pairs)
    connected = _connected(ref, [(pairs[i].a, pairs[i].b) for i in kept])
    return PathFit(
        transforms,
        misfit,
        [f for f in range(n) if f not in connected],
        [i for i in range(len(pairs)) if i not in kept],
    )


class _Problem:
    """The least-squares problem of one stack; :meth:`solve` fits a set of pairs."""

    def __init__(
        self, n: int, ref: int, shape: tuple[int, int], model: str, breathing: float, prior: float
    ) -> None:
        self.n, self.ref, self.frame = n, ref, _Frame(shape, model)
        self.free = [i for i in range(n) if i != ref]
        self.slot = {f: j for j, f in enumerate(self.free)}
        self.prior = prior
        self.scale_prior = breathing if model in ("affine", "homography") else 0.0

    def params(self, x: np.ndarray) -> np.ndarray:
        out = np.zeros((self.n, self.frame.k))
        out[np.array(self.free, int)] = x.reshape(-1, self.frame.k)
        return out

    def pair_misfit(
        self, mats: np.ndarray, pairs: Sequence[PairEstimate], measured_t: np.ndarray | None = None
    ) -> np.ndarray:
        """``(m, 2, POINTS)`` pixel misfit of every pair at the control points;
        ``measured_t`` are the pairs' normalised transforms (:meth:`normalised`) when the
        caller has them."""
        if not pairs:
            return np.zeros((0, 2, POINTS))
        f = self.frame
        a = np.array([p.a for p in pairs], int)
        b = np.array([p.b for p in pairs], int)
        if measured_t is None:
            measured_t = self.normalised(pairs)
        predicted = _apply(mats[b], f.points)
        measured = _apply(measured_t, _apply(mats[a], f.points))
        return f.size * (predicted - measured)[:, :2]

    def normalised(self, pairs: Sequence[PairEstimate]) -> np.ndarray:
        """``(m, 3, 3)`` transforms of the pairs in normalised coordinates."""
        f = self.frame
        t = np.array([p.transform for p in pairs], np.float64).reshape(-1, 3, 3)
        return f.to_norm @ t @ f.to_pixels

    def misfit(
        self, transforms: Sequence[np.ndarray | None], pairs: Sequence[PairEstimate]
    ) -> list[float]:
        """RMS misfit (px) of each pair under ``transforms``."""
        f = self.frame
        mats = np.array(
            [np.eye(3) if t is None else f.to_norm @ t @ f.to_pixels for t in transforms]
        )
        d = self.pair_misfit(mats, pairs)
        return np.sqrt((d**2).sum(axis=1).mean(axis=1)).tolist()

    def solve(
        self, pairs: Sequence[PairEstimate], initial: Sequence[np.ndarray | None] | None
    ) -> list[np.ndarray | None]:
        f, n, k = self.frame, self.n, self.frame.k
        x0 = np.zeros(k * len(self.free))
        for fr in self.free:
            t0 = None if initial is None else initial[fr]
            if t0 is not None:
                x0[k * self.slot[fr] : k * self.slot[fr] + k] = f.params(t0)
        weights = np.sqrt(np.array([p.weight for p in pairs])).reshape(-1, 1, 1)
        measured_t = self.normalised(pairs)

        def residuals(x: np.ndarray) -> np.ndarray:
            params = self.params(x)
            mats = f.matrices(params)
            out = [(weights * self.pair_misfit(mats, pairs, measured_t)).ravel()]
            if n > 2:
                second = params[:-2] - 2 * params[1:-1] + params[2:]
                out.append((self.prior * f.size * second).ravel())
                if self.scale_prior:
                    det = np.linalg.det(mats[:, :2, :2])
                    ls = 0.5 * np.log(np.maximum(det, 1e-9))
                    out.append(self.scale_prior * f.size * (ls[:-2] - 2 * ls[1:-1] + ls[2:]))
            return np.concatenate(out)

        a_idx = np.array([p.a for p in pairs], int)
        b_idx = np.array([p.b for p in pairs], int)
        depends = _sparsity(n, a_idx, b_idx, self.slot, self.ref, k, self.scale_prior > 0)
        robust = np.zeros(depends.shape[0], bool)
        robust[: 2 * POINTS * len(pairs)] = True  # the pairs' rows; the penalties are exact
        groups = [[self.slot[fr] for fr in self.free if fr % 3 == g] for g in range(3)]
        solution = _gauss_newton(residuals, x0, depends, k, groups, robust, 1.0 / f.size)
        mats = f.matrices(self.params(solution))
        out: list[np.ndarray | None] = []
        for fr in range(n):
            t = f.to_pixels @ mats[fr] @ f.to_norm
            out.append(None if fr == self.ref else t / t[2, 2])
        return out


def _gauss_newton(
    residuals: Callable[[np.ndarray], np.ndarray],
    x0: np.ndarray,
    depends: np.ndarray,
    k: int,
    groups: list[list[int]],
    robust: np.ndarray,
    tolerance: float,
) -> np.ndarray:
    """Robust Gauss-Newton (iteratively reweighted, soft-L1 on the ``robust`` rows with
    scale :data:`LOSS_SCALE_PX`) with a finite-difference Jacobian: frames three apart
    never share a residual, so each parameter of a third of the frames is perturbed at
    once. ``depends[row, slot]`` says whether a residual involves a frame; ``tolerance``
    is one pixel in parameter units."""
    if not x0.size:
        return x0
    x = x0.copy()
    step = 1e-6

    def cost(r: np.ndarray) -> float:
        z = (r[robust] / LOSS_SCALE_PX) ** 2
        return float(2 * (np.sqrt(1 + z) - 1).sum() * LOSS_SCALE_PX**2 + (r[~robust] ** 2).sum())

    r = residuals(x)
    banded = _bandwidth(depends) <= BAND
    rows_of = [np.flatnonzero(depends[:, slot]) for slot in range(depends.shape[1])]
    for _ in range(MAX_ITERATIONS):
        jac = np.zeros((r.size, x.size))
        for members in groups:
            for j in range(k):
                if not members:
                    continue
                cols = np.array(members) * k + j
                moved = x.copy()
                moved[cols] += step
                diff = (residuals(moved) - r) / step
                for slot, col in zip(members, cols, strict=True):
                    rows = rows_of[slot]
                    jac[rows, col] = diff[rows]
        w = np.ones(r.size)
        w[robust] = 1.0 / np.sqrt(1.0 + (r[robust] / LOSS_SCALE_PX) ** 2)
        dx = _solve_normal(jac, w, r, depends, k, banded)
        before = cost(r)
        r_new = residuals(x + dx)
        for _ in range(10):  # halve the step until the robust cost does not grow
            if cost(r_new) <= before:
                break
            dx /= 2
            r_new = residuals(x + dx)
        x, r = x + dx, r_new
        if np.abs(dx).max() < tolerance * 1e-3:  # below a thousandth of a pixel
            break
    return x


def _bandwidth(depends: np.ndarray) -> int:
    """The largest slot distance of two frames that share a residual."""
    slots = np.arange(depends.shape[1])
    first = np.where(depends, slots, depends.shape[1]).min(axis=1)
    last = np.where(depends, slots, -1).max(axis=1)
    return int(np.maximum(last - first, 0).max()) if depends.size else 0


def _solve_normal(
    jac: np.ndarray, w: np.ndarray, r: np.ndarray, depends: np.ndarray, k: int, banded: bool
) -> np.ndarray:
    """The Gauss-Newton step: ``(J'WJ + εD) dx = -J'Wr`` (ε = 1e-9 of the diagonal).

    The path's residuals link frames at most :data:`BAND` slots apart, so ``J'WJ`` is
    block-banded: it is built from ``k x k`` blocks and solved by a block-banded
    Cholesky factorisation, in a few hundred small products. Besides being faster,
    this stays clear of multi-threaded BLAS, which on a busy machine with few cores
    spends 10-100x the CPU of one thread on systems this small. Anything wider is
    solved densely.
    """
    m = depends.shape[1]
    if not banded:
        normal = jac.T @ (w[:, None] * jac)
        normal[np.diag_indices_from(normal)] += 1e-9 * (1 + normal.diagonal())
        return np.linalg.solve(normal, -(jac.T @ (w * r)))
    blocks: dict[tuple[int, int], np.ndarray] = {}
    rhs = np.empty((m, k))
    for s in range(m):
        rows = np.flatnonzero(depends[:, s])
        wj = (w[rows, None] * jac[rows, s * k : s * k + k]).T
        rhs[s] = -(wj @ r[rows])
        for t in range(s, min(s + BAND + 1, m)):
            blocks[t, s] = jac[rows, t * k : t * k + k].T @ wj.T  # block (t, s) of J'WJ
        d = blocks[s, s].diagonal().copy()
        blocks[s, s][np.diag_indices(k)] += 1e-9 * (1 + d)
    # block Cholesky N = L L' (lower, BAND blocks below the diagonal)
    low: dict[tuple[int, int], np.ndarray] = {}
    inv: list[np.ndarray] = []  # L_ii^-1 (k x k, well conditioned: N is regularised)
    for i in range(m):
        for j in range(max(0, i - BAND), i + 1):
            acc = blocks[i, j].copy()
            for q in range(max(0, i - BAND), j):
                acc -= low[i, q] @ low[j, q].T
            if i == j:
                low[i, i] = np.linalg.cholesky(acc)
                inv.append(np.linalg.inv(low[i, i]))
            else:
                low[i, j] = acc @ inv[j].T
    y = np.empty((m, k))
    for i in range(m):  # L y = rhs
        acc = rhs[i].copy()
        for q in range(max(0, i - BAND), i):
            acc -= low[i, q] @ y[q]
        y[i] = inv[i] @ acc
    x = np.empty((m, k))
    for i in range(m - 1, -1, -1):  # L' x = y
        acc = y[i].copy()
        for q in range(i + 1, min(m, i + BAND + 1)):
            acc -= low[q, i].T @ x[q]
        x[i] = inv[i].T @ acc
    return x.ravel()


def _connected(ref: int, edges: Sequence[tuple[int, int]]) -> set[int]:
    """Frames linked to the reference through ``edges``."""
    seen, todo = {ref}, [ref]
    while todo:
        f = todo.pop()
        for a, b in edges:
            for x, y in ((a, b), (b, a)):
                if x == f and y not in seen:
                    seen.add(y)
                    todo.append(y)
    return seen


def _sparsity(
    n: int,
    a_idx: np.ndarray,
    b_idx: np.ndarray,
    slot: dict[int, int],
    ref: int,
    k: int,
    scale_prior: bool,
) -> np.ndarray:
    """Which frames (by slot) each residual of :func:`fit_path` involves, in its row order:
    2 * POINTS per pair, then k per interior frame, then one per interior frame (breathing)."""
    interior = max(n - 2, 0)
    rows = 2 * POINTS * len(a_idx) + interior * (k + (1 if scale_prior else 0))
    s = np.zeros((rows, len(slot)), bool)

    def mark(row0: int, count: int, frames: Sequence[int]) -> None:
        for f in frames:
            if f != ref:
                s[row0 : row0 + count, slot[f]] = True

    for i, (a, b) in enumerate(zip(a_idx.tolist(), b_idx.tolist(), strict=True)):
        mark(2 * POINTS * i, 2 * POINTS, (a, b))
    r = 2 * POINTS * len(a_idx)
    for i in range(interior):  # parameter j of frames i, i+1, i+2: row r + i * k + j
        mark(r + i * k, k, (i, i + 1, i + 2))
    r += interior * k
    if scale_prior:
        for i in range(interior):
            mark(r + i, 1, (i, i + 1, i + 2))
    return s
