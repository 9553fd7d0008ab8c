"""Base classes of the five kinds of pipeline component (:data:`KINDS`).

A component is a small class with a ``name``, a ``kind`` (the YAML stage key it
serves), a pydantic ``Params`` model (defaults and one-line docs per field, unknown
keys rejected) and one call method:

=========== ================================================================
kind        what it receives and returns
=========== ================================================================
align       ``__call__(stack: FocalStack, ctx) -> AlignedStack`` whose
            ``alignment`` describes the warp (transforms, crop,
            interpolation, exposure): the engine replays it on full-size
            frames under a memory budget. Subclass
            :class:`dffcore.align.pairwise.PairwiseAligner` to estimate pairs
focus       ``measure(frame) -> (H,W) float32`` per aligned frame (the base
            class loops over frames); override ``__call__(aligned, ctx) ->
            FocusVolume`` for operators that need neighbouring slices
aggregate   ``__call__(volume: FocusVolume, aligned: AlignedStack, ctx) ->
            DepthResult``
regularize  ``__call__(result: DepthResult, volume: FocusVolume,
            aligned: AlignedStack, ctx) -> DepthResult``
composite   ``__call__(result: DepthResult, volume: FocusVolume,
            aligned: AlignedStack, ctx) -> (H,W,C) all-in-focus image`` in the
            stack's dtype, from the final depth (optional stage)
=========== ================================================================

A ``read`` component (:class:`Reader`) is no stage: it reads a focal stack from a file
format (one file holding every frame, such as a z-stack TIFF or a video, or one frame
per file, such as RAW photos), chosen by the file's name.

Register components from a plugin module with the ``dffcore_register`` hook (see
:mod:`dffcore.core.hookspec`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from dffcore.core.data import AlignedStack, DepthResult, FocalStack, FocusVolume
from dffcore.core.kinds import COMPONENT_KINDS, KIND_TITLES, KINDS

__all__ = [
    "BASES",
    "COMPONENT_KINDS",
    "KINDS",
    "KIND_TITLES",
    "Aggregator",
    "Aligner",
    "Component",
    "Compositor",
    "Context",
    "FocusMeasure",
    "Params",
    "ReadRequest",
    "Reader",
    "Reference",
    "Regularizer",
    "resolve_reference",
]

logger = logging.getLogger(__name__)


class Params(BaseModel):
    """Base of every component's parameter model: unknown keys are errors, and so are
    infinite and NaN floats (a field that means to allow them says
    ``Field(allow_inf_nan=True)``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, defer_build=True)


#: The frame whose pixel grid the outputs use: a name or a 0-based index.
Reference = Literal["first", "middle", "last"] | Annotated[int, Field(ge=0)]


def resolve_reference(reference: str | int, n: int) -> int:
    """Turn a :data:`Reference` into a frame index of a stack of ``n`` frames."""
    if reference == "first":
        return 0
    if reference == "middle":
        return (n - 1) // 2
    if reference == "last":
        return n - 1
    if not isinstance(reference, int) or not 0 <= reference < n:
        from dffcore.core.errors import DffError

        raise DffError(f"reference frame {reference} does not exist: the stack has {n} frames")
    return reference


@dataclass
class Context:
    """What the runner hands to every call besides the data.

    ``progress(done, total)`` reports progress within the stage; ``jobs`` is the
    number of worker threads a stage may use.
    """

    progress: Callable[[int, int], None] = lambda done, total: None
    jobs: int = field(default_factory=lambda: os.cpu_count() or 1)


class Component:
    """Common part of all components. Subclasses set the class attributes."""

    name: ClassVar[str]
    kind: ClassVar[str]
    Params: ClassVar[type[Params]] = Params
    #: the paper or source the component implements
    citation: ClassVar[str] = ""
    #: licence notes of third-party code the component runs (shown by `dff plugins`)
    licence: ClassVar[str] = ""

    def __init__(self, params: Params | dict[str, Any] | None = None) -> None:
        if params is None:
            params = self.Params()
        elif isinstance(params, dict):
            params = self.Params(**params)
        self.params = params

    def context(self) -> int | None:
        """Pixels of image this component needs around a region to compute it exactly.

        Bounded-memory runs (``--memory``) process the image in bands with this much
        overlap. ``None`` (the default) means the result at a pixel may depend on the
        whole image (a global smoother, an MRF): such stages get a wide overlap and their
        banded result is close to, not equal to, the whole-image one.
        """
        return None

    def notices(self) -> list[str]:
        """Licence notices of third-party code this configured component runs, shown once
        per run when it first runs and recorded in ``run.json`` (default: none)."""
        return []

    @classmethod
    def summary(cls) -> str:
        """First paragraph of the class docstring, on one line."""
        text = (cls.__doc__ or "").strip().split("\n\n")[0]
        return " ".join(line.strip() for line in text.splitlines())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.params!r})"


class Aligner(Component):
    kind: ClassVar[str] = "align"

    def __call__(self, stack: FocalStack, ctx: Context) -> AlignedStack:
        raise NotImplementedError


class FocusMeasure(Component):
    kind: ClassVar[str] = "focus"

    def measure(self, frame: np.ndarray) -> np.ndarray:
        """Sharpness of one aligned frame (H,W[,C], native dtype) as (H,W) float32."""
        raise NotImplementedError

    def __call__(self, aligned: AlignedStack, ctx: Context) -> FocusVolume:
        """Measure every frame, ``ctx.jobs`` frames at a time (OpenCV releases the GIL)."""
        n, h, w = aligned.frames.shape[:3]
        data = np.empty((n, h, w), np.float32)

        def one(i: int) -> None:
            data[i] = self.measure(aligned.frames[i])

        with ThreadPoolExecutor(max(1, min(ctx.jobs, n))) as pool:
            for done, _ in enumerate(pool.map(one, range(n)), 1):
                ctx.progress(done, n)
        return FocusVolume(data, aligned.valid)


class Aggregator(Component):
    kind: ClassVar[str] = "aggregate"

    def __call__(self, volume: FocusVolume, aligned: AlignedStack, ctx: Context) -> DepthResult:
        raise NotImplementedError


class Regularizer(Component):
    kind: ClassVar[str] = "regularize"

    def __call__(
        self, result: DepthResult, volume: FocusVolume, aligned: AlignedStack, ctx: Context
    ) -> DepthResult:
        raise NotImplementedError


class Compositor(Component):
    kind: ClassVar[str] = "composite"

    def __call__(
        self, result: DepthResult, volume: FocusVolume, aligned: AlignedStack, ctx: Context
    ) -> np.ndarray:
        raise NotImplementedError


@dataclass
class ReadRequest:
    """What :func:`dffcore.io.stack.read_stack` asks a :class:`Reader` for."""

    #: the frames wanted, in reading order (``--frames START:STOP:STEP``)
    frames: slice = field(default_factory=lambda: slice(None))
    #: decode each frame only when it is indexed (``--memory`` runs): ``frames`` is then
    #: a :class:`dffcore.io.stack.LazyFrames`-like object
    lazy: bool = False
    #: threads that may decode
    jobs: int = 1
    #: use frames with corrupt data (a warning) instead of an error; None: the default
    allow_corrupt: bool | None = None
    #: progress(done, total) of the frames decoded
    progress: Callable[[int, int], None] | None = None


class Reader(Component):
    """Reads focal stacks of one file format; chosen by a file's name (:attr:`suffixes`).

    ``container`` readers take one file that holds the whole stack (a multi-page TIFF, a
    video); the others decode one frame per file and take every file of a folder or glob
    (RAW photos). :meth:`read` returns the :class:`FocalStack` with the frames the request
    selects, and what the file says about them: focus positions (``focus_distances`` and
    ``focus_unit``) and ``metadata`` such as ``pixel_size_m`` and ``source_frames`` (the
    number of frames the file holds, before the selection: a ``--focus-distances``
    sidecar then lists them all). A lazy request gets :class:`dffcore.io.stack.LazyFrames`
    whose decode function may be called from two threads at once (the engine decodes the
    next frame while it warps one): guard a shared file handle with a lock. Errors about
    the file are :class:`dffcore.DffError` naming it.
    """

    kind: ClassVar[str] = "read"
    #: lower-case endings of the file names it reads, e.g. ``(".ome.tif", ".tif")``
    suffixes: ClassVar[tuple[str, ...]] = ()
    #: True: one file is a whole stack; False: one file per frame
    container: ClassVar[bool] = True
    #: the pip extra that installs the library it needs, e.g. ``"raw"`` (empty: none)
    extra: ClassVar[str] = ""

    def read(self, paths: list[Path], request: ReadRequest) -> FocalStack:
        raise NotImplementedError


BASES: dict[str, type[Component]] = {
    "align": Aligner,
    "focus": FocusMeasure,
    "aggregate": Aggregator,
    "regularize": Regularizer,
    "composite": Compositor,
    "read": Reader,
}
