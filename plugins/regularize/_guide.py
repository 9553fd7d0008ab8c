"""The guide image of the image-guided regularisers (one helper, shared)."""

from __future__ import annotations

import numpy as np

from dffcore.core.data import AlignedStack, DepthResult
from dffcore.ops.convert import to_grey
from dffcore.ops.filters import take_frames


def guide_image(result: DepthResult, aligned: AlignedStack) -> np.ndarray:
    """Grey (H,W) float32 guide: the all-in-focus image's luminance.

    Integer stacks give values in [0, 1] (see :func:`dffcore.ops.convert.to_grey`), the
    unit of every intensity parameter of the guided regularisers. When the aggregator
    left ``all_in_focus`` to the final compositing step (None), the composite is made
    here by selection: each pixel from the frame at its rounded current depth index.
    """
    aif = result.all_in_focus
    if aif is None:
        aif = take_frames(aligned.frames, np.rint(result.index), aligned.valid)
    grey = to_grey(aif)
    if grey.shape != result.index.shape:
        raise ValueError(
            f"guide image: shape {grey.shape} differs from the depth map's {result.index.shape}"
        )
    return np.ascontiguousarray(grey, dtype=np.float32)
