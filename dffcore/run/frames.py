"""Where a run's aligned frames live: in memory, or streamed once to a temporary file.

A whole-image run holds every frame, the aligned frames and the focus volume in memory:
about ``N·H·W·(2·C + 12)`` bytes, 10 GB for 30 frames of 24 MP. A banded run never
holds more than one decoded frame and one band of rows of every frame:

1. **align**: the aligner runs on the stack downscaled so that it fits a share of the
   budget (full resolution when it fits); its :class:`~dffcore.core.data.Alignment` is
   rescaled to full resolution (:func:`dffcore.align.apply.rescale`);
2. **warp**: each frame is decoded once (the next one is decoded on a second thread
   meanwhile), warped like :func:`dffcore.align.apply.warp_frame` does (crop box,
   interpolation, exposure) :data:`WARP_ROWS` rows at a time, and appended to a raw file
   in a temporary folder, with its validity mask. A dense map (residual flow) stays at
   the aligner's scale: each chunk of rows gets its full-resolution map rows
   (:func:`map_rows`, what :func:`~dffcore.ops.warp.scale_transform` gives for those
   rows), so no full-resolution map, float copy or mask of a whole frame is held. The
   folder is
   removed when the run ends, and a run killed with SIGKILL leaves it to the next run,
   which removes the folders of dead runs (:data:`TEMP_PREFIX`, :mod:`dffcore.run.scratch`);
   a full disk is a one-line error naming the folder and the space needed;
3. **bands**: :meth:`StreamedFrames.rows` reads a band of rows of every frame back.

The :class:`~dffcore.core.data.Alignment` a streamed run reports has its 3x3 transforms
at full resolution; a dense map (residual flow) is not kept once its frame is written:
the run reports its best-fitting homography (:func:`released`), so the bands get its
memory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import shutil
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO, Protocol

import cv2
import numpy as np

from dffcore.align.apply import box_to_crop, crop_box
from dffcore.align.photometry import correct_exposure
from dffcore.core.data import AlignedStack, Alignment, FocalStack, Transform
from dffcore.core.errors import DffError
from dffcore.ops.parallel import ordered_map
from dffcore.ops.warp import (
    fit_homography,
    grid,
    is_map,
    scale_transform,
    shift_transform,
    valid_mask,
    warp,
)
from dffcore.run.scratch import process_tag, sweep

#: temporary folders of streamed frames: ``dffcore-<pid>-<start time>-<random>``
TEMP_PREFIX = "dffcore-"
TEMP_PATTERN = r"dffcore-(?P<pid>\d+)-(?P<start>\d+)-[A-Za-z0-9_]+"

#: progress(done, total)
Tick = Callable[[int, int], None]
#: rows of a frame warped at a time when its transform is a dense map
WARP_ROWS = 256


class AlignedFrames(Protocol):
    """The aligned frames of a run, read a band of rows at a time."""

    #: how the frames were made (None: an aligner that warped them itself)
    alignment: Alignment | None
    #: (x, y, w, h) of the reference grid the frames were cropped to, or None
    crop: tuple[int, int, int, int] | None
    #: (N, H, W, C) and dtype of the aligned frames
    shape: tuple[int, int, int, int]
    dtype: np.dtype
    #: the frame whose pixel grid the outputs use
    reference: int

    def rows(self, a: int, b: int) -> AlignedStack:
        """Rows ``a:b`` of every frame, with their validity mask."""
        ...


class InMemoryFrames:
    """Aligned frames held in memory (whole-image and strip runs)."""

    def __init__(self, aligned: AlignedStack) -> None:
        self.aligned = aligned
        self.alignment = aligned.alignment
        self.crop = aligned.crop
        self.reference = aligned.reference
        self.dtype = aligned.frames.dtype
        n, h, w, c = aligned.frames.shape
        self.shape = (n, h, w, c)

    def rows(self, a: int, b: int) -> AlignedStack:
        return self.aligned.rows(a, b)


class StreamedFrames:
    """Aligned frames in a raw ``(N, H, W, C)`` file, validity masks in another
    (``uint8``, only when some frame moves). Use as a context manager."""

    def __init__(
        self,
        folder: Path,
        alignment: Alignment,
        box: tuple[int, int, int, int],
        channels: int,
        dtype: np.dtype,
        map_scale: float = 1.0,
    ) -> None:
        y0, y1, x0, x1 = box
        self.alignment: Alignment = alignment
        #: scale of the dense maps among the transforms (1: full resolution)
        self.map_scale = map_scale
        self.reference = alignment.reference
        self.crop = box_to_crop(box, alignment.shape)
        self.shape = (alignment.n, y1 - y0, x1 - x0, channels)
        self.dtype = np.dtype(dtype)
        self.box = box
        self.frames_path = folder / "aligned.raw"
        self.valid_path = folder / "valid.raw" if alignment.moves else None
        self._files: list[BinaryIO] = []

    def write(self, stack: FocalStack, tick: Tick) -> None:
        """Decode, warp and append every frame of ``stack`` (one frame in memory); a full
        disk is a one-line error naming the folder and the space needed."""
        try:
            self._write(stack, tick)
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            need = self.bytes_needed()
            raise DffError(
                f"{self.frames_path.parent}: no space left on the device for the aligned "
                f"frames of a --memory run (about {need / 1e6:.0f} MB needed); free space "
                "or set TMPDIR to a folder on a larger disk"
            ) from None

    def bytes_needed(self) -> int:
        """Bytes the raw files of the aligned frames and validity masks take."""
        n, h, w, c = self.shape
        return n * h * w * (c * self.dtype.itemsize + (1 if self.valid_path else 0))

    def _write(self, stack: FocalStack, tick: Tick) -> None:
        n = self.shape[0]
        with contextlib.ExitStack() as files:
            ff = files.enter_context(open(self.frames_path, "wb"))
            vf = files.enter_context(open(self.valid_path, "wb")) if self.valid_path else None
            # decode frame k+1 on a second thread while frame k is warped and written
            # (OpenCV releases the GIL): two decoded frames in memory at most
            decoded = ordered_map(stack.frames.__getitem__, range(n), 2, ahead=1)
            for k, frame in enumerate(decoded):
                for out, valid in self.warped(k, frame):
                    # file.write, not ndarray.tofile: a full disk then raises ENOSPC
                    ff.write(memoryview(np.ascontiguousarray(out, self.dtype)).cast("B"))
                    if vf is not None:
                        mask = np.ones(out.shape[:2], bool) if valid is None else valid
                        vf.write(memoryview(np.ascontiguousarray(mask, np.uint8)).cast("B"))
                del frame
                tick(k + 1, n)

    def warped(self, k: int, frame: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """Frame ``k`` on the crop box, top to bottom in chunks of rows, with the pixels
        that have data (None: all of them): :func:`dffcore.align.apply.warp_frame`'s
        result, exposure corrected a chunk at a time, a dense map made a chunk at a time."""
        a = self.alignment
        y0, y1, x0, x1 = self.box
        t = a.transforms[k]
        gain = None if a.exposure is None else a.exposure[k]
        if is_map(t):
            for ya in range(y0, y1, WARP_ROWS):
                yb = min(ya + WARP_ROWS, y1)
                m = map_rows(t, self.map_scale, a.shape, ya, yb, x0, x1)
                shape = (yb - ya, x1 - x0)
                out = warp(frame, m, shape, a.interpolation)
                yield self._exposed((out, valid_mask(m, frame.shape[:2], shape)), gain)
            return
        shape = (y1 - y0, x1 - x0)
        ts = shift_transform(t, x0, y0, shape)
        out = warp(frame, ts, shape, a.interpolation)
        valid = None if t is None else valid_mask(ts, frame.shape[:2], shape)
        if gain is None:
            yield out, valid
            return
        for ya in range(0, shape[0], WARP_ROWS):
            rows = slice(ya, ya + WARP_ROWS)
            yield self._exposed((out[rows], None if valid is None else valid[rows]), gain)

    @staticmethod
    def _exposed(
        chunk: tuple[np.ndarray, np.ndarray | None], gain: tuple[float, float] | None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        out, valid = chunk
        return (out if gain is None else correct_exposure(out, *gain)), valid

    def rows(self, a: int, b: int) -> AlignedStack:
        n, h, w, c = self.shape
        frames = _read_rows(self._files[0], (n, h, w, c), self.dtype, a, b)
        valid = None
        if len(self._files) > 1:
            valid = _read_rows(self._files[1], (n, h, w, 1), np.uint8, a, b)[..., 0] > 0
            valid = None if valid.all() else valid
        return AlignedStack(frames, self.alignment.reference, valid, self.alignment, self.crop)

    def __enter__(self) -> StreamedFrames:
        self._files = [open(self.frames_path, "rb")]
        if self.valid_path is not None:
            self._files.append(open(self.valid_path, "rb"))
        return self

    def __exit__(self, *exc: object) -> None:
        for f in self._files:
            f.close()
        self._files = []


@contextlib.contextmanager
def streamed_frames(
    stack: FocalStack,
    align: Callable[[FocalStack], Alignment],
    scale: float,
    ticks: Callable[[str], Tick],
    temp_dir: str | Path | None = None,
) -> Iterator[StreamedFrames]:
    """Align ``stack`` at ``scale`` with ``align``, stream its frames warped at full
    resolution to a temporary folder and yield them; the folder is removed whatever
    happens but SIGKILL, and folders that dead runs left behind are removed first."""
    small = align(small_stack(stack, scale, ticks("read")))
    alignment, map_scale = full_resolution(small, scale, stack.shape)
    box = crop_box(for_crop(alignment, map_scale))
    root = Path(temp_dir if temp_dir is not None else tempfile.gettempdir())
    sweep(root, TEMP_PATTERN)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{process_tag()}-", dir=root))
    except OSError as exc:
        raise DffError(
            f"{root}: cannot create a temporary folder for the aligned frames: "
            f"{exc.strerror or exc}; set TMPDIR to a writable folder"
        ) from None
    try:
        channels, dtype = stack.frames.shape[3], stack.frames.dtype
        frames = StreamedFrames(tmp, alignment, box, channels, dtype, map_scale)
        frames.write(stack, ticks("warp"))
        # the maps are applied: their memory goes back to the bands
        frames.alignment = released(alignment, map_scale)
        with frames:
            yield frames
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def small_stack(stack: FocalStack, scale: float, tick: Tick) -> FocalStack:
    """The stack in memory, resized by ``scale`` (decoded and resized on two threads,
    one frame each)."""
    if scale >= 1.0 and isinstance(stack.frames, np.ndarray):
        return stack
    h, w = stack.shape
    sh, sw = max(8, round(h * scale)), max(8, round(w * scale))
    out = np.empty((stack.n, sh, sw, stack.frames.shape[3]), stack.frames.dtype)

    def one(k: int) -> None:
        frame = stack.frames[k]
        if (sh, sw) != (h, w):
            frame = cv2.resize(frame, (sw, sh), interpolation=cv2.INTER_AREA)
        out[k] = frame.reshape(out.shape[1:])

    with ThreadPoolExecutor(2) as pool:  # OpenCV decodes and resizes without the GIL
        for k, _ in enumerate(pool.map(one, range(stack.n)), 1):
            tick(k, stack.n)
    return FocalStack(out, stack.paths, stack.focus_distances, stack.focus_unit, stack.metadata)


def full_resolution(
    alignment: Alignment, s: float, shape: tuple[int, int]
) -> tuple[Alignment, float]:
    """An alignment estimated on frames scaled by ``s``, for frames of ``shape``: its 3x3
    transforms rescaled (:func:`dffcore.align.apply.rescale`), its dense maps left at
    scale ``s`` (:func:`map_rows` gives their full-resolution rows). Returns the
    alignment and the scale of its maps."""
    if s == 1.0 and tuple(alignment.shape) == tuple(shape):
        return alignment, 1.0
    transforms = [t if is_map(t) else scale_transform(t, s, shape) for t in alignment.transforms]
    return dataclasses.replace(alignment, transforms=transforms, shape=tuple(shape)), s


def for_crop(alignment: Alignment, map_scale: float) -> Alignment:
    """``alignment`` with each small dense map replaced by its best-fitting homography at
    full resolution: what :func:`~dffcore.align.apply.crop_box` reads of a map."""
    if not any(is_map(t) for t in alignment.transforms):
        return alignment
    transforms: list[Transform] = [
        scale_transform(fit_homography(t), map_scale, alignment.shape) if is_map(t) else t
        for t in alignment.transforms
    ]
    return dataclasses.replace(alignment, transforms=transforms)


def released(alignment: Alignment, map_scale: float) -> Alignment:
    """``alignment`` once its frames are written: each dense map replaced by its
    best-fitting homography at full resolution (:func:`for_crop`; ``run.json`` shows it
    as the frame's ``transform``), its frame's diagnostics saying so."""
    out = for_crop(alignment, map_scale)
    if out is alignment:
        return alignment
    diagnostics = [
        {**d, "dense_map": "applied, not kept (transform: its best-fitting homography)"}
        if is_map(t)
        else d
        for d, t in zip(alignment.diagnostics, alignment.transforms, strict=True)
    ]
    return dataclasses.replace(out, diagnostics=diagnostics)


def map_rows(
    small: np.ndarray, s: float, shape: tuple[int, int], ya: int, yb: int, xa: int, xb: int
) -> np.ndarray:
    """Rows ``ya:yb`` and columns ``xa:xb`` of ``scale_transform(small, s, shape)`` (a map
    estimated on a grid scaled by ``s``, bilinearly upsampled to ``shape``) without the
    whole full-resolution map: OpenCV's ``INTER_LINEAR`` resize taps and weights."""
    if s == 1.0 and small.shape[:2] == tuple(shape):
        return small[ya:yb, xa:xb]
    h, w = shape
    hs, ws = small.shape[:2]
    fy, y0, y1 = _taps(np.arange(ya, yb), hs / h, hs)
    lo, hi = int(y0.min()), int(y1.max()) + 1
    moved = small[lo:hi] - grid((hi - lo, ws)) - np.array([0, lo], np.float32)
    fy = fy[:, None, None]
    # vertically on the small grid, then horizontally with OpenCV (the same taps and
    # weights as cv2.resize); a hole (NaN) spreads to every output its taps reach
    rows = (moved[y0 - lo] * (1 - fy) + moved[y1 - lo] * fy) / np.float32(s)  # (R, ws, 2)
    holes = np.isnan(rows).any(axis=2)
    if holes.any():
        rows[holes] = 0
        reach = cv2.resize(holes.astype(np.float32), (w, yb - ya), interpolation=cv2.INTER_LINEAR)
    out = cv2.resize(rows, (w, yb - ya), interpolation=cv2.INTER_LINEAR)[:, xa:xb]
    out[..., 0] += np.arange(xa, xb, dtype=np.float32)[None, :]
    out[..., 1] += np.arange(ya, yb, dtype=np.float32)[:, None]
    if holes.any():
        out[reach[:, xa:xb] > 0] = np.nan
    return out


def _taps(pos: np.ndarray, ratio: float, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weight of the second tap, first and second source index of a linear resize."""
    f = ((pos + 0.5) * ratio - 0.5).astype(np.float32)
    i = np.floor(f).astype(np.intp)
    f = f - i
    f[i < 0] = 0
    i[i < 0] = 0
    f[i >= size - 1] = 0
    i = np.minimum(i, size - 1)
    return f.astype(np.float32), i, np.minimum(i + 1, size - 1)


def _read_rows(
    f: BinaryIO, shape: tuple[int, int, int, int], dtype: np.dtype, ra: int, rb: int
) -> np.ndarray:
    """Rows ``ra:rb`` of every frame of a raw (N,H,W,C) file (read, not mapped)."""
    n, h, w, c = shape
    item = np.dtype(dtype).itemsize
    rows = np.empty((n, rb - ra, w, c), dtype)
    for k in range(n):
        f.seek((k * h + ra) * w * c * item)
        f.readinto(memoryview(rows[k]).cast("B"))
    return rows
