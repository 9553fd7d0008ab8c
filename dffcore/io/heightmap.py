"""Calibrated height maps of microscope z-stacks: ``height.tif``.

A run on a z-stack (focus unit ``"z"``: focal-plane positions along the optical axis in
metres) has a depth map of positions at micrometre scales, which ``depth_metres.png``
(uint16 millimetres) cannot hold. :func:`write_height_tif` writes it as a 32-bit float
TIFF in **micrometres**, NaN where the depth is unknown (confidence 0 or not finite), in
ImageJ's format so that Fiji opens it calibrated:

- the lateral pixel size (``stack.metadata["pixel_size_m"]``) as the ``XResolution`` and
  ``YResolution`` tags in pixels per micrometre (``ResolutionUnit`` none) and ``unit=um``
  in the ImageJ description (ImageJ shows it as µm); without a pixel size the image is
  uncalibrated (pixels);
- ``vunit=um``: the unit of the pixel values (ImageJ's value unit of a 32-bit image);
- ``xorigin``/``yorigin``: when the aligner cropped, the full frame's pixel ``(0, 0)`` is
  the origin, as in the orthographic point cloud (:mod:`dffcore.io.pointcloud`).

Read it back with ``tifffile.TiffFile(path)``: ``pages[0].resolution`` and
``imagej_metadata``.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from dffcore.io.images import atomic_write_bytes

HEIGHT_TIF = "height.tif"
HEIGHT_TIF_MEANING = (
    "float32 micrometres (focal-plane position along the optical axis), NaN = unknown "
    "(confidence 0 or no finite depth); ImageJ/Fiji scale = the lateral pixel size"
)


def height_um(depth_m: np.ndarray, confidence: np.ndarray | None = None) -> np.ndarray:
    """Depth in metres -> float32 micrometres, NaN where the depth is not finite or
    ``confidence`` is 0."""
    um = np.asarray(depth_m, np.float64) * 1e6
    unknown = ~np.isfinite(um)
    if confidence is not None:
        unknown |= np.asarray(confidence) <= 0
    return np.where(unknown, np.nan, um).astype(np.float32)


def height_tif_bytes(
    depth_m: np.ndarray,
    confidence: np.ndarray | None = None,
    *,
    pixel_size_m: tuple[float, float] | None = None,
    origin_px: tuple[int, int] = (0, 0),
) -> bytes:
    """The bytes of ``height.tif`` (see the module docstring).

    Parameters
    ----------
    depth_m : ndarray
        (H, W) depth (focal-plane positions) in metres.
    confidence : ndarray, optional
        (H, W); pixels with confidence 0 are NaN.
    pixel_size_m : tuple of float, optional
        Lateral pixel size ``(x, y)`` in metres; None leaves the image uncalibrated.
    origin_px : tuple of int
        ``(x, y)`` of the map's pixel ``(0, 0)`` in the full frame (the aligner's crop).

    Returns
    -------
    bytes
        An ImageJ TIFF holding one float32 image.
    """
    import tifffile

    image = height_um(depth_m, confidence)
    metadata: dict[str, Any] = {"axes": "YX", "vunit": "um"}
    kwargs: dict[str, Any] = {}
    if pixel_size_m is not None:
        px_um, py_um = (float(v) * 1e6 for v in pixel_size_m)
        kwargs["resolution"] = (1.0 / px_um, 1.0 / py_um)  # pixels per micrometre
        metadata["unit"] = "um"
    if origin_px != (0, 0):  # ImageJ: calibrated x = (column - xorigin) * pixel width
        metadata["xorigin"] = -int(origin_px[0])
        metadata["yorigin"] = -int(origin_px[1])
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, image, imagej=True, metadata=metadata, **kwargs)
    return buffer.getvalue()


def write_height_tif(
    path: str | Path,
    depth_m: np.ndarray,
    confidence: np.ndarray | None = None,
    *,
    pixel_size_m: tuple[float, float] | None = None,
    origin_px: tuple[int, int] = (0, 0),
) -> None:
    """Write ``height.tif`` atomically (:func:`height_tif_bytes`)."""
    data = height_tif_bytes(depth_m, confidence, pixel_size_m=pixel_size_m, origin_px=origin_px)
    atomic_write_bytes(path, data)
