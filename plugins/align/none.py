"""The identity aligner."""

from __future__ import annotations

from pydantic import Field

from dffcore.align.apply import apply_alignment
from dffcore.core.components import Aligner, Context, Params
from dffcore.core.data import AlignedStack, Alignment, FocalStack, Photometric


class NoAlignParams(Params):
    photometric: Photometric = Field(
        "none", description="fit each frame's exposure to the first frame"
    )


class NoAlign(Aligner):
    """Frames are already registered: pass them through unchanged."""

    name = "none"
    Params = NoAlignParams

    def __call__(self, stack: FocalStack, ctx: Context) -> AlignedStack:
        identity = Alignment(0, [None] * stack.n, stack.shape, photometric=self.params.photometric)
        return apply_alignment(stack, identity, jobs=ctx.jobs)
