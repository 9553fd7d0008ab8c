"""Focus measures: per-pixel sharpness of each aligned frame.

The catalogue follows Pertuz, Puig & Garcia (Pattern Recognition 46(5), 2013), grouped
by family; the shared conventions (box-mean window, pre-filter, colour) are in
``_common``.
"""

from dffcore_plugins._lazy import lazy_exports

#: each component class and its module, in the order of COMPONENTS
_WHERE = {
    "LoG": "log",
    "MultiScaleLoG": "log",
    "EnergyOfLaplacian": "laplacian",
    "ModifiedLaplacian": "laplacian",
    "SumModifiedLaplacian": "laplacian",
    "VarianceOfLaplacian": "laplacian",
    "DiagonalLaplacian": "laplacian",
    "Tenengrad": "gradient",
    "TenengradVariance": "gradient",
    "GaussianDerivative": "gradient",
    "GradientEnergy": "gradient",
    "SpatialFrequency": "gradient",
    "GreyLevelVariance": "statistics",
    "NormalisedGreyLevelVariance": "statistics",
    "GreyLevelLocalVariance": "statistics",
    "AbsoluteCentralMoment": "statistics",
    "WaveletSum": "transform",
    "WaveletVariance": "transform",
    "DCTEnergyRatio": "transform",
    "Brenner": "misc",
    "Vollath": "misc",
    "Helmli": "misc",
    "RingDifference": "rdf",
}

__all__ = ["COMPONENTS", *_WHERE]
__getattr__ = lazy_exports(__name__, _WHERE)
