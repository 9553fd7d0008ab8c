"""Aggregators: focus volume -> fractional depth index, confidence, all-in-focus."""

from .argmax import Argmax

COMPONENTS = (Argmax,)
