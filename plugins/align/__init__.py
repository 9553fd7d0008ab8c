"""Aligners: bring every frame into the reference frame's pixel grid."""

from .ecc import ECC
from .external_flow import ExternalFlow
from .flow import Flow
from .homography import Homography
from .none import NoAlign
from .raft import RAFT

COMPONENTS = (NoAlign, Homography, ECC, Flow, RAFT, ExternalFlow)
