"""Compositors: the all-in-focus image from the final depth."""

from .blend import Blend
from .multiband import Multiband
from .select import Select

COMPONENTS = (Select, Blend, Multiband)
