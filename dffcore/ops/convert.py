"""The one place that decides dtype conversions of images.

Frames keep their native dtype (uint8, uint16 or float) in :class:`FocalStack`;
stages that compute on them call these helpers. Integer images are scaled to
[0, 1]; float16 is promoted to float32; other floats keep their values.
"""

from __future__ import annotations

import cv2
import numpy as np


def to_float32(image: np.ndarray) -> np.ndarray:
    """Return ``image`` as float32, integers scaled to [0, 1] by their dtype's maximum."""
    if image.dtype == np.float32:
        return image
    if np.issubdtype(image.dtype, np.integer):
        return image.astype(np.float32) * np.float32(1.0 / np.iinfo(image.dtype).max)
    return image.astype(np.float32)


def to_grey(image: np.ndarray) -> np.ndarray:
    """Return a float32 luminance image (H, W) of an RGB or grey frame (ITU-R BT.601)."""
    image = to_float32(image)
    if image.ndim == 2:
        return image
    if image.shape[2] == 1:
        return image[..., 0]
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Return an 8-bit version of ``image`` (for feature detectors and previews)."""
    if image.dtype == np.uint8:
        return image
    if np.issubdtype(image.dtype, np.integer):
        scale = 255.0 / np.iinfo(image.dtype).max
        return np.clip(image.astype(np.float32) * scale + 0.5, 0, 255).astype(np.uint8)
    return np.clip(image.astype(np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def to_storable(image: np.ndarray) -> np.ndarray:
    """An image as a PNG can hold it: 8- and 16-bit as they are, floats in [0, 1] as
    16-bit."""
    if image.dtype in (np.uint8, np.uint16):
        return image
    return like(to_float32(image), np.dtype(np.uint16))


def like(image: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Convert a float32 image in [0, 1] back to ``dtype`` (the stack's native dtype)."""
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        top = np.iinfo(dtype).max
        return np.clip(image * top + 0.5, 0, top).astype(dtype)
    return image.astype(dtype)


#: dtypes frames keep as they are; float16 and float64 become float32
FRAME_DTYPES = (np.uint8, np.uint16, np.float32)


def frame_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype frames of ``dtype`` are held in: uint8, uint16 and float32 as they are,
    other floats as float32; a ``ValueError`` names the valid ones for anything else."""
    dtype = np.dtype(dtype)
    if dtype in FRAME_DTYPES:
        return dtype
    if np.issubdtype(dtype, np.floating):
        return np.dtype(np.float32)
    raise ValueError(
        f"frames of dtype {dtype} are not supported: give uint8, uint16 or float (floats in [0, 1])"
    )
