"""The one place that reads and writes image files (OpenCV's BGR is converted here, once).

Outputs are written atomically: to a temporary file in the destination folder, then
renamed over the final name, so a crash never leaves a half-written file.
"""

from __future__ import annotations

import io
import os
import tempfile
import zlib
from pathlib import Path

import cv2
import numpy as np

from dffcore.core.errors import DffError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")
_FLAGS = cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR  # keeps 16 bit; honours EXIF orientation


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
    """Write a grey 8/16-bit PNG atomically with ``tEXt`` chunks ``{keyword: text}``."""
    from PIL import Image, PngImagePlugin  # Pillow only when a PNG carries text

    if image.dtype not in (np.uint8, np.uint16) or image.ndim != 2:
        raise DffError(f"a PNG with text chunks must be grey uint8/uint16, got {image.dtype}")
    info = PngImagePlugin.PngInfo()
    for keyword, value in text.items():
        info.add_text(keyword, value)
    buf = io.BytesIO()
    # zlib level 1 with run-length matching, as OpenCV writes PNGs: 5x faster than
    # Pillow's default on 16-bit depth maps, and no larger
    Image.fromarray(image).save(
        buf, format="PNG", pnginfo=info, compress_level=1, compress_type=zlib.Z_RLE
    )
    atomic_write_bytes(path, buf.getvalue())


def write_npy(path: str | Path, array: np.ndarray) -> None:
    """Write a ``.npy`` file atomically."""
    buf = io.BytesIO()
    np.save(buf, array)
    atomic_write_bytes(path, buf.getvalue())
