"""The one place that reads and writes images (OpenCV's BGR is converted here, once).

Stacks are read from a folder (natural sort of file names), a glob pattern or an
explicit list of files. Outputs are written atomically: to a temporary file in the
destination folder, then renamed over the final name.
"""

from __future__ import annotations

import glob as globmod
import logging
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from .data import FocalStack, FocusUnit
from .errors import DffError

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")
FOCUS_SIDECAR = "focus_distances.txt"
_FLAGS = cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR  # keeps 16 bit; honours EXIF orientation


def natural_key(path: str | Path) -> list[object]:
    """Sort key that orders ``2.jpg`` before ``10.jpg``."""
    parts = re.split(r"(\d+)", Path(path).name.lower())
    return [int(p) if p.isdigit() else p for p in parts]


def read_image(path: str | Path) -> np.ndarray:
    """Read one image as (H,W,C) RGB or (H,W,1) grey in its native dtype; alpha dropped."""
    path = Path(path)
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise DffError(f"{path}: cannot read: {exc.strerror or exc}") from None
    image = cv2.imdecode(raw, _FLAGS) if raw.size else None
    if image is None:
        raise DffError(f"{path}: not a readable image (supported: {', '.join(IMAGE_EXTENSIONS)})")
    if image.ndim == 2:
        return image[..., None]
    if image.shape[2] == 4:
        image = image[..., :3]
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def list_frames(source: str | Path | Sequence[str | Path]) -> list[Path]:
    """Frame files of a folder, glob pattern or explicit list, in reading order."""
    if isinstance(source, (list, tuple)):
        paths = [Path(p) for p in source]
        for p in paths:
            if not p.is_file():
                raise DffError(f"{p}: no such image file")
        return paths
    text = str(source)
    path = Path(text)
    if path.is_dir():
        paths = [p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
        if not paths:
            raise DffError(
                f"{path}: no images found (looked for {', '.join(IMAGE_EXTENSIONS)} files)"
            )
        return sorted(paths, key=natural_key)
    if any(c in text for c in "*?["):
        paths = [Path(p) for p in globmod.glob(text) if Path(p).is_file()]
        if not paths:
            raise DffError(f"{text}: the pattern matches no files")
        return sorted(paths, key=natural_key)
    if path.is_file():
        raise DffError(f"{path}: is a single file; a focal stack is a folder of 2 or more images")
    raise DffError(f"{path}: no such folder")


def read_focus_distances(path: str | Path, n: int) -> tuple[np.ndarray, FocusUnit]:
    """Read a sidecar: one focus distance per frame, ``#`` comments, ``# unit: diopter``."""
    path = Path(path)
    unit: FocusUnit = "m"
    values: list[float] = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        text = line.strip()
        if text.startswith("#"):
            m = re.match(r"#\s*unit\s*[:=]\s*(\S+)", text, re.I)
            if m:
                word = m.group(1).lower()
                if word in ("m", "metre", "meter", "metres", "meters"):
                    unit = "m"
                elif word in ("diopter", "diopters", "dioptre", "dioptres", "dpt"):
                    unit = "diopter"
                else:
                    raise DffError(f"{path}:{lineno}: unknown unit '{word}' (valid: m, diopter)")
            continue
        if not text:
            continue
        try:
            values.append(float(text.split()[0].rstrip(",")))
        except ValueError:
            raise DffError(f"{path}:{lineno}: expected a number, got '{text}'") from None
    if len(values) != n:
        raise DffError(f"{path}: has {len(values)} focus distances for {n} frames")
    return np.asarray(values, np.float64), unit


def read_stack(
    source: str | Path | Sequence[str | Path],
    *,
    reverse: bool = False,
    focus_distances: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> FocalStack:
    """Read a focal stack; frames keep their native dtype, colour is RGB.

    ``focus_distances`` names a sidecar file; by default ``focus_distances.txt`` next to
    the frames is used when present. ``reverse`` reverses the frame order.
    """
    paths = list_frames(source)
    if len(paths) < 2:
        where = paths[0].parent if paths else source
        raise DffError(f"{where}: a focal stack needs at least 2 images, found {len(paths)}")
    first = read_image(paths[0])
    frames = np.empty((len(paths), *first.shape), first.dtype)
    frames[0] = first
    for i, p in enumerate(paths[1:], 1):
        img = read_image(p)
        if img.shape[:2] != first.shape[:2]:
            raise DffError(
                f"{p}: is {img.shape[1]}x{img.shape[0]} but {paths[0].name} is "
                f"{first.shape[1]}x{first.shape[0]}; all frames must have the same size"
            )
        if img.dtype != first.dtype:
            raise DffError(
                f"{p}: has {img.dtype.itemsize * 8}-bit samples but {paths[0].name} has "
                f"{first.dtype.itemsize * 8}-bit; all frames must have the same bit depth"
            )
        if img.shape[2] != frames.shape[3]:
            if frames.shape[3] == 1:  # grey so far: promote the stack to colour
                frames = np.repeat(frames, 3, axis=3)
            else:
                img = np.repeat(img, 3, axis=2)
        frames[i] = img
        if progress:
            progress(i + 1, len(paths))
    distances: np.ndarray | None = None
    unit: FocusUnit | None = None
    sidecar = Path(focus_distances) if focus_distances else paths[0].parent / FOCUS_SIDECAR
    if focus_distances and not sidecar.is_file():
        raise DffError(f"{sidecar}: no such focus-distance file")
    if sidecar.is_file():
        distances, unit = read_focus_distances(sidecar, len(paths))
    if reverse:
        frames = frames[::-1].copy()
        paths = paths[::-1]
        distances = distances[::-1].copy() if distances is not None else None
    logger.info(
        "read %d frames of %dx%d from %s",
        len(paths),
        first.shape[1],
        first.shape[0],
        paths[0].parent,
    )
    return FocalStack(frames, paths, distances, unit)


# -- writing -------------------------------------------------------------------
def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and a rename: never half-written."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def encode_image(image: np.ndarray, ext: str = ".png") -> bytes:
    """Encode an RGB, grey or (H,W,1) image (uint8 or uint16) to PNG/JPEG/TIFF bytes."""
    if image.dtype not in (np.uint8, np.uint16):
        raise DffError(f"cannot write a {image.dtype} image: convert to uint8 or uint16 first")
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    elif image.ndim == 3:
        image = image[..., 0]
    ok, buf = cv2.imencode(ext, image)
    if not ok:
        raise DffError(f"cannot encode a {image.dtype} image as {ext}")
    return buf.tobytes()


def write_image(path: str | Path, image: np.ndarray) -> None:
    """Write an RGB or grey image atomically (format from the extension)."""
    atomic_write_bytes(path, encode_image(image, Path(path).suffix or ".png"))


def write_npy(path: str | Path, array: np.ndarray) -> None:
    """Write a ``.npy`` file atomically."""
    import io as _io

    buf = _io.BytesIO()
    np.save(buf, array)
    atomic_write_bytes(path, buf.getvalue())
