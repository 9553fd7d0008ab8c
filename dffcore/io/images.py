"""The one place that reads and writes image files (OpenCV's BGR is converted here, once).

Outputs are written atomically: to a temporary file in the destination folder, then
renamed over the final name, so a crash never leaves a half-written file.

Reading is defensive (hostile input gets a one-line :class:`DffError` naming the file):

* the pixel count is read from the header (:mod:`dffcore.io.headers` for JPEG and PNG,
  Pillow's header parser for other formats) and a frame
  above :func:`max_pixels` (default :data:`DEFAULT_MAX_PIXELS`, 300 megapixels; the
  environment variable ``DFF_MAX_PIXELS`` overrides it) is refused before it is decoded,
  so a small file declaring a huge image (a decompression bomb) costs no memory;
* what the decoders (libjpeg, libpng, libtiff, OpenCV) write to the C-level stderr while
  decoding is captured (file descriptor 2 is redirected around the decode) and never
  reaches the terminal: such a warning ("Corrupt JPEG data...", "Premature end of JPEG
  file") means the file is corrupt or truncated, an error naming it unless corrupt frames
  are allowed (``allow_corrupt``, ``--allow-corrupt``, or ``DFF_ALLOW_CORRUPT=1``), when
  it is a logged warning naming it. Frames are decoded on several threads under one
  capture; only when the decoders wrote something are that batch's files decoded again
  one by one, each under its own capture, to find the culprit(s).
* ``.npy`` arrays are checked from their header (shape, dtype, size on disk) before any
  data is read (:func:`load_npy_checked`).
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import struct
import sys
import tempfile
import threading
import warnings
import zlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

import cv2
import numpy as np

from dffcore.core.errors import DffError
from dffcore.io.headers import header_size

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")
_FLAGS = cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR  # keeps 16 bit; honours EXIF orientation

#: pixels (width x height) a frame may have unless ``DFF_MAX_PIXELS`` says otherwise
DEFAULT_MAX_PIXELS = 300_000_000
_STDERR_LOCK = threading.Lock()  # fd 2 is process-wide: one capture at a time
_PIL_LOCK = threading.Lock()  # Image.MAX_IMAGE_PIXELS is process-wide too


def max_pixels() -> int:
    """The largest frame (width x height pixels) that is decoded.

    Returns
    -------
    int
        ``DFF_MAX_PIXELS`` from the environment when set (a positive integer, ``_`` and
        ``e`` notation accepted, e.g. ``5e8``), else :data:`DEFAULT_MAX_PIXELS`.
    """
    text = os.environ.get("DFF_MAX_PIXELS", "").strip()
    if not text:
        return DEFAULT_MAX_PIXELS
    try:
        value = float(text.replace("_", ""))
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 1):
        raise DffError(f"DFF_MAX_PIXELS={text}: must be a positive number of pixels, e.g. 5e8")
    return int(value)


def allow_corrupt_default() -> bool:
    """True when the environment sets ``DFF_ALLOW_CORRUPT`` to 1/yes/true."""
    return os.environ.get("DFF_ALLOW_CORRUPT", "").strip().lower() in ("1", "yes", "true", "on")


def image_size(path: str | Path, limit: int | None = None) -> tuple[int, int] | None:
    """``(width, height)`` of an image as it will be decoded, read from its header only.

    Parameters
    ----------
    path : str or Path
        The image file.
    limit : int, optional
        Largest allowed ``width * height`` (default :func:`max_pixels`).

    Returns
    -------
    tuple of int, or None
        The size, with width and height swapped when the EXIF orientation rotates the
        image by 90 degrees (as the decoder does); None when the header cannot be parsed
        (JPEG and PNG by :func:`dffcore.io.headers.header_size`, other formats by
        Pillow): the decoder then has the last word.

    Raises
    ------
    DffError
        When the image has more than ``limit`` pixels.
    """
    limit = max_pixels() if limit is None else limit
    parsed = header_size(path)  # JPEG and PNG: no image library needed
    if parsed is not None:
        w, h, orientation = parsed
        return _limited(path, w, h, limit, orientation)
    from PIL import Image  # other formats: header parsing only; OpenCV decodes

    try:
        with _PIL_LOCK, warnings.catch_warnings():  # Pillow warns of corrupt EXIF
            warnings.simplefilter("ignore")
            saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # we check below
            try:
                with Image.open(path) as image:
                    (w, h), fmt = image.size, image.format
                    orientation = None
                    # EXIF in the header (JPEG APP1, TIFF IFD0): a PNG's eXIf chunk may
                    # follow the pixels, and Pillow would decode them to reach it
                    if w * h <= limit and fmt in ("JPEG", "MPO", "TIFF"):
                        try:
                            orientation = image.getexif().get(0x0112)
                        except Exception:  # malformed EXIF: the decoder decides
                            orientation = None
            finally:
                Image.MAX_IMAGE_PIXELS = saved
    except Exception:  # not parseable by Pillow: left to the decoder
        return None
    return _limited(path, w, h, limit, orientation)


def _limited(
    path: str | Path, w: int, h: int, limit: int, orientation: int | None
) -> tuple[int, int]:
    """``(width, height)`` as decoded (EXIF orientation applied), or a DffError above
    ``limit`` pixels."""
    if w * h > limit:
        raise DffError(
            f"{path}: is {w}x{h} = {w * h / 1e6:.0f} megapixels, more than the limit of "
            f"{limit / 1e6:.0f} megapixels per frame (set DFF_MAX_PIXELS to raise it)"
        )
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


@contextlib.contextmanager
def captured_stderr() -> Iterator[list[str]]:
    """Redirect file descriptor 2 to a temporary file; the list gets what was written.

    What C libraries (libjpeg, FFmpeg, OpenCV) print while decoding lands here; one
    capture at a time in the process (a lock), so every decoder that captures uses this.
    """
    out: list[str] = []
    with _STDERR_LOCK, tempfile.TemporaryFile() as tmp:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):  # no stderr at all: nothing leaks
            yield out
            return
        os.dup2(tmp.fileno(), 2)
        try:
            yield out
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            out.append(tmp.read().decode("utf-8", "replace"))


def check_frame_sizes(paths: Sequence[Path], limit: int | None = None) -> None:
    """Refuse, from the headers alone, frames above the pixel limit or of another size.

    Parameters
    ----------
    paths : sequence of Path
        The frames; the first one's size is the stack's.
    limit : int, optional
        Largest frame in pixels (default :func:`max_pixels`: 300
        megapixels, or the ``DFF_MAX_PIXELS`` environment variable).

    Raises
    ------
    DffError
        Naming the first frame that is too large or whose size differs from the first
        frame's (both sizes given). Frames whose header cannot be parsed are left to the
        decoder, whose result is checked again.
    """
    limit = max_pixels() if limit is None else limit
    first: tuple[int, int] | None = None
    for path in paths:
        size = image_size(path, limit)
        if size is None:
            continue
        if first is None:
            first, first_path = size, path
        elif size != first:
            raise DffError(
                f"{path}: is {size[0]}x{size[1]} but {first_path.name} is "
                f"{first[0]}x{first[1]}; all frames must have the same size"
            )


def _decode(path: Path, limit: int) -> np.ndarray:
    """Decode one file (no capture): RGB or grey (H,W,C); DffError if unreadable."""
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise DffError(f"{path}: cannot read: {exc.strerror or exc}") from None
    image = cv2.imdecode(raw, _FLAGS) if raw.size else None
    if image is None:
        raise DffError(f"{path}: not a readable image (supported: {', '.join(IMAGE_EXTENSIONS)})")
    if image.shape[0] * image.shape[1] > limit:  # a header Pillow could not parse
        raise DffError(
            f"{path}: is {image.shape[1]}x{image.shape[0]}, more than the limit of "
            f"{limit / 1e6:.0f} megapixels per frame (set DFF_MAX_PIXELS to raise it)"
        )
    return rgb_from_opencv(image)


def rgb_from_opencv(image: np.ndarray) -> np.ndarray:
    """An image as OpenCV decodes it (BGR, BGRA, grey (H,W) or (H,W,1)) in dffcore's
    layout: (H,W,3) RGB or (H,W,1) grey, same dtype, alpha dropped.

    Every decoder that goes through OpenCV (image files, video frames) converts here.
    """
    if image.ndim == 2:
        return image[..., None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected (H,W), (H,W,1), (H,W,3) or (H,W,4), got {image.shape}")
    if image.shape[2] == 1:
        return image
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _corrupt(path: Path, text: str, allow: bool) -> None:
    first = next((s.strip() for s in text.splitlines() if s.strip()), "decoder warning")
    if not allow:
        raise DffError(
            f"{path}: corrupt or truncated image data ({first}); replace the file, or pass "
            "--allow-corrupt to use it anyway"
        )
    logger.warning("%s: corrupt or truncated image data, used anyway: %s", path, first)


def read_images(
    paths: Sequence[str | Path],
    *,
    jobs: int = 1,
    allow_corrupt: bool | None = None,
    limit: int | None = None,
) -> Iterator[np.ndarray]:
    """Decode images in order, ``jobs`` at a time on threads (see :func:`read_image`).

    Parameters
    ----------
    paths : sequence of str or Path
        The image files.
    jobs : int
        Threads decoding at once; at most ``jobs`` images are held ahead of the consumer.
    allow_corrupt : bool, optional
        Use frames the decoder warns about (a logged warning) instead of raising
        (default: ``DFF_ALLOW_CORRUPT``, else False).
    limit : int, optional
        Largest frame in pixels (default :func:`max_pixels`); checked from the header
        before decoding when Pillow can parse it.

    Yields
    ------
    numpy.ndarray
        (H,W,C) RGB or (H,W,1) grey in the file's native dtype, alpha dropped.
    """
    paths = [Path(p) for p in paths]
    limit = max_pixels() if limit is None else limit
    check_frame_sizes(paths, limit)  # headers only: a bomb is refused before decoding
    yield from decode_files(paths, lambda p: _decode(p, limit), jobs, allow_corrupt)


def decode_files(
    paths: Sequence[Path],
    decode: Callable[[Path], np.ndarray],
    jobs: int = 1,
    allow_corrupt: bool | None = None,
) -> Iterator[np.ndarray]:
    """``decode(path)`` of every file in order, ``jobs`` at a time on threads, each batch
    under one capture of what the C decoders print (:func:`captured_stderr`).

    A decoder that prints while decoding a file (libjpeg's "Corrupt JPEG data", LibRaw's
    "Unexpected end of file") means that file is corrupt or truncated: when a batch
    printed something, its files are decoded again one at a time to find which, and each
    is an error naming it unless ``allow_corrupt`` (default: ``DFF_ALLOW_CORRUPT``) makes
    it a logged warning. Every reader of frame files decodes through here (images, RAW).
    """
    allow = allow_corrupt_default() if allow_corrupt is None else allow_corrupt
    jobs = max(1, jobs)
    pool = ThreadPoolExecutor(jobs) if jobs > 1 and len(paths) > 1 else None
    try:
        for start in range(0, len(paths), jobs):
            chunk = paths[start : start + jobs]
            with captured_stderr() as text:
                if pool is None:
                    images = [decode(p) for p in chunk]
                else:  # every decode ends inside the capture, even when one fails
                    futures = [pool.submit(decode, p) for p in chunk]
                    wait(futures)
                    images = [f.result() for f in futures]
            if text and text[0].strip():  # whose? decode again one at a time to find out
                found = False
                for p in chunk:
                    with captured_stderr() as again:
                        decode(p)
                    if again and again[0].strip():
                        found = True
                        _corrupt(p, again[0], allow)
                if not found:  # another thread wrote it, not a decoder: pass it on
                    sys.stderr.write(text[0])
            yield from images
    finally:
        if pool is not None:
            pool.shutdown()


def read_image(
    path: str | Path, *, allow_corrupt: bool | None = None, limit: int | None = None
) -> np.ndarray:
    """Read one image as (H,W,C) RGB or (H,W,1) grey in its native dtype; alpha dropped.

    Parameters
    ----------
    path : str or Path
        The image file.
    allow_corrupt : bool, optional
        Use an image the decoder warns about (corrupt or truncated data) with a logged
        warning instead of raising (default: ``DFF_ALLOW_CORRUPT``, else False).
    limit : int, optional
        Largest image in pixels (default :func:`max_pixels`: 300 megapixels unless the
        ``DFF_MAX_PIXELS`` environment variable says otherwise).

    Returns
    -------
    numpy.ndarray
        The pixels.

    Raises
    ------
    DffError
        One line naming the file: unreadable, not an image, too large, or corrupt.
    """
    return next(read_images([path], allow_corrupt=allow_corrupt, limit=limit))


def load_npy_checked(
    path: str | Path,
    *,
    expected_shape: tuple[int, ...] | None = None,
    max_elements: int | None = None,
) -> np.ndarray:
    """Load a user-supplied ``.npy`` array after checking its header.

    Parameters
    ----------
    path : str or Path
        The ``.npy`` file.
    expected_shape : tuple of int, optional
        The shape the array must have.
    max_elements : int, optional
        The most elements the array may have (default: 4 x :func:`max_pixels`).

    Returns
    -------
    numpy.ndarray
        The array (numeric or boolean dtype).

    Raises
    ------
    DffError
        One line naming the file: not a ``.npy`` file, object dtype, a shape other than
        ``expected_shape``, more than ``max_elements`` elements, or shorter than its header
        says; nothing is allocated for the data before these checks.
    """
    path = Path(path)
    max_elements = 4 * max_pixels() if max_elements is None else max_elements
    fmt = np.lib.format
    try:
        with open(path, "rb") as f:
            version = fmt.read_magic(f)
            if version == (1, 0):
                shape, _fortran, dtype = fmt.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, _fortran, dtype = fmt.read_array_header_2_0(f)
            else:
                raise ValueError(f"unsupported .npy format version {version}")
            offset = f.tell()
        size_on_disk = path.stat().st_size
    except (OSError, ValueError, EOFError, SyntaxError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DffError(f"{path}: cannot read a .npy array ({reason})") from None
    if dtype.hasobject or dtype.kind not in "biuf":
        raise DffError(f"{path}: holds {dtype} values; expected a numeric array")
    if expected_shape is not None and tuple(shape) != tuple(expected_shape):
        raise DffError(f"{path}: has shape {tuple(shape)}; expected {tuple(expected_shape)}")
    count = math.prod(shape)
    if count > max_elements:
        raise DffError(
            f"{path}: declares shape {tuple(shape)} ({count} values), more than the "
            f"{max_elements} allowed (DFF_MAX_PIXELS sets the per-frame pixel limit)"
        )
    if size_on_disk - offset < count * dtype.itemsize:
        raise DffError(
            f"{path}: truncated: shape {tuple(shape)} of {dtype} needs "
            f"{count * dtype.itemsize} bytes of data, the file has {size_on_disk - offset}"
        )
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DffError(f"{path}: cannot read a .npy array ({reason})") from None


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


def write_png_text(path: str | Path, image: np.ndarray, text: dict[str, str]) -> None:
    """Write a grey 8/16-bit PNG atomically with ``tEXt`` chunks ``{keyword: text}``
    (Latin-1; ``iTXt`` for text that is not) right after ``IHDR``."""
    if image.dtype not in (np.uint8, np.uint16) or image.ndim != 2:
        raise DffError(f"a PNG with text chunks must be grey uint8/uint16, got {image.dtype}")
    png = encode_image(image, ".png")  # OpenCV: zlib level 1, run-length matching
    chunks = []
    for keyword, value in text.items():
        key = keyword.encode("latin-1")
        if not 1 <= len(key) <= 79 or b"\x00" in key:
            raise DffError(f"{keyword!r}: a PNG text keyword has 1-79 Latin-1 characters")
        try:
            kind, body = b"tEXt", key + b"\x00" + value.encode("latin-1")
        except UnicodeEncodeError:
            kind, body = b"iTXt", key + b"\x00\x00\x00\x00\x00" + value.encode("utf-8")
        crc = zlib.crc32(kind + body)
        chunks.append(struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc))
    end = 8 + 12 + 13  # signature, then the IHDR chunk (13 bytes of data)
    atomic_write_bytes(path, png[:end] + b"".join(chunks) + png[end:])


def write_npy(path: str | Path, array: np.ndarray) -> None:
    """Write a ``.npy`` file atomically."""
    buf = io.BytesIO()
    np.save(buf, array)
    atomic_write_bytes(path, buf.getvalue())
