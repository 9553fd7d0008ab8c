"""Image size from a JPEG's or PNG's header, without an image library.

:func:`dffcore.io.images.image_size` refuses frames above the pixel limit before they are
decoded; for the formats nearly every stack comes in it reads the few header bytes
itself (:func:`header_size`) instead of importing Pillow (about 25 ms a process) and
letting it parse the file. Any other format, and any header this parser does not
understand, is left to Pillow.

- PNG (ISO/IEC 15948, section 11.2.2): the ``IHDR`` chunk that must follow the
  signature holds width and height.
- JPEG (ITU-T T.81, annex B): the markers are walked up to the first scan (``SOS``); a
  frame header (``SOF0``-``SOF15`` except ``DHT``, ``JPG`` and ``DAC``) holds height and
  width; the orientation (EXIF tag 0x0112) comes from IFD0 of the first ``APP1`` segment
  that starts with ``Exif``, as the decoders apply it.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: JPEG frame headers: SOF0-SOF15 without DHT (C4), JPG (C8) and DAC (CC)
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
#: markers without a length: TEM, RST0-7, SOI
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD9)})
#: the most markers walked before giving up (a JPEG has a few dozen at most)
_MAX_MARKERS = 4096
_ORIENTATION = 0x0112


def header_size(path: str | Path) -> tuple[int, int, int | None] | None:
    """``(width, height, orientation)`` of a PNG or JPEG file from its header.

    ``orientation`` is the EXIF orientation (1-8) of a JPEG, None when it has none (and
    for PNG). For a JPEG with more than one frame header (which the decoder refuses),
    the largest is given, so the pixel limit is never checked against too small a
    size. None for other formats, a truncated or malformed header, or an unreadable
    file: the caller then asks a full parser.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(24)
            if head.startswith(PNG_SIGNATURE):
                if len(head) < 24 or head[12:16] != b"IHDR":
                    return None
                w, h = struct.unpack(">II", head[16:24])
                return w, h, None
            if head.startswith(b"\xff\xd8"):
                f.seek(2)
                return _jpeg(f)
    except OSError:
        return None
    return None


def _jpeg(f: BinaryIO) -> tuple[int, int, int | None] | None:
    size: tuple[int, int] | None = None
    orientation: int | None = None
    exif_seen = False
    for _ in range(_MAX_MARKERS):
        byte = f.read(1)
        if byte != b"\xff":
            return None  # not at a marker: malformed
        marker = b"\xff"
        while marker == b"\xff":  # fill bytes
            marker = f.read(1)
        if not marker:
            return None
        code = marker[0]
        if code in _STANDALONE:
            continue
        if code in (0xD9, 0xDA):  # EOI, SOS: the header is over
            return None if size is None else (*size, orientation)
        raw = f.read(2)
        if len(raw) < 2 or (length := struct.unpack(">H", raw)[0]) < 2:
            return None
        if code in _SOF:
            body = f.read(5)
            if len(body) < 5 or length < 7:
                return None
            h, w = struct.unpack(">HH", body[1:5])
            if size is None or w * h > size[0] * size[1]:
                size = (w, h)
            f.seek(length - 7, 1)
        elif code == 0xE1 and not exif_seen:
            body = f.read(length - 2)
            if body.startswith(b"Exif\x00\x00"):
                exif_seen = True
                orientation = _exif_orientation(body[6:])
        else:
            f.seek(length - 2, 1)
    return None


def _exif_orientation(tiff: bytes) -> int | None:
    """Tag 0x0112 of IFD0 of a TIFF structure (EXIF), or None."""
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None or len(tiff) < 8:
        return None
    magic, ifd = struct.unpack(order + "HI", tiff[2:8])
    if magic != 42 or ifd + 2 > len(tiff):
        return None
    (count,) = struct.unpack(order + "H", tiff[ifd : ifd + 2])
    for i in range(count):
        entry = tiff[ifd + 2 + 12 * i : ifd + 14 + 12 * i]
        if len(entry) < 12:
            return None
        tag, kind = struct.unpack(order + "HH", entry[:4])
        if tag != _ORIENTATION:
            continue
        if kind == 3:  # SHORT
            return struct.unpack(order + "H", entry[8:10])[0]
        if kind == 4:  # LONG
            return struct.unpack(order + "I", entry[8:12])[0]
        return None
    return None
