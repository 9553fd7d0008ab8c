"""Numbers from a frame's EXIF metadata, read with Pillow (only the header is parsed).

Tags of the Exif IFD (CIPA DC-008-2019, Exif 2.32, section 4.6.5) that dffcore uses:
``SubjectDistance`` (metres; 0 = unknown, 0xFFFFFFFF/1 = infinity) for focus distances and
``FocalLength`` / ``FocalLengthIn35mmFilm`` (millimetres) for a point cloud's intrinsics.
"""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path

logger = logging.getLogger(__name__)

#: Exif-IFD tags read by :func:`read_exif_numbers` (PIL.ExifTags.Base values)
EXIF_TAGS = {
    0x9206: "SubjectDistance",
    0x920A: "FocalLength",
    0xA405: "FocalLengthIn35mmFilm",
}
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
        logger.debug("%s: EXIF not readable, ignored: %s", path, exc)
        return {}
    out: dict[str, float] = {}
    for tag, name in EXIF_TAGS.items():
        value = exif.get(tag)
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
