"""Numbers from a frame's EXIF metadata, read with Pillow (only the header is parsed).

Tags of the Exif IFD (CIPA DC-008-2019, Exif 2.32, section 4.6.5) that dffcore uses:
``SubjectDistance`` (metres; 0 = unknown, 0xFFFFFFFF/1 = infinity) for focus distances and
``FocalLength`` / ``FocalLengthIn35mmFilm`` (millimetres) for a point cloud's intrinsics.

A TIFF-based file Pillow cannot open (most RAW photos: DNG, NEF, CR2, ARW, PEF) has its
Exif IFD (pointer tag 34665 in IFD0) read with tifffile instead.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)

#: Exif-IFD tags read by :func:`read_exif_numbers` (PIL.ExifTags.Base values)
EXIF_TAGS = {
    0x9206: "SubjectDistance",
    0x920A: "FocalLength",
    0xA405: "FocalLengthIn35mmFilm",
}
_RATIONAL_TAGS = (0x9206, 0x920A)
_EXIF_INFINITY = 0xFFFFFFFF  # a RATIONAL numerator that means "infinity"
#: a JPEG's APP1 segment (EXIF) follows SOI and cannot exceed 64 KB
JPEG_EXIF_BYTES = 65536


def read_exif_numbers(path: str | Path) -> dict[str, float]:
    """The numeric Exif-IFD tags of :data:`EXIF_TAGS` that an image file has.

    Values are returned as stored (``SubjectDistance`` 0 means unknown, ``inf``
    infinity); a value that is not a finite number (a zero denominator) is left out.
    Files without EXIF, other formats and malformed metadata give ``{}``: a problem is
    logged at debug level and never raises.
    """
    if not _may_have_exif(path):
        return {}
    from PIL import ExifTags, Image, UnidentifiedImageError  # only when EXIF is read

    try:
        with warnings.catch_warnings(record=True) as caught, Image.open(path) as image:
            warnings.simplefilter("always")
            exif = image.getexif().get_ifd(ExifTags.IFD.Exif)
        for w in caught:  # Pillow warns about corrupt EXIF instead of raising
            logger.debug("%s: %s", path, w.message)
    except (
        OSError,
        ValueError,
        SyntaxError,
        UnidentifiedImageError,
        Image.DecompressionBombError,
    ) as exc:
        if _is_tiff(path):  # a RAW photo Pillow has no pixel mode for
            return _tiff_exif_numbers(path)
        logger.debug("%s: EXIF not readable, ignored: %s", path, exc)
        return {}
    return _numbers(exif.get)


def _numbers(get: Callable[[int], object]) -> dict[str, float]:
    """The values of :data:`EXIF_TAGS` that ``get(tag)`` gives, as numbers (NaN left out)."""
    out: dict[str, float] = {}
    for tag, name in EXIF_TAGS.items():
        value = get(tag)
        if isinstance(value, tuple):  # a list of values: the first one counts
            value = value[0] if value else None
        numerator = getattr(value, "numerator", None)
        try:
            number = math.inf if numerator == _EXIF_INFINITY else float(value)
        except (TypeError, ValueError, ZeroDivisionError):
            continue
        if not math.isnan(number):
            out[name] = number
    return out


class _Rational:
    """A TIFF RATIONAL as tifffile gives it, ``(numerator, denominator)``."""

    def __init__(self, numerator: int, denominator: int) -> None:
        self.numerator, self.denominator = numerator, denominator

    def __float__(self) -> float:
        return self.numerator / self.denominator


def _is_tiff(path: str | Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return False
    return head in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def _tiff_exif_numbers(path: str | Path) -> dict[str, float]:
    """:data:`EXIF_TAGS` from the Exif IFD of a TIFF-based file, read with tifffile (the
    tags of IFD0 and the Exif IFD only; no pixels, no maker notes)."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            tag = tif.pages.first.tags.get(34665)  # ExifTag: IFD0's pointer to the Exif IFD
            exif = tag.value if tag is not None else {}
    except Exception as exc:  # tifffile raises many types on malformed files
        logger.debug("%s: EXIF not readable with tifffile, ignored: %s", path, exc)
        return {}
    if not isinstance(exif, dict):
        return {}

    def get(code: int) -> object:
        value = exif.get(EXIF_TAGS[code])
        if code in _RATIONAL_TAGS and isinstance(value, tuple) and len(value) == 2:
            return _Rational(*value)  # tifffile: (numerator, denominator)
        return value

    return _numbers(get)


def _may_have_exif(path: str | Path) -> bool:
    """False for a JPEG without an ``Exif`` APP1 segment in its first 64 KB (where the
    segment must be): such frames, most of what dffcore reads, need no EXIF parser."""
    try:
        with open(path, "rb") as f:
            head = f.read(JPEG_EXIF_BYTES)
    except OSError:
        return False
    return not head.startswith(b"\xff\xd8") or b"Exif\x00\x00" in head


def exif_focus_distance(path: str | Path) -> float | None:
    """EXIF ``SubjectDistance`` in metres, or None unless positive and finite.

    0 (unknown) and a missing tag give None silently; infinity or a negative value give
    None with a logged warning naming the file (the frame's distance is unusable).
    """
    value = read_exif_numbers(path).get("SubjectDistance")
    if value is None or value == 0:
        return None
    if not 0 < value < math.inf:
        logger.warning(
            "%s: EXIF SubjectDistance %s m is not a usable focus distance, ignored", path, value
        )
        return None
    return value
