"""What aligners share, and the one place frames are warped.

- :mod:`~dffcore.align.pairwise`: ``AlignParams`` and ``PairwiseAligner`` (estimate a
  transform per pair of frames, chain them to the reference);
- :mod:`~dffcore.align.apply`: ``warp_frame`` and ``apply_alignment`` apply an
  :class:`~dffcore.core.data.Alignment` (warp, crop box, interpolation, exposure), for
  frames in memory and for frames streamed under a memory budget;
- :mod:`~dffcore.align.ecc`: ECC between two frames, coarse to fine;
- :mod:`~dffcore.align.photometry`: exposure gain and offset per frame.
"""
