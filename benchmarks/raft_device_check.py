"""RAFT aligner on CUDA vs CPU, same (randomly initialised) weights, on a GPU machine.

    python benchmarks/raft_device_check.py

Checks that the ``raft`` aligner's CUDA path runs and gives the flow the CPU path gives
(pretrained weights cannot be fetched here, so the weights are random: this checks the
plumbing — device placement, padding, resizing, composition — not accuracy), and prints
seconds per 640x360 pair on each device.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> int:
    import torch
    from dffcore_plugins.align.raft import RAFT
    from torchvision.models.optical_flow import raft_small

    from dffcore.core.components import Context
    from dffcore.core.data import FocalStack
    from dffcore.eval.synth import render_stack
    from dffcore.ops.warp import to_map

    if not torch.cuda.is_available():
        print("no CUDA device: nothing to compare")
        return 0
    torch.manual_seed(0)
    synth = render_stack("default", n_frames=3, size=(360, 640), seed=1)
    stack = FocalStack(synth.frames)
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "raft_small_random.pth"
        torch.save(raft_small().state_dict(), weights)
        out = {}
        for device in ("cpu", "cuda"):
            aligner = RAFT(
                {
                    "weights": str(weights),
                    "device": device,
                    "reference": 0,
                    "occlusion_check": False,
                }
            )
            aligner(stack, Context())  # warm-up (model load, CUDA context)
            t0 = time.perf_counter()
            out[device] = aligner(stack, Context())
            sec = (time.perf_counter() - t0) / (stack.n - 1)
            print(f"{device}: {sec:.3f} s per 640x360 pair (12 iterations, raft_small)")
    a = to_map(out["cpu"].transforms[2], stack.shape)
    b = to_map(out["cuda"].transforms[2], stack.shape)
    diff = np.abs(a - b)[np.isfinite(a) & np.isfinite(b)]
    print(f"cpu vs cuda flow: median |diff| {np.median(diff):.2e} px, max {diff.max():.2e} px")
    ok = np.median(diff) < 1e-2
    print("OK" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
