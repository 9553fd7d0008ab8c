"""Aligners: bring every frame into the reference frame's pixel grid."""

from .ecc import ECC
from .flow import Flow
from .homography import Homography
from .none import NoAlign

COMPONENTS = (NoAlign, Homography, ECC, Flow)
