"""Aligners: bring every frame into the reference frame's pixel grid."""

from .homography import Homography
from .none import NoAlign

COMPONENTS = (NoAlign, Homography)
