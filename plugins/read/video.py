"""Focal stacks recorded as a video (a focus sweep): one frame per focus position."""

from __future__ import annotations

import logging
import re
import tempfile
import threading
from pathlib import Path

import cv2
import numpy as np

from dffcore.core.components import Reader, ReadRequest
from dffcore.core.data import FocalStack
from dffcore.core.errors import DffError
from dffcore.io.images import (
    allow_corrupt_default,
    captured_stderr,
    max_pixels,
    rgb_from_opencv,
)
from dffcore.io.stack import LazyFrames

logger = logging.getLogger(__name__)

_CONTEXT = re.compile(r"^\[[^]@]*@ 0x[0-9a-fA-F]+\]\s*")  # FFmpeg's "[mp4 @ 0x55...] "
_OPENCV_LOG = re.compile(r"^\[\s*(WARN|ERROR|INFO|DEBUG|FATAL)\b")  # "[ WARN:0@0.1] ..."


class _Capture:
    """One open ``cv2.VideoCapture`` of a file that reads forward frame by frame.

    ``position`` is the index of the next frame :meth:`grab` reaches. What FFmpeg and
    OpenCV print while opening or decoding is captured (never reaches the terminal): at
    opening it is the reason in the error; while a frame that is retrieved is decoded, it
    marks that frame corrupt (frames only stepped over are not judged).
    """

    def __init__(self, path: Path, allow_corrupt: bool) -> None:
        self.path = path
        self.allow_corrupt = allow_corrupt
        # FFmpeg only (never an image-sequence pattern), decoding on the calling thread:
        # a decoder thread of FFmpeg's own would print its complaints outside the capture
        with captured_stderr() as said:
            cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])
        if not cap.isOpened():
            reason = "an empty file" if _empty(path) else _first_line(said, ffmpeg_only=True)
            raise DffError(
                f"{path}: cannot be opened as a video ({reason or 'not a video FFmpeg reads'})"
            )
        self.cap = cap
        self.position = 0
        self.said: list[str] = []  # what the last grab printed

    def prop(self, which: int) -> float:
        return float(self.cap.get(which))

    def grab(self) -> bool:
        """Move to the next frame without converting it; False at the end of the video."""
        with captured_stderr() as said:
            ok = bool(self.cap.grab())
        self.said = said  # judged only if the frame is retrieved: skipped frames don't count
        if ok:
            self.position += 1
        return ok

    def retrieve(self) -> np.ndarray:
        """The frame the last :meth:`grab` reached, RGB or grey (H,W,C)."""
        k = self.position - 1
        with captured_stderr() as said:
            ok, image = self.cap.retrieve()
        if not ok or image is None or image.size == 0:
            raise DffError(f"{self.path}: frame {k} cannot be decoded")
        self._decoder_said([*self.said, *said], k)
        return rgb_from_opencv(image)

    def _decoder_said(self, said: list[str], k: int) -> None:
        reason = _first_line(said)
        if not reason:
            return
        if not self.allow_corrupt:
            raise DffError(
                f"{self.path}: frame {k} is corrupt ({reason}); pass --allow-corrupt to use "
                "it anyway"
            )
        logger.warning("%s: frame %d is corrupt, used anyway: %s", self.path, k, reason)

    def release(self) -> None:
        """Close the capture; FFmpeg may decode what it buffered and complain about it
        while closing: that is captured too (and only logged: the frames were judged)."""
        with captured_stderr() as said:
            self.cap.release()
        if said and said[0].strip():
            logger.debug("%s: while closing: %s", self.path, _first_line(said))


def _first_line(said: list[str], *, ffmpeg_only: bool = False) -> str:
    """The first line FFmpeg printed, without its ``[codec @ 0x...]``; else OpenCV's
    (unless ``ffmpeg_only``: OpenCV's own log lines say nothing about the file)."""
    lines = [s.strip() for text in said for s in text.splitlines() if s.strip()]
    ffmpeg = [_CONTEXT.sub("", s) for s in lines if not _OPENCV_LOG.match(s)]
    return next(iter(ffmpeg or ([] if ffmpeg_only else lines)), "")


def _empty(path: Path) -> bool:
    try:
        return path.stat().st_size == 0
    except OSError:
        return False


def _fourcc(code: float) -> str:
    value = int(code) & 0xFFFFFFFF
    text = value.to_bytes(4, "little").decode("latin-1")
    return text.strip("\x00 ") if text.isprintable() else f"0x{value:08x}"


class Video(Reader):
    """A video file whose frames are a focal stack (a focus sweep), in recording order.

    Frames are decoded by OpenCV's FFmpeg backend, converted to RGB, 8 bit. ``--frames``
    selects frames without decoding the others (they are only stepped over); a negative
    start or stop counts from the end, for which the frames are counted (the container's
    frame count is a hint that is checked). Videos carry no focus distances: give
    ``--focus-distances`` for metric depth. ``metadata`` gets ``fps``, ``frame_count``
    (frames in the file) and ``codec`` (the FourCC). A memory-bounded run (``--memory``)
    decodes each frame once, in order, and keeps the selected ones in an unnamed
    temporary file for the engine's second pass (and for a reversed stack). A frame
    above the pixel limit (:func:`dffcore.io.images.max_pixels`) is refused before
    decoding; decoder warnings are errors naming the frame unless corrupt frames are
    allowed (``--allow-corrupt``).
    """

    name = "video"
    suffixes = (".mp4", ".mov", ".avi", ".mkv", ".m4v", ".webm")
    container = True
    citation = "FFmpeg (https://ffmpeg.org) through OpenCV's VideoCapture"

    def read(self, paths: list[Path], request: ReadRequest) -> FocalStack:
        path = paths[0]
        allow = _allow(request.allow_corrupt)
        cap = _Capture(path, allow)
        owned = True  # released here unless the lazy frames keep it
        try:
            fps = cap.prop(cv2.CAP_PROP_FPS)
            hint = int(max(cap.prop(cv2.CAP_PROP_FRAME_COUNT), 0))
            codec = _fourcc(cap.prop(cv2.CAP_PROP_FOURCC))
            _check_size(path, cap)
            sel = request.frames
            total: int | None = None
            if request.lazy or _from_end(sel):  # indices must be exact: count, then open again
                total = _count(cap)
                cap.release()
                cap = _Capture(path, allow)
                if hint and hint != total:
                    logger.info("%s: the header says %d frames, %d were found", path, hint, total)
            if total == 0:
                raise DffError(f"{path}: the video has no frames")
            if request.lazy:
                assert total is not None
                frames: np.ndarray | LazyFrames = _lazy(cap, list(range(total))[sel])
                owned = False
            else:
                frames, reached = _read_selected(cap, sel, total, hint, request)
                total = reached if total is None else total
                if total == 0:
                    raise DffError(f"{path}: the video has no frames")
        finally:
            if owned:
                cap.release()
        metadata = {"fps": fps, "frame_count": hint if total is None else total, "codec": codec}
        if total is not None:  # counted: a --focus-distances sidecar lists every frame
            metadata["source_frames"] = total
        logger.debug("%s: %d frames selected (%s, %.3g fps)", path, len(frames), codec, fps)
        return FocalStack(frames, [path], None, None, metadata)


def _allow(allow_corrupt: bool | None) -> bool:
    return allow_corrupt_default() if allow_corrupt is None else allow_corrupt


def _from_end(sel: slice) -> bool:
    return (sel.start is not None and sel.start < 0) or (sel.stop is not None and sel.stop < 0)


def _check_size(path: Path, cap: _Capture) -> None:
    w = int(cap.prop(cv2.CAP_PROP_FRAME_WIDTH))
    h = int(cap.prop(cv2.CAP_PROP_FRAME_HEIGHT))
    limit = max_pixels()
    if w * h > limit:
        raise DffError(
            f"{path}: frames are {w}x{h} = {w * h / 1e6:.0f} megapixels, more than the limit "
            f"of {limit / 1e6:.0f} megapixels per frame (set DFF_MAX_PIXELS to raise it)"
        )


def _count(cap: _Capture) -> int:
    """Frames in the video, counted by stepping over every one (none converted)."""
    while cap.grab():
        pass
    return cap.position


def _read_selected(
    cap: _Capture, sel: slice, total: int | None, hint: int, request: ReadRequest
) -> tuple[np.ndarray, int | None]:
    """The selected frames in one forward pass that steps over the others, and the frame
    count when the end was reached (None when reading stopped at the selection's end).
    ``total`` is the exact count, needed only when the selection counts from the end."""
    if total is not None:  # indices from the end made absolute
        start, stop, step = sel.indices(total)
        expected = len(range(start, stop, step))
    else:
        start, stop, step = sel.start or 0, sel.stop, sel.step or 1
        expected = len(range(hint)[sel])
    # one (N,H,W,C) array of the expected size, filled in place (no list stacked at the
    # end); grown only when the header's frame count was short
    out: np.ndarray | None = None
    n = 0
    reached: int | None = None
    while stop is None or cap.position < stop:
        k = cap.position
        if not cap.grab():
            reached = k
            break
        if k >= start and (k - start) % step == 0:
            frame = cap.retrieve()
            if out is None:
                out = np.empty((max(expected, 1), *frame.shape), frame.dtype)
            _same_size(frame, out[0] if n else None, cap, k)
            if n == len(out):
                out = np.concatenate([out, np.empty_like(out[: max(1, n // 2)])])
            out[n] = frame
            n += 1
            if request.progress is not None:
                request.progress(n, max(expected, n))
    if out is None:
        return np.empty((0, 1, 1, 3), np.uint8), reached
    return out[:n], reached


def _same_size(frame: np.ndarray, first: np.ndarray | None, cap: _Capture, k: int) -> np.ndarray:
    if first is not None and frame.shape != first.shape:
        raise DffError(
            f"{cap.path}: frame {k} is {frame.shape[1]}x{frame.shape[0]} but the first "
            f"frame read is {first.shape[1]}x{first.shape[0]}; all frames must have one size"
        )
    return frame


class _Forward:
    """Decodes frames ``indices`` of a video on demand, thread-safe, in one forward pass.

    A video can only be read forwards: frames are decoded in order as they are asked for,
    and each selected frame decoded on the way is also written to an unnamed temporary
    file (the disk holds the frames, the memory one at a time), from which a frame asked
    for again, or after a later one (a reversed stack reads backwards), is read back. So
    every frame is decoded once, whatever the order of the requests.
    """

    def __init__(self, cap: _Capture, indices: list[int]) -> None:
        self.cap = cap
        self.indices = indices
        self.wanted = set(indices)
        self.lock = threading.Lock()
        self.spool = tempfile.TemporaryFile()  # removed when closed, even after a crash
        self.slots: dict[int, int] = {}  # source frame -> its slot in the spool
        self.first = self._next_until(indices[0])
        self.shape, self.dtype = self.first.shape, self.first.dtype

    def _put(self, k: int, frame: np.ndarray) -> None:
        self.spool.seek(len(self.slots) * frame.nbytes)
        self.spool.write(np.ascontiguousarray(frame).tobytes())
        self.slots[k] = len(self.slots)

    def _get(self, k: int) -> np.ndarray:
        size = int(np.prod(self.shape)) * self.dtype.itemsize
        self.spool.seek(self.slots[k] * size)
        data = self.spool.read(size)
        return np.frombuffer(data, self.dtype).reshape(self.shape).copy()

    def _next_until(self, k: int) -> np.ndarray:
        """Read forward to frame ``k``, spooling the selected frames passed on the way."""
        frame = None
        while self.cap.position <= k:
            at = self.cap.position
            if not self.cap.grab():
                raise DffError(
                    f"{self.cap.path}: frame {k} cannot be read: the video ends after "
                    f"{self.cap.position} frames"
                )
            if at in self.wanted:
                frame = self.cap.retrieve()
                if self.slots:
                    frame = _same_size(frame, self.first, self.cap, at)
                self._put(at, frame)
        assert frame is not None
        return frame

    def __call__(self, j: int) -> np.ndarray:
        k = self.indices[j]
        with self.lock:
            if k in self.slots:
                return self._get(k)
            return self._next_until(k)

    def __del__(self) -> None:
        self.cap.release()
        self.spool.close()


def _lazy(cap: _Capture, indices: list[int]) -> LazyFrames:
    """A :class:`LazyFrames` of the frames ``indices`` (the first decoded now)."""
    if not indices:
        cap.release()
        return LazyFrames((0, 1, 1, 3), np.uint8, lambda k: np.empty((1, 1, 3), np.uint8))
    forward = _Forward(cap, indices)
    return LazyFrames((len(indices), *forward.shape), forward.dtype, forward)
