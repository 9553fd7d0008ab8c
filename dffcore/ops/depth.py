"""Slice index to metric depth."""

from __future__ import annotations

import numpy as np

from dffcore.core.data import FocusUnit


def index_to_depth(index: np.ndarray, distances: np.ndarray, unit: FocusUnit) -> np.ndarray:
    """Fractional slice index -> depth in metres, interpolating linearly in diopters.

    ``distances`` are the frames' focus distances in ``unit`` (``m`` or ``diopter``);
    0 diopters (focus at infinity) gives an infinite depth. Defocus blur is linear in
    diopters, so a fractional index between two slices is a fraction of their diopter
    step, not of their distance in metres.

    ``unit == "z"``: ``distances`` are focal-plane positions along the optical axis in
    metres (a microscope's z-stack); the depth is the position, interpolated linearly.
    """
    if unit == "z":
        return np.interp(index, np.arange(len(distances)), distances).astype(np.float32)
    diopters = 1.0 / np.asarray(distances, np.float64) if unit == "m" else np.asarray(distances)
    d = np.interp(index, np.arange(len(diopters)), diopters)
    with np.errstate(divide="ignore"):
        return np.where(d > 0, 1.0 / np.maximum(d, 1e-300), np.inf).astype(np.float32)
