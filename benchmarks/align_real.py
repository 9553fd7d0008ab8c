"""How well each aligner registers real hand-held focal stacks.

    python benchmarks/align_real.py [--data DIR] [--stacks NAME ...] [--variants] [--figures DIR]

For every stack (default ``cocoa_largemotion``, ``dog_largemotion``, ``keyboard`` in
``../shared/data``) and every aligner it runs ``{align: X, focus: log, aggregate: argmax}``
(reference ``middle``) and prints:

- ``resid``: mean |difference| (8-bit grey levels) between each aligned frame and its
  neighbour, both blurred with a Gaussian σ = 2 px (evens out their defocus difference),
  on pixels valid in both, averaged over the N−1 pairs. Lower = better registered.
- ``pair%``: the share of pixels valid in both frames of a pair (mean over the pairs) — the
  pixels ``resid`` is measured on; flow marks occlusions invalid, so read the two together.
- ``all%``: the share of pixels valid in every frame.
- ``GE``: sharpness of the all-in-focus image, mean Sobel gx² + gy² of its grey in [0, 1]
  (×1000) over the centre 80 % crop (the same region for every aligner). Misalignment
  makes the composite blurry or ghosted, which lowers it.
- ``align s`` / ``total s``: seconds of the align stage and of the whole pipeline.

``--variants`` adds the flow settings tried while investigating (DIS preset, occlusion
threshold 1/2/3 px or off, chain: false, Farneback, reference: first). ``--figures DIR``
writes, for the hand-held stacks, all-in-focus crops of none / homography / flow side by
side (:data:`CROPS`), named by :data:`FIGURE_NAMES`: ``align_<name>.png`` where flow and
none differ most in gradient energy, ``align_<name>_flow_gain.png`` / ``_flow_loss.png``
where flow's composite is most better / worse than homography's against the reference.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml

import dffcore
from dffcore.io.images import write_image
from dffcore.io.outputs import side_by_side
from dffcore.ops.convert import to_grey, to_uint8
from dffcore.ops.filters import gaussian

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parent.parent / "shared" / "data"
STACKS = ("cocoa_largemotion", "dog_largemotion", "keyboard", "pcb_macro")
FIGURE_STACKS = ("cocoa_largemotion", "dog_largemotion", "keyboard", "pcb_macro")
#: figure file names: not the stacks' own names, so no figure looks like a sample frame
FIGURE_NAMES = {
    "cocoa_largemotion": "handheld_phone",
    "dog_largemotion": "handheld_dslr",
    "keyboard": "phone_sweep",
    "pcb_macro": "macro_sweep",
}
FIGURE_ALIGNERS = ("none", "auto", "homography", "flow")
#: width (px) of each panel of the depth figures
FIGURE_WIDTH = 480
#: aligners of the depth figures, each in the `best` pipeline
DEPTH_ALIGNERS: dict[str, dict[str, Any]] = {
    "auto": {"name": "auto"},
    "ecc affine": {"name": "ecc", "params": {"motion": "affine", "finest_level": 2}},
    "flow": {"name": "flow", "params": {"reference": "first"}},
}

ALIGNERS: dict[str, dict[str, Any]] = {
    "none": {"name": "none"},
    "auto": {"name": "auto"},
    "homography": {"name": "homography"},
    "ecc": {"name": "ecc"},
    "ecc affine": {"name": "ecc", "params": {"motion": "affine", "finest_level": 2}},
    "flow": {"name": "flow"},
    "flow prealign=ecc": {"name": "flow", "params": {"prealign": "ecc"}},
}
VARIANTS: dict[str, dict[str, Any]] = {
    "flow preset=fast": {"name": "flow", "params": {"preset": "fast"}},
    "flow preset=ultrafast": {"name": "flow", "params": {"preset": "ultrafast"}},
    # explicit, so that the rows keep their meaning when the default changes
    **{
        f"flow occlusion_threshold={t:g}": {"name": "flow", "params": {"occlusion_threshold": t}}
        for t in (1.0, 2.0, 3.0)
    },
    "flow occlusion_check=off": {"name": "flow", "params": {"occlusion_check": False}},
    "flow chain=false": {"name": "flow", "params": {"chain": False}},
    "flow chain=false prealign=ecc": {
        "name": "flow",
        "params": {"chain": False, "prealign": "ecc"},
    },
    "flow method=farneback": {"name": "flow", "params": {"method": "farneback"}},
    "flow reference=first": {"name": "flow", "params": {"reference": "first"}},
}


def spec_for(align: dict[str, Any]) -> dffcore.PipelineSpec:
    align = {"name": align["name"], "params": dict(align.get("params", {}))}
    if align["name"] != "none":  # `none` has no reference: frames keep their own grid
        align["params"].setdefault("reference", "middle")
    return dffcore.load_spec({"align": align, "focus": {"name": "log"}, "aggregate": "argmax"})


def residual(aligned: dffcore.AlignedStack, sigma: float = 2.0) -> tuple[float, float]:
    """Mean |neighbour difference| (grey levels) on pixels valid in both; their share."""
    valid = aligned.valid
    greys = [
        gaussian(to_grey(f), sigma, None if valid is None else valid[i])  # NaN where invalid
        for i, f in enumerate(aligned.frames)
    ]
    diffs, shares = [], []
    for a, b in itertools.pairwise(greys):
        d = np.abs(a - b)
        ok = np.isfinite(d)
        diffs.append(float(d[ok].mean()) * 255 if ok.any() else np.nan)
        shares.append(float(ok.mean()))
    return float(np.mean(diffs)), float(np.mean(shares))


def gradient_energy_map(image: np.ndarray) -> np.ndarray:
    g = to_grey(image)
    gx, gy = cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1)
    return gx * gx + gy * gy


def centre(a: np.ndarray, keep: float = 0.8) -> np.ndarray:
    h, w = a.shape[:2]
    dy, dx = round(h * (1 - keep) / 2), round(w * (1 - keep) / 2)
    return a[dy : h - dy, dx : w - dx]


def measure(stack: dffcore.FocalStack, align: dict[str, Any]) -> dict[str, Any]:
    t0 = time.perf_counter()
    try:
        run = dffcore.run_pipeline(spec_for(align), stack, intermediates=True)
    except dffcore.DffError as exc:
        return {"error": str(exc), "total": time.perf_counter() - t0}
    total = time.perf_counter() - t0
    resid, pair = residual(run.aligned)
    valid = run.aligned.valid
    ref = run.aligned.frames[run.aligned.reference] if align["name"] != "none" else None
    if ref is None:  # `none`: compare with the middle frame, as the others do
        ref = stack.frames[(stack.n - 1) // 2]
    blur = [cv2.GaussianBlur(to_grey(im), (0, 0), 3.0) for im in (run.result.all_in_focus, ref)]
    err = np.abs(blur[0] - blur[1]) * 255
    return {
        "resid": resid,
        "pair": pair,
        "all": 1.0 if valid is None else float(valid.all(axis=0).mean()),
        "ge": float(centre(gradient_energy_map(run.result.all_in_focus)).mean()) * 1000,
        "aif_ref": float(centre(err).mean()),
        "err": err,
        "align": run.records[0].seconds,
        "total": total,
        "aif": run.result.all_in_focus,
    }


def print_table(name: str, stack: dffcore.FocalStack, rows: dict[str, dict[str, Any]]) -> None:
    h, w = stack.shape
    print(f"\n{name} ({stack.n} frames {w}x{h}), reference middle, focus log, argmax")
    print(
        f"  {'aligner':<30} {'resid':>6} {'pair%':>6} {'all%':>6} {'GE':>7} "
        f"{'AIF-ref':>7} {'align s':>8} {'total s':>8}"
    )
    for label, r in rows.items():
        if "error" in r:
            print(f"  {label:<30} failed after {r['total']:.1f} s: {r['error']}")
            continue
        print(
            f"  {label:<30} {r['resid']:6.2f} {100 * r['pair']:6.1f} {100 * r['all']:6.1f} "
            f"{r['ge']:7.1f} {r['aif_ref']:7.2f} {r['align']:8.2f} {r['total']:8.2f}"
        )


def best_window(score: np.ndarray, size: tuple[int, int]) -> tuple[int, int]:
    """Top-left (y, x) of the window, inside the centre 80 %, of highest mean ``score``."""
    wh, ww = size
    box = cv2.boxFilter(score.astype(np.float32), -1, (ww, wh))
    h, w = box.shape
    my, mx = round(h * 0.1) + wh // 2, round(w * 0.1) + ww // 2
    inner = box[my : h - my, mx : w - mx]
    cy, cx = np.unravel_index(np.argmax(inner), inner.shape)
    return int(cy + my - wh // 2), int(cx + mx - ww // 2)


#: figure file suffix -> (how its crop window is chosen, the score map it maximises)
CROPS = {
    "": (
        "largest |gradient-energy difference| flow vs none",
        lambda r: np.abs(
            gradient_energy_map(r["flow"]["aif"]) - gradient_energy_map(r["none"]["aif"])
        ),
    ),
    "_flow_gain": (
        "largest (homography - flow) AIF-ref error",
        lambda r: r["homography"]["err"] - r["flow"]["err"],
    ),
    "_flow_loss": (
        "largest (flow - homography) AIF-ref error",
        lambda r: r["flow"]["err"] - r["homography"]["err"],
    ),
}


def figures(folder: Path, name: str, rows: dict[str, dict[str, Any]], size=(120, 160)) -> None:
    """All-in-focus crops of none / homography / flow side by side, shown 2x."""
    if any("error" in rows.get(k, {"error": 1}) for k in FIGURE_ALIGNERS):
        print(f"  figures of {name}: skipped (an aligner they show failed)")
        return
    folder.mkdir(parents=True, exist_ok=True)
    for suffix, (how, score) in CROPS.items():
        y, x = best_window(score(rows), size)
        crops = [
            cv2.resize(
                to_uint8(rows[k]["aif"][y : y + size[0], x : x + size[1]]),
                None,
                fx=2,
                fy=2,
                interpolation=cv2.INTER_NEAREST,
            )
            for k in FIGURE_ALIGNERS
        ]
        path = folder / f"align_{FIGURE_NAMES.get(name, name)}{suffix}.png"
        write_image(path, side_by_side(crops, list(FIGURE_ALIGNERS)))
        print(f"  wrote {path}: crop x={x} y={y} {size[1]}x{size[0]} shown 2x ({how})")


def depth_figure(folder: Path, name: str, stack: dffcore.FocalStack) -> None:
    """The depth map and all-in-focus image of `best` with each of DEPTH_ALIGNERS."""
    from dffcore.io.outputs import colour_depth

    panels, titles = [], []
    for label, align in DEPTH_ALIGNERS.items():
        data = yaml.safe_load(dffcore.find_pipeline("best").read_text(encoding="utf-8"))
        try:
            run = dffcore.run_pipeline(dffcore.load_spec({**data, "align": align}), stack)
        except dffcore.DffError as exc:
            print(f"  depth figure of {name}: {label} failed: {exc}")
            continue
        w = run.result.index.shape[1]
        for image in (colour_depth(run.result.index, stack.n)[:, :w], run.result.all_in_focus):
            s = min(1.0, FIGURE_WIDTH / image.shape[1])
            panels.append(
                to_uint8(cv2.resize(image, None, fx=s, fy=s, interpolation=cv2.INTER_AREA))
            )
        titles += [f"depth, {label}", f"all-in-focus, {label}"]
    rows = [side_by_side(panels[i : i + 2], titles[i : i + 2]) for i in range(0, len(panels), 2)]
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    path = folder / f"align_depth_{FIGURE_NAMES.get(name, name)}.jpg"
    write_image(path, np.concatenate(rows, axis=0))
    print(f"  wrote {path}: best with {', '.join(DEPTH_ALIGNERS)}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="folder holding the stacks")
    ap.add_argument("--stacks", nargs="+", default=list(STACKS))
    ap.add_argument("--variants", action="store_true", help="also run the flow variants")
    ap.add_argument("--figures", metavar="DIR", help="write align_<stack>.png figures here")
    args = ap.parse_args()
    aligners = {**ALIGNERS, **(VARIANTS if args.variants else {})}
    for name in args.stacks:
        folder = Path(args.data) / name
        if not folder.is_dir():
            print(f"\n{name}: skipped, no folder {folder} (see ../shared/data/README.md)")
            continue
        stack = dffcore.read_stack(folder)
        rows = {label: measure(stack, align) for label, align in aligners.items()}
        print_table(name, stack, rows)
        if args.figures and name in FIGURE_STACKS:
            figures(Path(args.figures), name, rows)
            depth_figure(Path(args.figures), name, stack)
    return 0


if __name__ == "__main__":
    sys.exit(main())
