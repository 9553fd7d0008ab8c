"""RAFT deep optical flow (torchvision's implementation) as a dense-flow aligner.

torch and torchvision are imported only when the aligner runs (``pip install
'dffcore[raft]'``). Weights never download: they come from ``weights`` (a local state
dict file) or from the file torchvision's ``Raft_*_Weights.DEFAULT`` would have put in
torch's hub cache (``torch.hub.get_dir()/checkpoints/``).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

import cv2
import numpy as np
from pydantic import Field

from dffcore.core.components import Params
from dffcore.core.data import FocalStack
from dffcore.core.errors import DffError

from .flow import FlowAligner, FlowParams

_MIN_SIDE = 128  # RAFT's 4-level correlation pyramid needs 1/8-scale features of >= 16 px


class RAFTParams(FlowParams):
    model: Literal["small", "large"] = Field(
        "small", description="torchvision's raft_small (1.0 M parameters) or raft_large (5.3 M)"
    )
    weights: Path | None = Field(
        None,
        description="local .pth state dict of that model; default: torchvision's pretrained "
        "file in torch's hub cache (never downloaded)",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="where the network runs; auto = cuda when available"
    )
    iterations: int = Field(
        12, ge=1, le=1000, description="recurrent flow updates (num_flow_updates) (at most 1000)"
    )
    max_size: int = Field(
        1024,
        ge=_MIN_SIDE,
        le=16384,
        description="longest side a pair is resized to for inference, px (at most 16384 px)",
    )


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]


def _torch() -> tuple[Any, Any]:
    try:
        import torch
        from torchvision.models import optical_flow
    except ImportError:
        raise DffError("raft needs the optional extra: pip install 'dffcore[raft]'") from None
    return torch, optical_flow


def cached_weights(model: str) -> Path:
    """Where torchvision keeps the default pretrained weights of ``raft_<model>``."""
    torch, of = _torch()
    enum = of.Raft_Small_Weights if model == "small" else of.Raft_Large_Weights
    url = enum.DEFAULT.url
    path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)
    if not path.is_file():
        cls = enum.__name__
        fill = (
            f'python -c "from torchvision.models.optical_flow import raft_{model}, {cls}; '
            f'raft_{model}(weights={cls}.DEFAULT)"'
        )
        raise DffError(
            f"raft: no pretrained raft_{model} weights: put {url} at {path} (on a machine with "
            f"network, {fill} fills that cache, or download the URL), or set params.weights to "
            "a local state dict file"
        )
    return path


def load_raft(model: str, weights: Path | None, device: str) -> tuple[Any, str]:
    """torchvision's RAFT with its weights loaded, in eval mode on the resolved device."""
    torch, of = _torch()
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    elif device == "cuda" and not torch.cuda.is_available():
        raise DffError("raft: device cuda requested but torch sees no CUDA GPU; use cpu or auto")
    if weights is not None and not Path(weights).is_file():
        raise DffError(f"raft: weights file {weights} does not exist")
    path = Path(weights) if weights is not None else cached_weights(model)
    builders = {"small": of.raft_small, "large": of.raft_large}
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DffError(f"{path}: cannot read a torch state dict ({_first_line(exc)})") from None
    net = builders[model](weights=None)
    try:
        net.load_state_dict(state)
    except Exception as exc:
        other = "large" if model == "small" else "small"
        try:
            builders[other](weights=None).load_state_dict(state)
            hint = f"; it holds raft_{other} weights: set model: {other}"
        except Exception:
            hint = f" ({_first_line(exc)})"
        raise DffError(f"{path}: not a state dict of torchvision's raft_{model}{hint}") from None
    return net.eval().to(device), device


class RAFT(FlowAligner):
    """RAFT deep optical flow (torchvision; local pretrained weights, CPU or CUDA),
    composed to the reference; occluded pixels (forward-backward check) are invalid."""

    name = "raft"
    Params = RAFTParams
    citation = "Teed & Deng, RAFT: Recurrent All-Pairs Field Transforms for Optical Flow, ECCV 2020"

    def __init__(self, params: Params | dict[str, Any] | None = None) -> None:
        super().__init__(params)
        self._net: tuple[Any, str] | None = None
        self._lock = threading.Lock()  # one inference at a time (torch uses every core)

    def network(self) -> tuple[Any, str]:
        """The loaded model and its device, loaded once per instance."""
        with self._lock:
            if self._net is None:
                p = self.params
                self._net = load_raft(p.model, p.weights, p.device)
            return self._net

    def prepare(self, stack: FocalStack) -> Any:
        self.network()  # fail on missing torch/weights before any other work
        return super().prepare(stack)

    def pair_flow(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        torch, _ = _torch()
        net, device = self.network()
        p = self.params
        h, w = a.shape[:2]
        scale = min(1.0, p.max_size / max(h, w))
        sh, sw = max(1, round(h * scale)), max(1, round(w * scale))
        ph, pw = max(_MIN_SIDE, -(-sh // 8) * 8), max(_MIN_SIDE, -(-sw // 8) * 8)

        def tensor(img: np.ndarray) -> Any:
            if (sh, sw) != (h, w):
                img = cv2.resize(img, (sw, sh), interpolation=cv2.INTER_AREA)
            img = cv2.copyMakeBorder(
                np.clip(img, 0, 1), 0, ph - sh, 0, pw - sw, cv2.BORDER_REPLICATE
            )
            t = torch.from_numpy(np.ascontiguousarray(img, np.float32) * 2 - 1)  # as T.Normalize
            return t.to(device)[None, None].expand(1, 3, ph, pw).contiguous()

        with self._lock, torch.inference_mode():
            flow = net(tensor(a), tensor(b), num_flow_updates=p.iterations)[-1]
        out = flow[0, :, :sh, :sw].permute(1, 2, 0).float().cpu().numpy()
        if (sh, sw) != (h, w):
            out = cv2.resize(out, (w, h), interpolation=cv2.INTER_LINEAR)
            out *= np.array([w / sw, h / sh], np.float32)
        return np.ascontiguousarray(out, np.float32)
