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

#: what a stack's focus distances are: distances from the camera in metres, the same in
#: diopters, or ``"z"``: positions of the focal plane along the optical axis in metres
#: (a microscope's z-stack: depth is the z of each pixel's in-focus plane)
FocusUnit = Literal["m", "diopter", "z"]


def _check_frames(frames: np.ndarray) -> None:
    if frames.ndim != 4:
        raise ValueError(f"frames: expected (N,H,W,C), got {frames.ndim} dimensions")
    if frames.shape[3] not in (1, 3):
        raise ValueError(f"frames: expected 1 or 3 channels, got {frames.shape[3]}")


@dataclass
class FocalStack:
    """Frames as read, in reading order (natural sort of file names unless reversed).

    ``frames`` is ``(N,H,W,C)`` with C = 1 (grey) or 3 (RGB), native dtype.
    ``focus_distances`` (N,) are in ``focus_unit`` when known. ``metadata`` holds what
    the reader found out about the source (``pixel_size_m``: lateral (x, y) size of a
    pixel in metres, ``reader``: the reader that read a stack file, ...).
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


#: A transform of frame ``i``: a 3x3 homography, an ``(H,W,2)`` map, or None (identity);
#: see :mod:`dffcore.ops.warp`
Transform = np.ndarray | None
Interpolation = Literal["cubic", "linear", "lanczos"]
Photometric = Literal["none", "gain", "gain-offset"]


@dataclass
class Alignment:
    """What an aligner found, and everything needed to warp a frame with it.

    The run engine applies an alignment itself (:func:`dffcore.align.apply.warp_frame`),
    to the frames in memory or to each frame as it is streamed from disk in a bounded-memory
    run, where the alignment is estimated at reduced resolution and rescaled.

    ``transforms[i]`` maps reference pixel coordinates to frame ``i``'s coordinates on a
    grid of ``shape`` (see :mod:`dffcore.ops.warp`); ``crop`` asks for the outputs to be
    cropped to the region valid in every frame; ``interpolation`` is the resampling;
    ``photometric`` the exposure model fitted after warping, and ``exposure[i]`` the
    fitted ``(gain, offset)`` of frame ``i`` (None until fitted, or for the reference).
    ``diagnostics[i]`` holds per-frame facts (matches, residual, failure, fallback).
    """

    reference: int
    transforms: list[Transform]
    shape: tuple[int, int]
    diagnostics: list[dict[str, Any]] = field(default_factory=list)
    crop: bool = False
    interpolation: Interpolation = "cubic"
    photometric: Photometric = "none"
    exposure: list[tuple[float, float] | None] | None = None
    #: one line on what the aligner found (the command line prints it)
    summary: str = ""

    def __post_init__(self) -> None:
        if not self.diagnostics:
            self.diagnostics = [{} for _ in self.transforms]

    @property
    def n(self) -> int:
        return len(self.transforms)

    @property
    def moves(self) -> bool:
        """True when some frame is not the identity."""
        return any(t is not None for t in self.transforms)

    def frame_records(self) -> list[dict[str, Any]]:
        """Per frame: its diagnostics, its 3x3 transform and fitted exposure (``run.json``)."""
        out = []
        for i, diag in enumerate(self.diagnostics):
            rec = dict(diag)
            t = self.transforms[i]
            if t is not None and np.ndim(t) == 2:
                rec["transform"] = np.round(np.asarray(t, np.float64), 6).tolist()
            gain = self.exposure[i] if self.exposure is not None else None
            if gain is not None:
                rec["exposure"] = {"gain": round(gain[0], 5), "offset": round(gain[1], 5)}
            out.append(rec)
        return out


@dataclass
class AlignedStack:
    """Frames warped into the reference frame's pixel grid (or a band of its rows).

    ``valid[i]`` is False where frame ``i`` has no data (it came from outside the
    frame after warping); ``valid is None`` means every pixel of every frame is valid.
    ``alignment`` is how the frames were made from the stack (None for frames built by
    hand); ``crop`` the ``(x, y, w, h)`` of the reference grid they were cropped to.
    """

    frames: np.ndarray
    reference: int
    valid: np.ndarray | None = None
    alignment: Alignment | None = None
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

    @property
    def transforms(self) -> list[Transform]:
        return [] if self.alignment is None else self.alignment.transforms

    @property
    def diagnostics(self) -> list[dict[str, Any]]:
        return [] if self.alignment is None else self.alignment.diagnostics

    def rows(self, a: int, b: int) -> AlignedStack:
        """Rows ``a:b`` of every frame (views, no copy)."""
        valid = None if self.valid is None else self.valid[:, a:b]
        return AlignedStack(self.frames[:, a:b], self.reference, valid, self.alignment)


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
