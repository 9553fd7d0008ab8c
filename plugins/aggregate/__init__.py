"""Aggregators: focus volume -> fractional depth index, confidence (and all-in-focus).

``argmax`` streams over the slices and composites its own all-in-focus image; the
sub-frame aggregators (``gaussian``, ``parabolic``, ``softargmax``) share their options
(smoothing, guided filter, confidence) through ``_common.CurveParams`` and leave the
all-in-focus image to the runner.
"""

from .argmax import Argmax
from .peak import Gaussian, Parabolic, SoftArgmax
from .sgm import SGM

COMPONENTS = (Argmax, Gaussian, Parabolic, SoftArgmax, SGM)
