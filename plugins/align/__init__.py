"""Aligners: bring every frame into the reference frame's pixel grid."""

from .auto import Auto
from .ecc import ECC
from .external_flow import ExternalFlow
from .flow import Flow
from .homography import Homography
from .none import NoAlign
from .raft import RAFT

COMPONENTS = (NoAlign, Auto, Homography, ECC, Flow, RAFT, ExternalFlow)
