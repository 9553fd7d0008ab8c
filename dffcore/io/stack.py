"""Reading focal stacks: a folder (natural sort of file names), a glob pattern or a list
of files; focus distances from a sidecar file or the frames' EXIF.

Focus distances come from a sidecar file (:func:`read_focus_distances`) or, when there is
none, from each JPEG frame's EXIF ``SubjectDistance`` (:func:`dffcore.io.exif.exif_focus_distance`).
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dffcore.core.components import ReadRequest
from dffcore.core.data import FocalStack, FocusUnit
from dffcore.core.errors import DffError
from dffcore.io.exif import exif_focus_distance
from dffcore.io.images import check_frame_sizes, read_image, read_images
from dffcore.io.readers import choose_reader, installed_readers, make_reader, parse_frames

logger = logging.getLogger(__name__)

FOCUS_SIDECAR = "focus_distances.txt"


def natural_key(path: str | Path) -> list[object]:
    """Sort key that orders ``2.jpg`` before ``10.jpg``."""
    parts = re.split(r"(\d+)", Path(path).name.lower())
    return [int(p) if p.isdigit() else p for p in parts]


def list_frames(source: str | Path | Sequence[str | Path]) -> list[Path]:
    """The files of a stack source in reading order: a folder's or glob's frames (image
    files, else the frames a reader reads, such as RAW photos) in natural order, a list
    as given, or the one file that holds a whole stack (a z-stack TIFF, a video)."""
    choice = choose_reader(source)
    if isinstance(source, (list, tuple)):
        return choice.paths
    return sorted(choice.paths, key=natural_key)


def read_focus_distances(
    path: str | Path, n: int, *, signed: bool = False
) -> tuple[np.ndarray, FocusUnit]:
    """Read a sidecar: one focus distance per frame, ``#`` comments, ``# unit: diopter``.

    Parameters
    ----------
    path : str or Path
        The sidecar: UTF-8 text (a byte-order mark is accepted), the first number of each
        non-comment line is a frame's distance, in reading order.
    n : int
        The number of frames.
    signed : bool
        Accept negative values and zero (focus *disparities*, as HCI's sidecar holds);
        they must still be finite and strictly monotonic.

    Returns
    -------
    tuple of (numpy.ndarray, str)
        The distances (float64) and their unit, ``"m"`` (default), ``"diopter"`` or
        ``"z"`` (``# unit: z``: focal-plane positions along the optical axis in metres,
        which may be 0 or negative).

    Raises
    ------
    DffError
        Naming the file (and the line): not UTF-8 text, a value that is not a number, not
        finite, not positive (metres) or negative (diopters), not strictly increasing or
        decreasing, or a count other than ``n``.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DffError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        if b"\x00" in raw:
            raise ValueError("contains NUL bytes")
        content = raw.decode("utf-8-sig")
    except ValueError:
        raise DffError(
            f"{path}: not a text file; expected UTF-8 text with one focus distance per line"
        ) from None
    unit: FocusUnit = "m"
    values: list[float] = []
    lines: list[int] = []
    for lineno, line in enumerate(content.splitlines(), 1):
        text = line.strip()
        if text.startswith("#"):
            m = re.match(r"#\s*unit\s*[:=]\s*(\S+)", text, re.I)
            if m:
                word = m.group(1).lower()
                if word in ("m", "metre", "meter", "metres", "meters"):
                    unit = "m"
                elif word in ("diopter", "diopters", "dioptre", "dioptres", "dpt"):
                    unit = "diopter"
                elif word in ("z", "z-m", "position"):
                    unit = "z"
                else:
                    raise DffError(f"{path}:{lineno}: unknown unit '{word}' (valid: m, diopter, z)")
            continue
        if not text:
            continue
        try:
            values.append(float(text.split()[0].rstrip(",")))
        except ValueError:
            raise DffError(f"{path}:{lineno}: expected a number, got '{text[:40]}'") from None
        lines.append(lineno)
    if len(values) != n:
        raise DffError(f"{path}: has {len(values)} focus distances for {n} frames")
    distances = np.asarray(values, np.float64)
    signed = signed or unit == "z"  # positions along the axis may be 0 or negative
    low = -math.inf if signed else 0.0 if unit == "diopter" else math.nextafter(0.0, 1.0)
    bad = ~np.isfinite(distances) | (distances < low)
    if bad.any():
        k = int(np.argmax(bad))
        valid = "a finite number >= 0 diopters" if unit == "diopter" else "a finite number > 0 m"
        valid = "a finite number" if signed else valid
        raise DffError(f"{path}:{lines[k]}: focus distance {values[k]} is not {valid}")
    step = np.sign(np.diff(distances))
    if step.size and not (np.all(step > 0) or np.all(step < 0)):
        k = 1 + int(np.argmax(step != step[0])) if step[0] != 0 else 1
        raise DffError(
            f"{path}:{lines[k]}: focus distance {values[k]} after {values[k - 1]}: distances "
            "must strictly increase or strictly decrease, one per frame in reading order"
        )
    return distances, unit


def _exif_focus_distances(paths: Sequence[Path]) -> np.ndarray | None:
    """Every frame's EXIF focus distance (metres), or None unless every frame has one."""
    values = [exif_focus_distance(p) for p in paths]
    have = sum(v is not None for v in values)
    if have == 0:
        return None
    if have < len(values):
        missing = next(p for p, v in zip(paths, values, strict=True) if v is None)
        logger.warning(
            "EXIF focus distances ignored: only %d of %d frames have SubjectDistance "
            "(%s has none); give a %s sidecar instead",
            have,
            len(values),
            missing.name,
            FOCUS_SIDECAR,
        )
        return None
    distances = np.asarray(values, np.float64)
    step = np.diff(distances)
    if not (np.all(step >= 0) or np.all(step <= 0)):
        k = 1 + int(np.argmax(step * step[np.flatnonzero(step)[0]] < 0))
        logger.warning(
            "EXIF focus distances ignored: they go back and forth (%s: %.4g m after %.4g m); "
            "give a %s sidecar instead",
            paths[k].name,
            distances[k],
            distances[k - 1],
            FOCUS_SIDECAR,
        )
        return None
    logger.info(
        "focus distances from EXIF SubjectDistance of %d frames: %.4g .. %.4g m",
        len(values),
        distances.min(),
        distances.max(),
    )
    if np.unique(distances).size < distances.size:
        logger.warning(
            "EXIF focus distances repeat (%d distinct values for %d frames): metric depth "
            "is coarse; a %s sidecar is more precise",
            np.unique(distances).size,
            distances.size,
            FOCUS_SIDECAR,
        )
    return distances


class LazyFrames:
    """The frames of a stack, decoded one at a time on demand (``read_stack(lazy=True)``).

    Looks like the ``(N,H,W,C)`` array of a stack to what only needs its shape and dtype;
    ``frames[k]`` decodes frame ``k`` with ``decode`` (given the frame's position in the
    source, so that :meth:`reversed` and :meth:`select` only reorder). Readers of stack
    files (:class:`dffcore.core.components.Reader`) return one for a lazy request.
    """

    ndim = 4

    def __init__(
        self,
        shape: tuple[int, ...],
        dtype: np.dtype | type,
        decode: Callable[[int], np.ndarray],
        order: Sequence[int] | None = None,
    ) -> None:
        self.order = list(range(shape[0])) if order is None else list(order)
        self.shape = (len(self.order), *shape[1:])
        self.dtype = np.dtype(dtype)
        self.decode = decode

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, k: int) -> np.ndarray:
        return self.decode(self.order[k])

    def reversed(self) -> LazyFrames:
        return LazyFrames(self.shape, self.dtype, self.decode, self.order[::-1])

    def select(self, frames: slice) -> LazyFrames:
        return LazyFrames(self.shape, self.dtype, self.decode, self.order[frames])


def lazy_files(paths: Sequence[Path], allow_corrupt: bool | None = None) -> LazyFrames:
    """Frames of image files decoded on demand; each is checked to have the first frame's
    size, bit depth and channels (a grey frame in a colour stack is repeated to three
    channels, like :func:`read_stack` does)."""
    paths = list(paths)
    check_frame_sizes(paths)  # headers only: nothing decoded yet
    first = read_image(paths[0], allow_corrupt=allow_corrupt)
    shape = (len(paths), *first.shape)

    def decode(k: int) -> np.ndarray:
        path = paths[k]
        img = read_image(path, allow_corrupt=allow_corrupt)
        _check_like(path, img, paths[0], shape[1:], first.dtype)
        if img.shape[2] != shape[3]:
            if shape[3] == 3:
                return np.repeat(img, 3, axis=2)
            raise DffError(
                f"{path}: is a colour image but {paths[0].name} is grey; a stack read "
                "frame by frame (--memory) must start with a colour frame if any is colour"
            )
        return img

    return LazyFrames(shape, first.dtype, decode)


def _check_like(
    path: Path, img: np.ndarray, first_path: Path, shape: tuple[int, ...], dtype: np.dtype
) -> None:
    if img.shape[:2] != tuple(shape[:2]):
        raise DffError(
            f"{path}: is {img.shape[1]}x{img.shape[0]} but {first_path.name} is "
            f"{shape[1]}x{shape[0]}; all frames must have the same size"
        )
    if img.dtype != dtype:
        raise DffError(
            f"{path}: has {img.dtype.itemsize * 8}-bit samples but {first_path.name} has "
            f"{np.dtype(dtype).itemsize * 8}-bit; all frames must have the same bit depth"
        )


def read_stack(
    source: str | Path | Sequence[str | Path],
    *,
    reverse: bool = False,
    focus_distances: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    lazy: bool = False,
    jobs: int | None = None,
    allow_corrupt: bool | None = None,
    frames: str | slice | None = None,
    reader: str | None = None,
    read_params: dict[str, Any] | None = None,
) -> FocalStack:
    """Read a focal stack; frames keep their native dtype, colour is RGB.

    ``source`` is a folder, glob or list of image files, or what a reader component
    reads (:mod:`dffcore.io.readers`): one file holding a whole stack (a z-stack TIFF, a
    video) or a folder of RAW frames. ``reader`` names the reader instead of the file
    names choosing it, ``read_params`` are its parameters (``dff plugins --kind read``).
    ``frames`` selects frames in reading order, ``START:STOP:STEP`` (0-based, like a
    Python slice), before ``reverse``.

    ``focus_distances`` names a sidecar file; by default ``focus_distances.txt`` next to
    the frames is used when present. Without a sidecar, the frames' EXIF
    ``SubjectDistance`` (JPEG only) gives the distances in metres when every frame has a
    positive finite one; if only some have it, EXIF is ignored with a warning. The source
    is recorded in ``metadata["focus_distances_source"]`` (the sidecar's path or
    ``"exif"``). ``reverse`` reverses the frame order. ``lazy`` decodes only the first
    frame now: ``frames`` is then a :class:`LazyFrames` that decodes each frame when
    indexed (bounded-memory runs, ``--memory``). ``jobs`` threads decode (default: every
    core; at most one frame per thread is decoded ahead of the one being stored).

    Before anything is decoded, every frame's header is read: a frame above the pixel
    limit (:func:`dffcore.io.images.max_pixels`, 300 megapixels unless ``DFF_MAX_PIXELS``
    says otherwise) or of another size than the first frame is refused. A frame the
    decoder warns about (corrupt or truncated data) is an error naming it, unless
    ``allow_corrupt`` (default: the ``DFF_ALLOW_CORRUPT`` environment variable) makes it a
    logged warning.
    """
    selection = parse_frames(frames)
    threads = jobs or os.cpu_count() or 1  # decoding, at most one frame a thread ahead
    readers = installed_readers()
    choice = choose_reader(source, readers, reader)
    paths = choice.paths
    if not isinstance(source, (list, tuple)):
        paths = sorted(paths, key=natural_key)
    if choice.name is not None:
        container = next(c for name, _, c in readers if name == choice.name)
        request = ReadRequest(selection, lazy, threads, allow_corrupt, progress)
        stack = make_reader(choice.name, read_params).read(paths, request)
        _check_count(stack.n, paths[0] if container else paths[0].parent, "frames")
        stack.metadata.setdefault("reader", choice.name)
        # a sidecar lists every frame of the source: the frames of a folder, or those of
        # a stack file when its reader says how many it holds (else the frames read)
        total = stack.metadata.get("source_frames") if container else len(paths)
        return _finish(stack, focus_distances, reverse, lazy, (selection, total), not container)
    total = len(paths)
    paths = paths[selection]
    _check_count(len(paths), paths[0].parent if paths else source, "images")
    if lazy:
        stack = FocalStack(lazy_files(paths, allow_corrupt), paths)
    else:
        stack = FocalStack(_decode_all(paths, threads, allow_corrupt, progress), paths)
    return _finish(stack, focus_distances, reverse, lazy, (selection, total), True)


def _check_count(n: int, where: object, what: str) -> None:
    if n < 2:
        raise DffError(f"{where}: a focal stack needs at least 2 {what}, found {n}")


def _decode_all(
    paths: list[Path],
    threads: int,
    allow_corrupt: bool | None,
    progress: Callable[[int, int], None] | None,
) -> np.ndarray:
    images = read_images(paths, jobs=threads, allow_corrupt=allow_corrupt)
    first = next(images)
    frames = np.empty((len(paths), *first.shape), first.dtype)
    frames[0] = first
    for i, (p, img) in enumerate(zip(paths[1:], images, strict=True), 1):
        _check_like(p, img, paths[0], first.shape, first.dtype)
        if img.shape[2] != frames.shape[3]:
            if frames.shape[3] == 1:  # grey so far: promote the stack to colour
                frames = np.repeat(frames, 3, axis=3)
            else:
                img = np.repeat(img, 3, axis=2)
        frames[i] = img
        if progress:
            progress(i + 1, len(paths))
    return frames


def _finish(
    stack: FocalStack,
    focus_distances: str | Path | None,
    reverse: bool,
    lazy: bool,
    selected: tuple[slice, int | None],
    folder: bool,
) -> FocalStack:
    """Focus distances (a sidecar wins over what the files say), then the order.

    ``selected`` is the ``--frames`` selection and the number of frames of the source it
    selected from (None: unknown, the sidecar then lists the frames read); ``folder``:
    the frames are files of a folder, which may hold a sidecar and EXIF distances."""
    paths, n = stack.paths, stack.n
    selection, total = selected
    distances, unit = stack.focus_distances, stack.focus_unit
    metadata = stack.metadata
    sidecar = Path(focus_distances) if focus_distances else paths[0].parent / FOCUS_SIDECAR
    if focus_distances and not sidecar.is_file():
        raise DffError(f"{sidecar}: no such focus-distance file")
    if sidecar.is_file() and (focus_distances or folder):  # the sidecar wins
        distances, unit = read_focus_distances(sidecar, n if total is None else total)
        if total is not None and total != n:
            distances = distances[selection]
        metadata["focus_distances_source"] = str(sidecar)
    elif distances is not None:  # what the reader found in the file
        metadata.setdefault("focus_distances_source", f"{metadata.get('reader')} metadata")
    elif folder:
        distances = _exif_focus_distances(paths)
        if distances is not None:
            unit = "m"
            metadata["focus_distances_source"] = "exif"
    frames = stack.frames
    if reverse:
        frames = frames.reversed() if lazy else frames[::-1].copy()
        if len(paths) == n:
            paths = paths[::-1]
        distances = distances[::-1].copy() if distances is not None else None
    shape = frames.shape
    logger.info("read %d frames of %dx%d from %s", n, shape[2], shape[1], paths[0].parent)
    return FocalStack(frames, list(paths), distances, unit, metadata)
