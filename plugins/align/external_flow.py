"""Alignment from precomputed optical flow files (e.g. RAFT run on another machine).

Files hold either *flow* (displacements in OpenCV's convention: ``src(x) ≈ dst(x +
flow(x))``) or a *map* (the absolute (x, y) position in ``dst`` of every ``src`` pixel),
always on the source frame's pixel grid, as ``.npy`` arrays of shape ``(H,W,2)`` (``(2,H,W)``
is accepted and transposed) or Middlebury ``.flo`` files. Frame indices are 0-based in
reading order. NaN (and ``.flo``'s "unknown" values above 1e9) mark pixels without a
correspondence; they become invalid. A file holding infinite values, or a displacement
beyond :data:`MAX_DIAGONALS` times the frames' diagonal (wrong units, a map read as flow),
is refused with an error naming it.

``mode: pairs`` reads one file per pair the aligner matches, ``pattern`` default
``flow_{a:03d}_{b:03d}.npy`` = flow from frame ``a`` to frame ``b``: with ``chain: true``
neighbouring frames outward from the reference (``(r, r+1), (r+1, r+2), ...`` and ``(r,
r-1), ...``), composed; with ``chain: false`` ``(r, i)`` for every frame ``i``.
``mode: to-reference`` reads, for every frame ``i`` but the reference ``r``, the flow from
the reference to frame ``i`` (default ``flow_{i:03d}.npy``), used as it is (``chain`` is
ignored). Patterns may use ``{a}``, ``{b}``, ``{i}`` (= ``b``) and ``{ref}`` (= ``r``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from dffcore.align.apply import apply_alignment
from dffcore.align.pairwise import AlignParams, PairwiseAligner, alignment_of, progress_ticks
from dffcore.core.components import Context, resolve_reference
from dffcore.core.data import AlignedStack, FocalStack
from dffcore.core.errors import DffError
from dffcore.io.images import load_npy_checked
from dffcore.ops.warp import flow_to_map, grid

DEFAULT_PATTERNS = {"pairs": "flow_{a:03d}_{b:03d}.npy", "to-reference": "flow_{i:03d}.npy"}
_FLO_MAGIC = 202021.25  # "PIEH" read as a little-endian float32
_FLO_UNKNOWN = 1e9
#: the largest displacement a file may hold, in diagonals of the frames
MAX_DIAGONALS = 4.0


class ExternalFlowParams(AlignParams):
    folder: Path = Field(
        ..., description="folder holding the flow files (relative: to the working directory)"
    )
    mode: Literal["pairs", "to-reference"] = Field(
        "pairs",
        description="a file per matched pair (chained or to the reference, see chain), "
        "or one per frame: reference -> frame i, used directly",
    )
    pattern: str | None = Field(
        None,
        description="file name with {a} {b} (pair a -> b), {i} (= b), {ref}; default "
        "flow_{a:03d}_{b:03d}.npy (pairs) or flow_{i:03d}.npy (to-reference); .npy or .flo",
    )
    format: Literal["flow", "map"] = Field(
        "flow",
        description="flow: displacements, src(x) ≈ dst(x + flow(x)); map: absolute (x, y) "
        "positions in dst; both on src's grid",
    )


def read_flo(path: Path) -> np.ndarray:
    """A Middlebury ``.flo`` file as (H,W,2) float32 (Baker et al., IJCV 2011)."""
    with open(path, "rb") as f:
        magic = np.fromfile(f, "<f4", 1)
        size = np.fromfile(f, "<i4", 2)
        if magic.size != 1 or magic[0] != _FLO_MAGIC or size.size != 2 or (size <= 0).any():
            raise ValueError("not a Middlebury .flo file (bad header)")
        w, h = (int(v) for v in size)
        if 8 * w * h > os.fstat(f.fileno()).st_size - 12:  # before allocating anything
            raise ValueError(f"truncated .flo file: {w}x{h} needs {8 * w * h} bytes of data")
        data = np.fromfile(f, "<f4", 2 * w * h)
    if data.size != 2 * w * h:
        raise ValueError(f"truncated .flo file: {w}x{h} needs {2 * w * h} values, has {data.size}")
    flow = data.reshape(h, w, 2).astype(np.float32)
    flow[np.abs(flow) > _FLO_UNKNOWN] = np.nan
    return flow


def read_field(path: Path, shape: tuple[int, int], format: str = "flow") -> np.ndarray:
    """A flow/map file as (H,W,2) float32 of the stack's ``shape``; DffError if unusable
    (unreadable, wrong shape, infinite values, displacements beyond :data:`MAX_DIAGONALS`
    diagonals; ``format`` ``"flow"`` or ``"map"`` says how to read displacements)."""
    h, w = shape
    if path.suffix.lower() != ".flo":  # header checked first: a huge array is refused unread
        arr = load_npy_checked(path, max_elements=2 * h * w)
    else:
        try:
            arr = read_flo(path)
        except (OSError, ValueError, EOFError) as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise DffError(f"{path}: cannot read a flow field: {reason}") from None
    if arr.shape == (2, h, w):
        arr = arr.transpose(1, 2, 0)
    if arr.shape != (h, w, 2) or arr.dtype.kind not in "fiu":
        raise DffError(
            f"{path}: holds a {arr.dtype} array of shape {arr.shape}; expected ({h}, {w}, 2) or "
            f"(2, {h}, {w}) numbers for the stack's {w}x{h} frames"
        )
    values = arr.astype(np.float64)
    if np.isinf(values).any():
        raise DffError(
            f"{path}: holds {int(np.isinf(values).sum())} infinite values; mark pixels "
            "without a correspondence with NaN"
        )
    disp = values - grid(shape) if format == "map" else values
    with np.errstate(invalid="ignore"):
        largest = float(np.nanmax(np.abs(disp))) if np.isfinite(disp).any() else 0.0
    limit = MAX_DIAGONALS * float(np.hypot(h, w))
    if largest > limit:
        raise DffError(
            f"{path}: holds a displacement of {largest:.3g} px, beyond {MAX_DIAGONALS:g}x the "
            f"diagonal of the {w}x{h} frames ({limit:.0f} px); expected {format} in pixels "
            "(format: flow = displacements, map = absolute positions)"
        )
    out = values.astype(np.float32)
    bad = ~np.isfinite(out).all(axis=2)
    if bad.all():
        raise DffError(f"{path}: no finite value: the field is NaN or infinite everywhere")
    out[bad] = np.nan
    return out


class ExternalFlow(PairwiseAligner):
    """Precomputed flow fields read from files (.npy or Middlebury .flo), per pair or to
    the reference; NaN pixels become invalid."""

    name = "external-flow"
    Params = ExternalFlowParams
    citation = (
        "Middlebury .flo format: Baker et al., A database and evaluation methodology for "
        "optical flow, IJCV 92(1), 2011"
    )

    path_model = None  # dense maps are composed, not fitted

    def _read(self, shape: tuple[int, int], ref: int, a: int, b: int) -> tuple[np.ndarray, dict]:
        p = self.params
        pattern = p.pattern or DEFAULT_PATTERNS[p.mode]
        try:
            name = pattern.format(a=a, b=b, i=b, ref=ref)
        except (KeyError, IndexError, ValueError, AttributeError) as exc:
            raise DffError(
                f"pattern '{pattern}': {type(exc).__name__} {exc}; use {{a}} {{b}} {{i}} {{ref}}, "
                "e.g. flow_{a:03d}_{b:03d}.npy"
            ) from None
        path = p.folder / name
        if not path.is_file():
            what = f"flow from frame {a} to frame {b}"
            raise DffError(f"{path}: missing ({what}; mode {p.mode}, pattern '{pattern}')")
        field = read_field(path, shape, p.format)
        m = flow_to_map(field) if p.format == "flow" else field
        shift = np.nanmedian(np.linalg.norm(m - grid(shape), axis=2))
        return m, {"file": name, "median_displacement_px": round(float(shift), 3)}

    def prepare(self, stack: FocalStack) -> tuple[tuple[int, int], int]:
        return stack.shape, resolve_reference(self.params.reference, stack.n)

    def estimate_pair(
        self, data: tuple[tuple[int, int], int], a: int, b: int
    ) -> tuple[np.ndarray, dict[str, Any]]:
        shape, ref = data
        return self._read(shape, ref, a, b)

    def __call__(self, stack: FocalStack, ctx: Context) -> AlignedStack:
        p = self.params
        if not p.folder.is_dir():
            raise DffError(f"flow folder {p.folder} does not exist or is not a folder")
        if p.mode == "pairs":
            return super().__call__(stack, ctx)
        n = stack.n
        ref = resolve_reference(p.reference, n)
        transforms: list[Any] = [None] * n
        diagnostics: list[dict[str, Any]] = [
            {"reference": True} if i == ref else {} for i in range(n)
        ]
        tick = progress_ticks(ctx, 2 * n - 1)
        for i in range(n):
            if i != ref:
                transforms[i], diagnostics[i] = self._read(stack.shape, ref, ref, i)
                tick()
        alignment = alignment_of(p, ref, transforms, diagnostics, stack.shape)
        return apply_alignment(stack, alignment, jobs=ctx.jobs, tick=tick)
