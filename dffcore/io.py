"""The one place that reads and writes images (OpenCV's BGR is converted here, once).

Stacks are read from a folder (natural sort of file names), a glob pattern or an
explicit list of files. Outputs are written atomically: to a temporary file in the
destination folder, then renamed over the final name.

Focus distances come from a sidecar file (:func:`read_focus_distances`) or, when there is
none, from each JPEG frame's EXIF ``SubjectDistance`` (:func:`read_exif_numbers`).
"""

from __future__ import annotations

import glob as globmod
import logging
import os
import re
import struct
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from .data import FocalStack, FocusUnit
from .errors import DffError
from .parallel import ordered_map

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")
FOCUS_SIDECAR = "focus_distances.txt"
_FLAGS = cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR  # keeps 16 bit; honours EXIF orientation
EXIF_READ_BYTES = 65536  # EXIF lives in APP1, which cannot exceed 64 KB; read no more
#: Exif-IFD tags read by :func:`read_exif_numbers` (CIPA DC-008 Exif 2.32, section 4.6.5)
EXIF_TAGS = {
    0x9206: "SubjectDistance",  # RATIONAL, metres; 0 = unknown, 0xFFFFFFFF/1 = infinity
    0x920A: "FocalLength",  # RATIONAL, millimetres
    0xA405: "FocalLengthIn35mmFilm",  # SHORT, millimetres (35 mm equivalent)
}


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


def _jpeg_exif_tiff(data: bytes) -> bytes | None:
    """The TIFF block of a JPEG's APP1 ``Exif\\0\\0`` segment, or None (not a JPEG, no EXIF)."""
    if data[:2] != b"\xff\xd8":
        return None
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise ValueError(f"no JPEG marker at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD9, 0xDA):  # end of image, start of scan: no metadata after this
            return None
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            pos += 2
            continue
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if length < 2:
            raise ValueError(f"JPEG segment length {length} at byte {pos}")
        segment = data[pos + 4 : pos + 2 + length]
        if marker == 0xE1 and segment.startswith(b"Exif\x00\x00"):
            return segment[6:]
        pos += 2 + length
    return None


def _tiff_ifd(tiff: bytes, order: str, offset: int) -> dict[int, tuple[int, int]]:
    """Entries of the TIFF IFD at ``offset``: tag -> (field type, offset of its value field)."""
    (count,) = struct.unpack_from(order + "H", tiff, offset)
    entries = {}
    for i in range(count):
        tag, ftype = struct.unpack_from(order + "HH", tiff, offset + 2 + 12 * i)
        entries[tag] = (ftype, offset + 2 + 12 * i + 8)
    return entries


def _tiff_number(tiff: bytes, order: str, ftype: int, field: int) -> float | None:
    """First value of a SHORT, LONG, RATIONAL or SRATIONAL field; None for other types."""
    if ftype == 3:
        return float(struct.unpack_from(order + "H", tiff, field)[0])
    if ftype in (4, 13):  # LONG, IFD
        return float(struct.unpack_from(order + "I", tiff, field)[0])
    if ftype in (5, 10):  # RATIONAL, SRATIONAL: two 32-bit integers stored at an offset
        (where,) = struct.unpack_from(order + "I", tiff, field)
        num, den = struct.unpack_from(order + ("II" if ftype == 5 else "ii"), tiff, where)
        if ftype == 5 and num == 0xFFFFFFFF:  # Exif's "infinity"
            return float("inf")
        return num / den if den else None
    return None


def read_exif_numbers(path: str | Path) -> dict[str, float]:
    """Numeric Exif-IFD tags of a JPEG file: the names of :data:`EXIF_TAGS` that it has.

    A small pure-Python reader of the first 64 KB only: the APP1 ``Exif\\0\\0`` segment,
    its TIFF header, IFD0, the Exif IFD it points to (tag 0x8769) and the tags in
    :data:`EXIF_TAGS` (TIFF 6.0 section 2; CIPA DC-008-2019 Exif 2.32, sections 4.5-4.6).
    Values are returned as stored (``SubjectDistance`` 0 means unknown, ``inf`` infinity).
    Other formats, missing EXIF and malformed EXIF give ``{}``; malformed EXIF is logged at
    debug level and never raises.
    """
    try:
        with open(path, "rb") as f:
            data = f.read(EXIF_READ_BYTES)
        tiff = _jpeg_exif_tiff(data)
        if tiff is None:
            return {}
        order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
        if order is None or struct.unpack_from(order + "H", tiff, 2)[0] != 42:
            raise ValueError("bad TIFF header")
        ifd0 = _tiff_ifd(tiff, order, struct.unpack_from(order + "I", tiff, 4)[0])
        if 0x8769 not in ifd0:
            return {}
        ftype, field = ifd0[0x8769]
        if ftype not in (4, 13):  # LONG or IFD
            raise ValueError(f"Exif IFD pointer of field type {ftype}")
        exif = _tiff_ifd(tiff, order, struct.unpack_from(order + "I", tiff, field)[0])
        out = {}
        for tag, name in EXIF_TAGS.items():
            if tag in exif:
                value = _tiff_number(tiff, order, *exif[tag])
                if value is not None:
                    out[name] = value
        return out
    except (OSError, ValueError, struct.error) as exc:
        logger.debug("%s: EXIF not readable, ignored: %s", path, exc)
        return {}


def exif_focus_distance(path: str | Path) -> float | None:
    """EXIF ``SubjectDistance`` of a JPEG in metres, or None unless positive and finite."""
    value = read_exif_numbers(path).get("SubjectDistance")
    return value if value is not None and 0 < value < float("inf") else None


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

    Looks like the ``(N,H,W,C)`` array of a stack to what only needs its shape and dtype
    (known from the first frame); ``frames[k]`` decodes frame ``k`` and checks that it
    has the first frame's size, bit depth and channels (a grey frame in a colour stack
    is repeated to three channels, like :func:`read_stack` does).
    """

    ndim = 4

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = list(paths)
        first = read_image(self.paths[0])
        self.dtype = first.dtype
        self.shape = (len(self.paths), *first.shape)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, k: int) -> np.ndarray:
        path = self.paths[k]
        img = read_image(path)
        _check_like(path, img, self.paths[0], self.shape[1:], self.dtype)
        if img.shape[2] != self.shape[3]:
            if self.shape[3] == 3:
                return np.repeat(img, 3, axis=2)
            raise DffError(
                f"{path}: is a colour image but {self.paths[0].name} is grey; a stack read "
                "frame by frame (--memory) must start with a colour frame if any is colour"
            )
        return img

    def reversed(self) -> LazyFrames:
        out = LazyFrames.__new__(LazyFrames)
        out.paths, out.dtype, out.shape = self.paths[::-1], self.dtype, self.shape
        return out


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
) -> FocalStack:
    """Read a focal stack; frames keep their native dtype, colour is RGB.

    ``focus_distances`` names a sidecar file; by default ``focus_distances.txt`` next to
    the frames is used when present. Without a sidecar, the frames' EXIF
    ``SubjectDistance`` (JPEG only) gives the distances in metres when every frame has a
    positive finite one; if only some have it, EXIF is ignored with a warning. The source
    is recorded in ``metadata["focus_distances_source"]`` (the sidecar's path or
    ``"exif"``). ``reverse`` reverses the frame order. ``lazy`` decodes only the first
    frame now: ``frames`` is then a :class:`LazyFrames` that decodes each frame when
    indexed (bounded-memory runs, ``--memory``). ``jobs`` threads decode (default: every
    core; at most two frames per thread are decoded ahead of the one being stored).
    """
    paths = list_frames(source)
    if len(paths) < 2:
        where = paths[0].parent if paths else source
        raise DffError(f"{where}: a focal stack needs at least 2 images, found {len(paths)}")
    if lazy:
        frames: np.ndarray | LazyFrames = LazyFrames(paths)
        first = np.empty(frames.shape[1:], frames.dtype)  # shape and dtype only
    else:
        first = read_image(paths[0])
        frames = np.empty((len(paths), *first.shape), first.dtype)
        frames[0] = first
    threads = jobs or os.cpu_count() or 1  # decoding, at most two frames a thread ahead
    rest = [] if lazy else ordered_map(read_image, paths[1:], threads, 2 * threads)
    decoded = [] if lazy else zip(paths[1:], rest, strict=True)
    for i, (p, img) in enumerate(decoded, 1):
        _check_like(p, img, paths[0], first.shape, first.dtype)
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
    metadata: dict[str, str] = {}
    if sidecar.is_file():  # the sidecar wins over EXIF
        distances, unit = read_focus_distances(sidecar, len(paths))
        metadata["focus_distances_source"] = str(sidecar)
    else:
        distances = _exif_focus_distances(paths)
        if distances is not None:
            unit = "m"
            metadata["focus_distances_source"] = "exif"
    if reverse:
        frames = frames.reversed() if lazy else frames[::-1].copy()
        paths = paths[::-1]
        distances = distances[::-1].copy() if distances is not None else None
    logger.info(
        "read %d frames of %dx%d from %s",
        len(paths),
        first.shape[1],
        first.shape[0],
        paths[0].parent,
    )
    return FocalStack(frames, paths, distances, unit, metadata)


# -- writing -------------------------------------------------------------------
def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and a rename: never half-written.

    The file gets the permissions a plain ``open(path, "w")`` would (0666 less the umask),
    not the owner-only mode of the temporary file.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            os.fchmod(f.fileno(), 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


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
