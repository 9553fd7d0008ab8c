"""Array operations shared by the engine and the components (no pipeline logic).

- :mod:`~dffcore.ops.convert`: the one place that decides dtype conversions;
- :mod:`~dffcore.ops.warp`: transforms, their composition, warping and validity masks;
- :mod:`~dffcore.ops.filters`: Gaussian, guided and edge-aware filters, frame selection;
- :mod:`~dffcore.ops.peaks`: streaming argmax over slices and sub-frame peak fits;
- :mod:`~dffcore.ops.depth`: slice index to metric depth;
- :mod:`~dffcore.ops.parallel`: a bounded, ordered thread map.
"""
