"""The stacks a comparison runs on: synthetic scenes or the samples of a dataset.

A :class:`StackSource` names a stack, describes it, loads it on demand (frames and
ground truth, a :class:`~dffcore.eval.datasets.Sample`) and carries a JSON ``identity``
that is part of the comparison's cache key: the synthetic parameters, or the dataset
path, the sample name and the size and mtime of the sample's files::

    from dffcore.eval.sources import dataset_stacks, synthetic_stacks

    stacks = synthetic_stacks("all", frames=8) + dataset_stacks("data/hci", limit=2)
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dffcore.core.data import FocalStack
from dffcore.core.errors import DffError, did_you_mean
from dffcore.eval.datasets import Sample, open_dataset, sample_files

#: the defaults of ``dff compare --synth`` (keyword arguments of :func:`synthetic_stacks`)
SYNTH_DEFAULTS: dict[str, Any] = {"frames": 16, "size": (240, 320), "noise": 0.0, "seed": 0}


@dataclass(frozen=True)
class StackSource:
    """A stack to compare on: ``name``, a JSON ``identity`` (part of the cache key) and
    ``load()`` returning the :class:`~dffcore.eval.datasets.Sample` (frames + ground
    truth); ``description`` is shown in the report."""

    name: str
    identity: dict[str, Any]
    load: Callable[[], Sample] = field(repr=False, compare=False)
    description: str = ""


def parse_size(text: str) -> tuple[int, int]:
    """Parse a ``--size`` option.

    Parameters
    ----------
    text : str
        ``"HxW"``, e.g. ``"240x320"``.

    Returns
    -------
    tuple of int
        ``(height, width)``; raises :class:`DffError` for anything else.
    """
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise DffError(f"--size {text}: expected HxW, e.g. 240x320") from None
    if h < 1 or w < 1:
        raise DffError(f"--size {text}: height and width must be positive")
    return h, w


def synthetic_stacks(
    scenes: str | Sequence[str],
    *,
    frames: int = 16,
    size: tuple[int, int] = (240, 320),
    noise: float = 0.0,
    seed: int = 0,
) -> list[StackSource]:
    """Synthetic stacks rendered in memory by :func:`dffcore.eval.synth.render_stack`.

    Parameters
    ----------
    scenes : str or sequence of str
        Scene names, or one comma-separated string; ``all`` means every scene of
        :data:`dffcore.eval.synth.SCENES`. Repeated scenes are kept once.
    frames : int
        Frames per stack (at least 2).
    size : tuple of int
        ``(height, width)``.
    noise : float
        Noise σ in 8-bit grey levels.
    seed : int
        Seed of the noise.

    Returns
    -------
    list of StackSource
        One per scene, named after it; nothing is rendered until a stack is loaded.
        Raises :class:`DffError` for an unknown scene or a bad option.
    """
    from dffcore.eval.synth import SCENES

    names = scenes.split(",") if isinstance(scenes, str) else list(scenes)
    names = [s.strip() for s in names if s.strip()]
    if not names:
        raise DffError(f"--synth: name a scene (valid: all, {', '.join(SCENES)})")
    expanded: list[str] = []
    for s in names:
        if s not in (*SCENES, "all"):
            raise DffError(
                f"--synth {s}: unknown scene.{did_you_mean(s, SCENES)} Valid: all, "
                f"{', '.join(SCENES)}"
            )
        for scene in SCENES if s == "all" else (s,):
            if scene not in expanded:
                expanded.append(scene)
    h, w = int(size[0]), int(size[1])
    if frames < 2:
        raise DffError(f"--frames {frames}: a focal stack needs at least 2 frames")
    if h < 1 or w < 1:
        raise DffError(f"--size {h}x{w}: height and width must be positive")
    if not (math.isfinite(noise) and noise >= 0):
        raise DffError(f"--noise {noise}: must be a number >= 0 (grey levels)")
    out = []
    for scene in expanded:
        identity = {
            "synthetic": scene,
            "frames": int(frames),
            "size": [h, w],
            "noise": float(noise),
            "seed": int(seed),
        }
        about = f"synthetic '{scene}', {frames} frames {w}x{h}, noise {noise:g}, seed {seed}"
        load = functools.partial(_load_synthetic, scene, int(frames), (h, w), noise, int(seed))
        out.append(StackSource(scene, identity, load, about))
    return out


def _load_synthetic(
    scene: str, frames: int, size: tuple[int, int], noise: float, seed: int
) -> Sample:
    from dffcore.eval.synth import render_stack

    s = render_stack(scene, n_frames=frames, size=size, noise_sigma=noise, seed=seed)
    meta = {"dataset": "synthetic", "sample": scene}
    stack = FocalStack(s.frames, [], s.focus_distances_m.copy(), "m", meta)
    return Sample(
        name=scene,
        stack=stack,
        truth_index=s.index,
        truth_depth=s.depth_m,
        all_in_focus=s.all_in_focus,
        focus_values=s.focus_distances_m.copy(),
        focus_kind="m",
    )


def dataset_stacks(
    path: str | Path, kind: str = "auto", limit: int | None = None
) -> list[StackSource]:
    """The samples of a dataset (:func:`dffcore.eval.datasets.open_dataset`).

    Parameters
    ----------
    path : str or Path
        The dataset folder (or file).
    kind : str
        Its layout, or ``"auto"`` to recognise it.
    limit : int, optional
        Take only the first ``limit`` samples.

    Returns
    -------
    list of StackSource
        One per sample, named after it; no frame is read until a sample is loaded.
    """
    if limit is not None and limit < 1:
        raise DffError(f"--limit {limit}: must be 1 or more")
    ds = open_dataset(path, kind)
    names = ds.names[:limit] if limit is not None else ds.names
    if not names:
        raise DffError(f"{path}: the {ds.kind} dataset has no samples")
    root = ds.root.resolve()
    out = []
    for name in names:
        identity = {
            "dataset": ds.kind,
            "path": str(root),
            "sample": name,
            "files": fingerprint(sample_files(root, ds.kind, name)),
        }
        about = f"{ds.kind} sample '{name}' of {ds.root}"
        out.append(StackSource(name, identity, functools.partial(ds.load, name), about))
    return out


def fingerprint(paths: Sequence[Path]) -> list[list[Any]]:
    """Identity of files for a cache key: ``[parent/name, size, mtime_ns]`` each.

    Parameters
    ----------
    paths : sequence of Path
        Existing files.

    Returns
    -------
    list of list
        One ``[f"{parent}/{name}", size in bytes, mtime in ns]`` per file (JSON ready).
    """
    out = []
    for p in paths:
        st = p.stat()
        out.append([f"{p.parent.name}/{p.name}", st.st_size, st.st_mtime_ns])
    return out
