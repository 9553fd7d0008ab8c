"""Hard selection: each pixel from the frame nearest to its depth."""

from __future__ import annotations

import numpy as np

from dffcore.core.components import Compositor, Context, Params
from dffcore.core.data import AlignedStack, DepthResult, FocusVolume
from dffcore.ops.filters import take_frames


class Select(Compositor):
    """Each pixel taken from the frame at its (rounded) depth index.

    Where that frame has no data (outside it after warping), the nearest frame that has
    data there is used.
    """

    name = "select"
    Params = Params
    citation = "Nayar & Nakagawa, Shape from focus, IEEE TPAMI 16(8), 1994"

    def context(self) -> int:
        return 0  # per pixel

    def __call__(
        self, result: DepthResult, volume: FocusVolume, aligned: AlignedStack, ctx: Context
    ) -> np.ndarray:
        return take_frames(aligned.frames, np.rint(result.index), aligned.valid)
