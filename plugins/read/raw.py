"""Focal stacks of RAW photos (one camera RAW file per frame), decoded by LibRaw."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np

from dffcore.core.components import Reader, ReadRequest
from dffcore.core.data import FocalStack
from dffcore.core.errors import DffError
from dffcore.io.images import decode_files, max_pixels
from dffcore.io.stack import LazyFrames


class Raw(Reader):
    """Camera RAW photos, one file per frame, demosaiced to linear 16-bit RGB by LibRaw.

    Each frame is decoded with rawpy (LibRaw) as
    ``postprocess(gamma=(1, 1), no_auto_bright=True, output_bps=16, use_camera_wb=True)``:
    linear (no tone curve, no automatic brightening, so frames keep their relative
    exposure), the camera's as-shot white balance, LibRaw's default demosaic, and the
    file's orientation applied (LibRaw's ``user_flip`` is left at its default, which
    follows the orientation the file records). Frames are decoded on ``--jobs`` threads
    (LibRaw runs without Python's lock), or one at a time in a ``--memory`` run.

    Focus distances: a ``focus_distances.txt`` sidecar in the folder, else (as for JPEG
    frames, :func:`dffcore.io.stack.read_stack`) the EXIF ``SubjectDistance`` tag
    (0x9206, metres) of the Exif IFD that IFD0's ``ExifIFD`` pointer (0x8769) leads to,
    in TIFF-based RAW files (DNG, NEF, CR2, ARW, PEF, SRW), read with tifffile when
    Pillow cannot open the file; used when every frame has a positive finite one, else
    none are (with a warning when only some have one). No other tag is read: focus
    distances in maker notes (Canon's ``FocusDistanceUpper/Lower``, Nikon's
    ``FocusDistance``, Sony's ``FocusPosition``) and in CR3, RAF, ORF and RW2 files (not
    TIFF-based) are not; give
    ``--focus-distances`` for those.

    Needs the ``raw`` extra (``pip install 'dffcore[raw]'``, which installs rawpy).
    """

    name = "raw"
    suffixes = (".dng", ".cr2", ".cr3", ".nef", ".arw", ".raf", ".orf", ".rw2", ".pef", ".srw")
    container = False
    extra = "raw"
    citation = "LibRaw (https://www.libraw.org) through rawpy (https://github.com/letmaik/rawpy)"

    def read(self, paths: list[Path], request: ReadRequest) -> FocalStack:
        rawpy = _rawpy(paths[0])
        paths = list(paths)[request.frames]
        if not paths:
            return FocalStack(np.empty((0, 1, 1, 3), np.uint16), [])
        limit = max_pixels()

        def decode_one(path: Path) -> np.ndarray:
            return _decode(rawpy, path, limit)

        if request.lazy:

            def one(k: int) -> np.ndarray:
                files = decode_files([paths[k]], decode_one, 1, request.allow_corrupt)
                return next(files)

            first = one(0)  # the shape and dtype; not kept

            def decode(k: int, shape: tuple[int, ...] = first.shape) -> np.ndarray:
                return _like(one(k), paths, k, shape)

            frames: np.ndarray | LazyFrames = LazyFrames(
                (len(paths), *first.shape), first.dtype, decode
            )
            del first
        else:
            frames = _decode_all(decode_one, paths, request)
        # focus distances: a sidecar in the folder, else EXIF, as for JPEG frames
        return FocalStack(frames, paths)


def _rawpy(path: Path) -> ModuleType:
    try:
        import rawpy
    except ImportError:
        raise DffError(
            f"{path}: reading RAW frames needs rawpy: pip install 'dffcore[raw]'"
        ) from None
    return rawpy


def _decode(rawpy: ModuleType, path: Path, limit: int) -> np.ndarray:
    """One RAW file as linear 16-bit (H,W,3) RGB, oriented; DffError naming the file."""
    try:
        with rawpy.imread(str(path)) as raw:
            h, w = raw.sizes.height, raw.sizes.width
            if w * h > limit:
                raise DffError(
                    f"{path}: is {w}x{h} = {w * h / 1e6:.0f} megapixels, more than the limit "
                    f"of {limit / 1e6:.0f} megapixels per frame (set DFF_MAX_PIXELS to raise it)"
                )
            rgb = raw.postprocess(
                gamma=(1, 1), no_auto_bright=True, output_bps=16, use_camera_wb=True
            )
    except rawpy.LibRawError as exc:
        reason = str(exc).strip("b'\" ") or type(exc).__name__
        raise DffError(f"{path}: not a RAW photo LibRaw can decode ({reason})") from None
    except OSError as exc:
        raise DffError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if rgb.ndim == 2:  # a monochrome sensor
        rgb = rgb[..., None]
    return rgb


def _like(img: np.ndarray, paths: list[Path], k: int, shape: tuple[int, ...]) -> np.ndarray:
    """``img`` (frame ``k``) if it has the first frame's ``shape`` (H, W, C)."""
    if img.shape != shape:
        raise DffError(
            f"{paths[k]}: is {img.shape[1]}x{img.shape[0]}x{img.shape[2]} but {paths[0].name} "
            f"is {shape[1]}x{shape[0]}x{shape[2]}; all frames must have the same size, "
            "orientation and channels"
        )
    return img


def _decode_all(
    decode: Callable[[Path], np.ndarray], paths: list[Path], request: ReadRequest
) -> np.ndarray:
    # LibRaw releases the GIL: ``jobs`` frames at a time; what it prints marks a frame corrupt
    images = decode_files(paths, decode, request.jobs, request.allow_corrupt)
    first = next(images)
    frames = np.empty((len(paths), *first.shape), first.dtype)
    frames[0] = first
    for k, img in enumerate(images, 1):
        frames[k] = _like(img, paths, k, first.shape)
        if request.progress is not None:
            request.progress(k + 1, len(paths))
    return frames
