"""Compositors: the all-in-focus image from the final depth."""

from .select import Select

COMPONENTS = (Select,)
