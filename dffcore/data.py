"""The objects that flow through a pipeline.

``FocalStack --align--> AlignedStack --focus--> FocusVolume --aggregate--> DepthResult``
and regularisers map a ``DepthResult`` to a new one. Image arrays are RGB (or grey),
in the stack's native dtype; computed maps are float32.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

FocusUnit = Literal["m", "diopter"]


def _check_frames(frames: np.ndarray) -> None:
    if frames.ndim != 4:
        raise ValueError(f"frames: expected (N,H,W,C), got {frames.ndim} dimensions")
    if frames.shape[3] not in (1, 3):
        raise ValueError(f"frames: expected 1 or 3 channels, got {frames.shape[3]}")


@dataclass
class FocalStack:
    """Frames as read, in reading order (natural sort of file names unless reversed).

    ``frames`` is ``(N,H,W,C)`` with C = 1 (grey) or 3 (RGB), native dtype.
    ``focus_distances`` (N,) are in ``focus_unit`` when known.
    """

    frames: np.ndarray
    paths: list[Path] = field(default_factory=list)
    focus_distances: np.ndarray | None = None
    focus_unit: FocusUnit | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_frames(self.frames)

    @property
    def n(self) -> int:
        return int(self.frames.shape[0])

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) of every frame."""
        return int(self.frames.shape[1]), int(self.frames.shape[2])


@dataclass
class AlignedStack:
    """Frames warped into the reference frame's pixel grid.

    ``valid[i]`` is False where frame ``i`` has no data (it came from outside the
    frame after warping); ``valid is None`` means every pixel of every frame is valid.
    ``transforms[i]`` maps reference pixel coordinates to frame ``i`` (3x3), or is a
    flow field, or ``None`` for the identity. ``diagnostics[i]`` holds per-frame facts
    (inliers, residual, failure reason).
    """

    frames: np.ndarray
    reference: int
    valid: np.ndarray | None = None
    transforms: list[Any] = field(default_factory=list)
    diagnostics: list[dict[str, Any]] = field(default_factory=list)
    source: FocalStack | None = None
    #: (x, y, w, h) of the reference grid the frames were cropped to, if cropped
    crop: tuple[int, int, int, int] | None = None

    def __post_init__(self) -> None:
        _check_frames(self.frames)
        if self.valid is not None and self.valid.shape != self.frames.shape[:3]:
            raise ValueError(
                f"valid: expected shape {self.frames.shape[:3]}, got {self.valid.shape}"
            )

    @property
    def n(self) -> int:
        return int(self.frames.shape[0])

    def valid_count(self) -> np.ndarray | None:
        """(H, W) number of frames valid at each pixel, or None when all are."""
        if self.valid is None:
            return None
        return self.valid.sum(axis=0, dtype=np.int32)


@dataclass
class FocusVolume:
    """``data (N,H,W) float32`` sharpness, higher = sharper.

    Pixels where ``valid`` is False hold no information: consumers must mask them
    (e.g. with -inf before an argmax) instead of trusting their value.
    """

    data: np.ndarray
    valid: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.data.ndim != 3:
            raise ValueError(f"focus volume: expected (N,H,W), got {self.data.ndim} dimensions")
        if self.data.dtype != np.float32:
            raise ValueError(f"focus volume: expected float32, got {self.data.dtype}")

    @property
    def n(self) -> int:
        return int(self.data.shape[0])


@dataclass
class DepthResult:
    """The answer: a fractional slice index per pixel, its confidence, the composite.

    ``index`` (H,W) float32: 0 = first frame as read; ``confidence`` (H,W) float32 in
    [0, 1] (0 = unreliable); ``all_in_focus`` (H,W,C) in the stack's dtype (an
    aggregator may leave it None: the runner then composites it); ``depth`` (H,W) float32 in
    metres when focus distances are known.
    """

    index: np.ndarray
    confidence: np.ndarray
    all_in_focus: np.ndarray | None = None
    depth: np.ndarray | None = None
    diagnostics: dict[str, Any] = field(default_factory=dict)

    def replace(self, **changes: Any) -> DepthResult:
        """A copy with some fields replaced (arrays are shared, not copied)."""
        return replace(self, **changes)
