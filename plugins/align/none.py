"""The identity aligner."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from dffcore.align import normalise_exposure
from dffcore.components import Aligner, Context, Params
from dffcore.data import AlignedStack, FocalStack


class NoAlignParams(Params):
    photometric: Literal["none", "gain", "gain-offset"] = Field(
        "none", description="fit each frame's exposure to the first frame"
    )


class NoAlign(Aligner):
    """Frames are already registered: pass them through unchanged."""

    name = "none"
    Params = NoAlignParams

    def __call__(self, stack: FocalStack, ctx: Context) -> AlignedStack:
        diagnostics: list[dict] = [{} for _ in range(stack.n)]
        frames = stack.frames
        if self.params.photometric != "none":
            frames = normalise_exposure(
                frames,
                0,
                None,
                diagnostics=diagnostics,
                offset=self.params.photometric == "gain-offset",
            )
        return AlignedStack(frames, 0, None, [None] * stack.n, diagnostics, stack)
