"""Focus measures: per-pixel sharpness of each aligned frame.

The catalogue follows Pertuz, Puig & Garcia (Pattern Recognition 46(5), 2013), grouped
by family; the shared conventions (box-mean window, pre-filter, colour) are in
``_common``.
"""

from .gradient import (
    GaussianDerivative,
    GradientEnergy,
    SpatialFrequency,
    Tenengrad,
    TenengradVariance,
)
from .laplacian import (
    DiagonalLaplacian,
    EnergyOfLaplacian,
    ModifiedLaplacian,
    SumModifiedLaplacian,
    VarianceOfLaplacian,
)
from .log import LoG, MultiScaleLoG
from .misc import Brenner, Helmli, Vollath
from .rdf import RingDifference
from .statistics import (
    AbsoluteCentralMoment,
    GreyLevelLocalVariance,
    GreyLevelVariance,
    NormalisedGreyLevelVariance,
)
from .transform import DCTEnergyRatio, WaveletSum, WaveletVariance

COMPONENTS = (
    LoG,
    MultiScaleLoG,
    EnergyOfLaplacian,
    ModifiedLaplacian,
    SumModifiedLaplacian,
    VarianceOfLaplacian,
    DiagonalLaplacian,
    Tenengrad,
    TenengradVariance,
    GaussianDerivative,
    GradientEnergy,
    SpatialFrequency,
    GreyLevelVariance,
    NormalisedGreyLevelVariance,
    GreyLevelLocalVariance,
    AbsoluteCentralMoment,
    WaveletSum,
    WaveletVariance,
    DCTEnergyRatio,
    Brenner,
    Vollath,
    Helmli,
    RingDifference,
)
