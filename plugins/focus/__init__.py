"""Focus measures: per-pixel sharpness of each aligned frame."""

from .log import LoG

COMPONENTS = (LoG,)
