"""The identity aligner."""

from __future__ import annotations

from dffcore.components import Aligner, Context, Params
from dffcore.data import AlignedStack, FocalStack


class NoAlign(Aligner):
    """Frames are already registered: pass them through unchanged."""

    name = "none"
    Params = Params

    def __call__(self, stack: FocalStack, ctx: Context) -> AlignedStack:
        return AlignedStack(
            stack.frames,
            reference=0,
            valid=None,
            transforms=[None] * stack.n,
            diagnostics=[{} for _ in range(stack.n)],
            source=stack,
        )
