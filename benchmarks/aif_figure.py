"""All-in-focus image of the ``best`` pipeline against hard selection, and its figure.

    python benchmarks/aif_figure.py [--figure docs/images/best_aif_seams.png]

Renders the default synthetic scene (16 frames, 240x320) with ±2 % exposure flicker
(``dffcore.eval.synth`` ``exposure_flicker=0.02``: frames differ in brightness as real
sweeps do), runs ``best`` and ``best`` with its compositor replaced by hard selection at
the final depth (``select``), prints their PSNR against the rendered sharp image and the
seam strength (mean gradient of the smoothed error) along the true depth edges, and
writes a zoomed crop across depth edges: selection, best, ground truth, best's depth.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

import dffcore
from dffcore.core.data import FocalStack
from dffcore.eval.metrics import depth_edges, psnr, seam_strength, to_output_grid
from dffcore.eval.synth import render_stack
from dffcore.io.images import write_image
from dffcore.io.outputs import colour_depth, side_by_side

CROP = (60, 120, 80, 110)  # y, x, h, w: across the disc, rectangle and background edges


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--figure", type=Path, default=Path("docs/images/best_aif_seams.png"))
    args = ap.parse_args()
    s = render_stack("default", n_frames=16, size=(240, 320), seed=7, exposure_flicker=0.02)
    images = {}
    for name, overrides in (("select", ["composite={name: select}"]), ("best", [])):
        spec = dffcore.load_spec(dffcore.find_pipeline("best"), overrides)
        run = dffcore.run_pipeline(spec, FocalStack(s.frames))
        truth = to_output_grid(s.all_in_focus, run.crop)
        edges = depth_edges(to_output_grid(s.index, run.crop), radius=2)
        seams = seam_strength(run.result.all_in_focus, truth, smooth=2.0)
        images[name] = run.result.all_in_focus
        print(
            f"{name:>7}: PSNR {psnr(run.result.all_in_focus, truth):.2f} dB, "
            f"seam strength along depth edges {seams[edges].mean():.2f}"
        )
        index = run.result.index
    y, x, h, w = CROP

    def zoom(img: np.ndarray) -> np.ndarray:
        return cv2.resize(img[y : y + h, x : x + w], None, fx=4, fy=4, interpolation=0)

    panel = side_by_side(
        [
            zoom(images["select"]),
            zoom(images["best"]),
            zoom(s.all_in_focus),
            zoom(colour_depth(index, 16)[: index.shape[0], : index.shape[1]]),
        ],
        ["hard selection at the depth", "best (multiband)", "ground truth", "best's depth"],
    )
    args.figure.parent.mkdir(parents=True, exist_ok=True)
    write_image(args.figure, panel)
    print(f"wrote {args.figure}")


if __name__ == "__main__":
    main()
