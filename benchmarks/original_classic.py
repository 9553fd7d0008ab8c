"""Faithful re-creation of the original course project (classic depth from focus).

This is *deliberately* unoptimised and keeps the original's known flaws (black
``warpPerspective`` borders that become a frame of wrong depth, single-threaded Python
loops, a pixel-loop weighted median). It exists only as the speed/accuracy baseline for
the benchmark scripts; it does not import dffcore and must not be used as a library.

Usage: ``python benchmarks/original_classic.py STACK_DIR [-o OUT_DIR]``
"""

from __future__ import annotations

import argparse
import os
import time

import cv2
import gco
import numpy as np

WM_WEIGHTS = np.array(
    [
        [0, 0, 1, 2, 1, 0, 0],
        [0, 1, 2, 3, 2, 1, 0],
        [1, 2, 3, 4, 3, 2, 1],
        [2, 3, 4, 5, 4, 3, 2],
        [1, 2, 3, 4, 3, 2, 1],
        [0, 1, 2, 3, 2, 1, 0],
        [0, 0, 1, 2, 1, 0, 0],
    ]
)


def load_frames(folder):
    names = sorted(f for f in os.listdir(folder) if f.lower().endswith((".jpg", ".jpeg", ".png")))
    return [cv2.imread(os.path.join(folder, n)) for n in names]


def align(frames):
    sift = cv2.SIFT_create()
    feats = []
    for f in frames:
        grey = cv2.cvtColor(f, cv2.COLOR_BGR2GRAY)
        feats.append(sift.detectAndCompute(grey, None))
    flann = cv2.FlannBasedMatcher({"algorithm": 1, "trees": 5}, {"checks": 50})
    h, w = frames[0].shape[:2]
    aligned = [frames[0]]
    to_ref = np.eye(3)
    for i in range(len(frames) - 1):
        (kp_a, des_a), (kp_b, des_b) = feats[i], feats[i + 1]
        matches = flann.knnMatch(des_a, des_b, k=2)
        good = [m for m, n in matches if m.distance < 0.7 * n.distance]
        src = np.float32([kp_b[m.trainIdx].pt for m in good]).reshape(-1, 1, 2)
        dst = np.float32([kp_a[m.queryIdx].pt for m in good]).reshape(-1, 1, 2)
        hom, _ = cv2.findHomography(src, dst, cv2.RANSAC, 5.0)  # frame i+1 -> frame i
        to_ref = to_ref @ hom  # frame i+1 -> frame 0
        aligned.append(cv2.warpPerspective(frames[i + 1], to_ref, (w, h)))  # black border
    return aligned


def focus_measure(frames):
    slices = []
    for f in frames:
        grey = cv2.cvtColor(f, cv2.COLOR_BGR2GRAY)
        blurred = cv2.GaussianBlur(grey, (5, 5), 0)
        slices.append(np.abs(cv2.Laplacian(blurred, cv2.CV_64F, ksize=5)))
    return np.stack(slices)


def argmax_depth(volume, frames):
    sigma = 7
    k = 6 * sigma + 1
    smoothed = np.stack([cv2.GaussianBlur(s, (k, k), sigma) for s in volume])
    index = np.argmax(smoothed, axis=0)
    stack = np.stack(frames)
    rows, cols = np.indices(index.shape)
    return index, stack[index, rows, cols]


def graph_cut(volume):
    n, h, w = volume.shape
    blurred = np.stack([cv2.GaussianBlur(s, (13, 13), 2) for s in volume])
    neg = -blurred
    norm = (neg - neg.min()) / (neg.max() - neg.min())
    # gco reads the raw buffer, so the (H*W, N) array must really be C-contiguous.
    unary = np.ascontiguousarray((norm * 100).astype(np.int32).transpose(1, 2, 0)).reshape(h * w, n)
    labels_idx = np.arange(n)
    pairwise = (np.abs(labels_idx[:, None] - labels_idx[None, :]) * 1).astype(np.int32)
    labels = gco.cut_grid_graph_simple(
        unary.reshape(h, w, n), pairwise, n_iter=-1, connect=4, algorithm="expansion"
    )
    labels = np.asarray(labels).reshape(h, w)
    energy = int(unary[np.arange(h * w), labels.ravel()].sum(dtype=np.int64))
    energy += int(np.abs(np.diff(labels, axis=0)).sum() + np.abs(np.diff(labels, axis=1)).sum())
    return labels, energy


def weighted_median(labels):
    h, w = labels.shape
    out = labels.astype(np.float32).copy()
    rows, weights = labels.tolist(), WM_WEIGHTS.tolist()
    for y in range(3, h - 3):
        for x in range(3, w - 3):
            values = []
            for dy in range(7):
                row = rows[y + dy - 3]
                for dx in range(7):
                    values.extend([row[x + dx - 3]] * weights[dy][dx])
            values.sort()
            out[y, x] = values[len(values) // 2]
    return out


def run_original(folder: str) -> dict:
    seconds = {}
    t = time.perf_counter()

    def tick(name):
        nonlocal t
        now = time.perf_counter()
        seconds[name] = now - t
        t = now

    frames = load_frames(folder)
    tick("load")
    aligned = align(frames)
    tick("align")
    volume = focus_measure(aligned)
    tick("focus")
    _, aif_bgr = argmax_depth(volume, aligned)
    tick("argmax")
    labels, energy = graph_cut(volume)
    tick("graph_cut")
    index = weighted_median(labels)
    tick("weighted_median")
    all_in_focus = np.ascontiguousarray(aif_bgr[..., ::-1])
    return {"index": index, "all_in_focus": all_in_focus, "seconds": seconds, "energy": energy}


def save(result, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    index = result["index"]
    np.save(os.path.join(out_dir, "depth_index.npy"), index)
    span = max(float(index.max() - index.min()), 1e-9)
    grey = ((index - index.min()) / span * 255).astype(np.uint8)
    cv2.imwrite(os.path.join(out_dir, "depth.png"), cv2.applyColorMap(grey, cv2.COLORMAP_JET))
    cv2.imwrite(os.path.join(out_dir, "all_in_focus.png"), result["all_in_focus"][..., ::-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stack_dir")
    parser.add_argument("-o", "--out", default=None)
    args = parser.parse_args()
    result = run_original(args.stack_dir)
    for step, sec in result["seconds"].items():
        print(f"{step:16s} {sec:8.3f} s")
    print(f"{'total':16s} {sum(result['seconds'].values()):8.3f} s")
    index = result["index"]
    print(f"energy {result['energy']}  index min {index.min():g} max {index.max():g}")
    if args.out:
        save(result, args.out)


if __name__ == "__main__":
    main()
