"""What aligners share, and the one place frames are warped.

- :mod:`~dffcore.align.pairwise`: ``AlignParams`` and ``PairwiseAligner`` (estimate a
  transform per pair of frames, chain them to the reference);
- :mod:`~dffcore.align.apply`: ``warp_frame`` and ``apply_alignment`` apply an
  :class:`~dffcore.core.data.Alignment` (warp, crop box, interpolation, exposure), for
  frames in memory and for frames streamed under a memory budget;
- :mod:`~dffcore.align.limits`: the motion a focus sweep can produce;
- :mod:`~dffcore.align.path`: one robust motion path fitted to all pairwise estimates;
- :mod:`~dffcore.align.motion`: the residual test that tells still stacks from moving ones;
- :mod:`~dffcore.align.ecc`: ECC between two frames, coarse to fine, blur-matched;
- :mod:`~dffcore.align.photometry`: exposure gain and offset per frame.
"""
