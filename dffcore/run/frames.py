"""Where a run's aligned frames live: in memory, or streamed once to a temporary file.

A whole-image run holds every frame, the aligned frames and the focus volume in memory:
about ``N·H·W·(2·C + 12)`` bytes, 10 GB for 30 frames of 24 MP. A banded run never
holds more than one decoded frame and one band of rows of every frame:

1. **align**: the aligner runs on the stack downscaled so that it fits a share of the
   budget (full resolution when it fits); its :class:`~dffcore.core.data.Alignment` is
   rescaled to full resolution (:func:`dffcore.align.apply.rescale`);
2. **warp**: each frame is decoded once, warped by
   :func:`dffcore.align.apply.warp_frame` (crop box, interpolation, exposure) and
   appended to a raw file in a temporary folder, with its validity mask; the folder is
   removed when the run ends, and a run killed with SIGKILL leaves it to the next run,
   which removes the folders of dead runs (:data:`TEMP_PREFIX`, :mod:`dffcore.run.scratch`);
   a full disk is a one-line error naming the folder and the space needed;
3. **bands**: :meth:`StreamedFrames.rows` reads a band of rows of every frame back.
"""

from __future__ import annotations

import contextlib
import errno
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

import cv2
import numpy as np

from dffcore.align.apply import box_to_crop, crop_box, rescale, warp_frame
from dffcore.core.data import AlignedStack, Alignment, FocalStack
from dffcore.core.errors import DffError
from dffcore.run.scratch import process_tag, sweep

#: temporary folders of streamed frames: ``dffcore-<pid>-<start time>-<random>``
TEMP_PREFIX = "dffcore-"
TEMP_PATTERN = r"dffcore-(?P<pid>\d+)-(?P<start>\d+)-[A-Za-z0-9_]+"

#: progress(done, total)
Tick = Callable[[int, int], None]


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
    ) -> None:
        y0, y1, x0, x1 = box
        self.alignment: Alignment = alignment
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
            for k in range(n):
                frame, valid = warp_frame(self.alignment, k, stack.frames[k], self.box)
                # file.write, not ndarray.tofile: a full disk then raises ENOSPC
                ff.write(memoryview(np.ascontiguousarray(frame, self.dtype)).cast("B"))
                if vf is not None:
                    mask = np.ones(self.shape[1:3], bool) if valid is None else valid
                    vf.write(memoryview(np.ascontiguousarray(mask, np.uint8)).cast("B"))
                tick(k + 1, n)

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
    alignment = rescale(align(small_stack(stack, scale, ticks("read"))), scale, stack.shape)
    box = crop_box(alignment)
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
        frames = StreamedFrames(tmp, alignment, box, channels, dtype)
        frames.write(stack, ticks("warp"))
        with frames:
            yield frames
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def small_stack(stack: FocalStack, scale: float, tick: Tick) -> FocalStack:
    """The stack in memory, resized by ``scale`` (decoded one frame at a time)."""
    if scale >= 1.0 and isinstance(stack.frames, np.ndarray):
        return stack
    h, w = stack.shape
    sh, sw = max(8, round(h * scale)), max(8, round(w * scale))
    out = np.empty((stack.n, sh, sw, stack.frames.shape[3]), stack.frames.dtype)
    for k in range(stack.n):
        frame = stack.frames[k]
        if (sh, sw) != (h, w):
            frame = cv2.resize(frame, (sw, sh), interpolation=cv2.INTER_AREA)
        out[k] = frame.reshape(out.shape[1:])
        tick(k + 1, stack.n)
    return FocalStack(out, stack.paths, stack.focus_distances, stack.focus_unit, stack.metadata)


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
