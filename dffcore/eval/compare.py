"""Compare pipelines on focal stacks with ground truth and write a report (``dff compare``).

Every pipeline variant runs on every stack; each result is scored against the stack's
ground truth in the result's pixel grid (:func:`dffcore.metrics.to_output_grid`), timed,
cached, and gathered into a report folder::

    from dffcore.eval.compare import compare, pipeline_variants, synthetic_stacks

    variants = pipeline_variants(["fast", "best"], grid=["aggregate.params.sigma=1,2"])
    rows = compare(variants, synthetic_stacks("all", frames=8), "report/")

Scores (the groups of the report; keys of a row's ``metrics``):

- ``slice.*``: :func:`dffcore.metrics.evaluate_index` of the fractional index against the
  ground-truth index, whenever the stack has one. The ground truth is **not clipped**:
  a pixel whose truth lies outside the sweep ``[0, N-1]`` (a dataset's truth can, see
  :mod:`dffcore.datasets`) stays in every score, and ``slice.outside_sweep`` says which
  fraction of the scored pixels that is (no pipeline can reach them: its index is
  clipped to the sweep).
- ``disparity.*``: with disparity ground truth (HCI, DDFF-12) the index is mapped to
  disparity by linear interpolation of the slices' focus disparities (``np.interp`` over
  the slice index) and scored like the HCI 4D light-field benchmark (Honauer, Johannsen,
  Kondermann and Goldluecke, ACCV 2016): ``mse`` (px², their tables show MSE x 100),
  ``rmse`` (px) and ``bump`` (:func:`dffcore.metrics.bumpiness`). Every pixel with finite
  ground truth is scored (the benchmark's web tables also leave out a 15-px border).
- ``depth.*``: with metric depth ground truth (synthetic, FoD500, DDFF-12) the run's
  metric depth (``run.result.depth``, known when the stack has focus distances) is
  scored by :func:`dffcore.metrics.evaluate_depth` (the DDFF-12 protocol of Hazirbas
  et al., ACCV 2018).
- ``aif.*``: :func:`dffcore.metrics.psnr` and :func:`dffcore.metrics.ssim` of the
  all-in-focus image against the true one.

Failures: a stack that cannot be read, a stage's :class:`DffError` or any other
exception is recorded in its row (``status`` ``failed`` and a one-line ``error``) and the
other runs go on. Failures are not cached.

Cache: the result of (variant, stack) lives in ``REPORT/cache/<key>/`` (``metrics.json``,
``depth_index.npy``, ``all_in_focus.png``), ``key`` a hash of the resolved spec
(:func:`dffcore.batch.spec_hash`), the stack's identity (the synthetic parameters, or
the dataset path, sample name and the size and mtime of the sample's files) and the
dffcore version. A re-run computes only missing entries (``force`` recomputes all); after
changing a component's code without a version bump, use ``force``. ``metrics.json`` is
written last, so an entry is complete exactly when it is present. The ground truth
needed for the figures is cached per stack in ``REPORT/cache/stack-<key>/``.
"""

from __future__ import annotations

import csv
import datetime as _dt
import functools
import hashlib
import html
import io as _io
import itertools
import json
import logging
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dffcore.core.data import FocalStack
from dffcore.core.errors import DffError, did_you_mean
from dffcore.core.spec import PipelineSpec, find_pipeline, load_spec
from dffcore.eval.datasets import Sample, open_dataset, sample_files
from dffcore.eval.metrics import (
    METRIC_INFO,
    bumpiness,
    evaluate_depth,
    evaluate_index,
    mse,
    psnr,
    ssim,
    to_output_grid,
)
from dffcore.io.images import atomic_write_bytes, read_image, write_image, write_npy
from dffcore.ops.convert import to_float32
from dffcore.run.engine import Run
from dffcore.version import __version__

logger = logging.getLogger(__name__)

#: progress(label, done, total)
ProgressCallback = Callable[[str, int, int], None]

CACHE_FORMAT = 1
SYNTH_DEFAULTS: dict[str, Any] = {"frames": 16, "size": (240, 320), "noise": 0.0, "seed": 0}
CROP_SIZE = 128  # side of the all-in-focus crop of the figures
FIGURE_DPI = 150

#: (group, title, metric keys) in report order
GROUPS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (
        "slice",
        "Depth in slices (fractional frame index)",
        ("mae", "rmse", "bad_0.5", "bad_1", "bad_2", "outside_sweep"),
    ),
    ("disparity", "Disparity (px), HCI 4D light-field benchmark protocol", ("mse", "rmse", "bump")),
    (
        "depth",
        "Metric depth (m), DDFF-12 protocol",
        (
            "mse",
            "rmse",
            "log_rmse",
            "abs_rel",
            "sq_rel",
            "delta_1.25",
            "delta_1.25^2",
            "delta_1.25^3",
            "bump",
        ),
    ),
    ("aif", "All-in-focus image", ("psnr", "ssim")),
)
PERFORMANCE: dict[str, tuple[str, str]] = {
    "seconds": ("run time of the pipeline's stages, s (no reading or scoring)", "lower"),
    "peak_rss_mb": ("peak resident memory of the process during the run, MB", "lower"),
}
_INFO: dict[str, tuple[str, str | None]] = {
    "slice.rmse": ("root-mean-square error (slices)", "lower"),
    "slice.outside_sweep": (
        "fraction of scored pixels whose truth lies outside the sweep (kept in the scores)",
        None,
    ),
    "disparity.mse": ("mean squared error (px²); HCI tables show this ×100", "lower"),
    "disparity.rmse": ("root-mean-square error (px)", "lower"),
    "disparity.bump": ("bumpiness of the disparity error (×100, HCI)", "lower"),
    "depth.mse": ("mean squared error (m²)", "lower"),
    "depth.rmse": ("root-mean-square error (m)", "lower"),
    "depth.bump": ("bumpiness of the depth error (×100)", "lower"),
    "aif.psnr": ("PSNR against the true all-in-focus image (dB)", "higher"),
    "aif.ssim": ("mean SSIM against the true all-in-focus image", "higher"),
}
PROTOCOL = (
    "Every score is computed in the result's pixel grid: the ground truth is cut to the "
    "aligner's crop when it cropped. Pixels with non-finite ground truth are never scored; "
    "no other pixel is dropped.",
    "Slice scores compare the fractional index (0 = first frame) with the ground-truth "
    "index. The truth is not clipped to the sweep [0, N-1]: pixels outside it stay in "
    "every score and `outside_sweep` is their fraction.",
    "Disparity (HCI protocol, Honauer et al. ACCV 2016): the index is mapped to disparity "
    "by linear interpolation of the slices' focus disparities; MSE is in px² (the HCI "
    "benchmark tables show MSE ×100), RMSE in px, bumpiness is 100 × the mean clipped "
    "(0.05) Frobenius norm of the Hessian of the error. All pixels are scored (the "
    "benchmark's tables also leave out a 15-px border).",
    "Metric depth (DDFF-12 protocol, Hazirbas et al. ACCV 2018; Eigen et al. NIPS 2014): "
    "the run's depth in metres (interpolated in diopters between slices) against the "
    "true depth; ground truth <= 0 is not scored; delta accuracies are fractions (0..1).",
    "All-in-focus: PSNR (dB, peak = the dtype's range) and SSIM (Wang et al. 2004, "
    "Gaussian window σ 1.5, 5-px border left out) against the true all-in-focus image.",
    "Seconds are the pipeline's stages only (no reading, scoring or writing); the first run "
    "in a process also pays one-off start-up costs. Peak memory is the OS-measured "
    "high-water mark of the whole process during each stage (stack and ground truth "
    "included), the maximum over the stages.",
    "Means are over the stacks; a pipeline with a failed or unscored stack has no mean. "
    "Bold marks the best value of each column.",
)


# -- pipelines -------------------------------------------------------------------
@dataclass(frozen=True)
class PipelineVariant:
    """One pipeline to compare: a display ``name`` and its validated ``spec``.

    ``source`` is the pipeline file and ``overrides`` the ``--set`` / ``--grid``
    assignments applied to it (for the report).
    """

    name: str
    spec: PipelineSpec
    source: str = ""
    overrides: tuple[str, ...] = ()


def _split_top(text: str) -> list[str]:
    """Split at commas outside brackets/braces (so ``[1,2],[3,4]`` is two values)."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += ch in "[{"
        depth -= ch in "]}"
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p.strip() for p in parts]


def parse_grid(option: str) -> tuple[str, list[str]]:
    """``"KEY=V1,V2"`` -> ``("KEY", ["V1", "V2"])``; values stay text (YAML-parsed later)."""
    key, sep, values = option.partition("=")
    key = key.strip()
    if not sep or not key:
        raise DffError(f"--grid {option}: expected KEY=V1,V2,..., e.g. aggregate.params.sigma=1,2")
    parts = _split_top(values)
    if any(not p for p in parts):
        raise DffError(f"--grid {option}: an empty value; give values separated by commas")
    if len(set(parts)) != len(parts):
        raise DffError(f"--grid {option}: a value is listed twice")
    return key, parts


def pipeline_variants(
    pipelines: Sequence[str | Path],
    overrides: Sequence[str] = (),
    grid: Sequence[str] = (),
) -> list[PipelineVariant]:
    """Validated variants of pipeline files or built-in names (before anything runs).

    Parameters
    ----------
    pipelines : sequence of str or Path
        Pipeline files or built-in names; a variant is named after the file's stem
        (``-2``, ``-3`` ... when two share a stem).
    overrides : sequence of str
        ``KEY=VALUE`` assignments (``--set``) applied to every pipeline.
    grid : sequence of str
        ``KEY=V1,V2,...`` options (``--grid``): the one pipeline given is expanded into one
        variant per combination (cartesian product), named ``name[KEY=V1,KEY2=W1]``.

    Returns
    -------
    list of PipelineVariant
        Raises :class:`DffError` (or :class:`~dffcore.errors.SpecError`) for an unknown
        pipeline, a bad assignment or a spec that does not validate.
    """
    if not pipelines:
        raise DffError("name at least one pipeline (a YAML file or a built-in name)")
    axes = [parse_grid(g) for g in grid]
    keys = [k for k, _ in axes]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise DffError(f"--grid {dup}: given twice; list all its values in one --grid")
    if axes and len(pipelines) != 1:
        raise DffError(
            f"--grid expands one pipeline into variants, but {len(pipelines)} are named "
            f"({', '.join(str(p) for p in pipelines)}); name exactly one"
        )
    variants: list[PipelineVariant] = []
    used: set[str] = set()
    for item in pipelines:
        path = find_pipeline(item)
        base = _unique(Path(str(item)).stem, used)
        combos = itertools.product(*[[f"{k}={v}" for v in vals] for k, vals in axes])
        for combo in combos:
            sets = (*overrides, *combo)
            name = f"{base}[{','.join(combo)}]" if combo else base
            spec = load_spec(path, list(sets))
            variants.append(PipelineVariant(name, spec, str(path), tuple(sets)))
    return variants


def _unique(name: str, used: set[str]) -> str:
    out, k = name, 2
    while out in used:
        out, k = f"{name}-{k}", k + 1
    used.add(out)
    return out


# -- stacks ----------------------------------------------------------------------
@dataclass(frozen=True)
class StackSource:
    """A stack to compare on: ``name``, a JSON ``identity`` (part of the cache key) and
    ``load()`` returning the :class:`~dffcore.datasets.Sample` (frames + ground truth)."""

    name: str
    identity: dict[str, Any]
    load: Callable[[], Sample] = field(repr=False, compare=False)
    description: str = ""


def parse_size(text: str) -> tuple[int, int]:
    """``"240x320"`` -> ``(240, 320)`` (height, width)."""
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
    """Synthetic stacks rendered in memory by :func:`dffcore.synth.render_stack`.

    ``scenes`` is a list of scene names or one comma-separated string; ``all`` means every
    scene of :data:`dffcore.synth.SCENES`. Each stack is named after its scene.
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
    """The samples of a dataset (:func:`dffcore.datasets.open_dataset`), the first
    ``limit`` of them; no frame is read until a sample is loaded."""
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
            "files": _fingerprint(sample_files(root, ds.kind, name)),
        }
        about = f"{ds.kind} sample '{name}' of {ds.root}"
        out.append(StackSource(name, identity, functools.partial(ds.load, name), about))
    return out


def _fingerprint(paths: Sequence[Path]) -> list[list[Any]]:
    out = []
    for p in paths:
        st = p.stat()
        out.append([f"{p.parent.name}/{p.name}", st.st_size, st.st_mtime_ns])
    return out


# -- scoring ---------------------------------------------------------------------
def score(run: Run, sample: Sample) -> dict[str, float]:
    """Every score of a :class:`~dffcore.runner.Run` against ``sample``'s ground truth
    (the keys of the module docstring), in the run's output grid."""
    crop, index, n = run.crop, run.result.index, run.stack.n
    out: dict[str, float] = {}
    if sample.truth_index is not None:
        truth = to_output_grid(sample.truth_index, crop)
        out.update({f"slice.{k}": v for k, v in evaluate_index(index, truth).items()})
        t = truth[np.isfinite(truth)]
        out["slice.outside_sweep"] = float(((t < 0) | (t > n - 1)).mean()) if t.size else math.nan
    if sample.truth_disparity is not None and sample.focus_kind == "disparity":
        truth = to_output_grid(sample.truth_disparity, crop)
        pred = index_to_disparity(index, sample.focus_values)
        out["disparity.mse"] = mse(pred, truth)
        out["disparity.rmse"] = math.sqrt(out["disparity.mse"])
        out["disparity.bump"] = bumpiness(pred, truth)
    depth = run.result.depth
    if sample.truth_depth is not None and depth is not None:  # the runner's depth is metres
        truth = to_output_grid(sample.truth_depth, crop)
        out.update({f"depth.{k}": v for k, v in evaluate_depth(depth, truth).items()})
    aif = run.result.all_in_focus
    if sample.all_in_focus is not None and aif is not None:
        truth = to_output_grid(sample.all_in_focus, crop)
        if aif.shape == truth.shape:
            if aif.dtype != truth.dtype:
                aif, truth = to_float32(aif), to_float32(truth)
            peak = np.iinfo(truth.dtype).max if truth.dtype.kind in "ui" else 1.0
            out["aif.psnr"] = psnr(aif, truth, peak=float(peak))
            if min(truth.shape[:2]) >= 11:
                out["aif.ssim"] = ssim(aif, truth)
        else:
            logger.warning("all-in-focus %s vs truth %s: not scored", aif.shape, truth.shape)
    return out


def index_to_disparity(index: np.ndarray, focus: Sequence[float] | np.ndarray) -> np.ndarray:
    """Fractional slice index -> disparity: linear interpolation of the slices' focus
    disparities (``np.interp`` over the slice index; the ends hold outside the sweep)."""
    focus = np.asarray(focus, np.float64)
    return np.interp(index, np.arange(focus.size), focus).astype(np.float32)


# -- the comparison -------------------------------------------------------------
def cache_key(spec: PipelineSpec, identity: dict[str, Any]) -> str:
    """Name of the cache entry of ``spec`` on the stack with ``identity``."""

    data = {
        "format": CACHE_FORMAT,
        "dffcore": __version__,
        "spec": spec.spec_hash(),
        "stack": identity,
    }
    return _hash(data)


def _hash(data: Any) -> str:
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


class _StackState:
    """One stack during a comparison: its sample (loaded at most once, on demand) and the
    ground truth the figures need (cached in ``cache/stack-<key>/``)."""

    def __init__(self, source: StackSource, cache: Path) -> None:

        self.source = source
        self.dir = cache / f"stack-{_hash({'v': __version__, 'stack': source.identity})}"
        self._sample: Sample | None = None
        self._error: Exception | None = None

    def sample(self) -> Sample:
        if self._error is not None:
            raise self._error
        if self._sample is None:
            try:
                self._sample = self.source.load()
            except Exception as exc:
                self._error = exc
                raise
        return self._sample

    def truth(self) -> dict[str, Any] | None:
        """``{"info", "display", "aif"}``: the display map (disparity or index) in the
        reference grid and the true all-in-focus image, from the loaded sample, else from
        the cache, else by loading the sample; None when the stack cannot be read."""
        if self._sample is None and self._error is None:
            try:
                info = json.loads((self.dir / "truth.json").read_text(encoding="utf-8"))
                return self._read_truth(info)
            except (OSError, ValueError, KeyError, TypeError):
                pass
        try:
            sample = self.sample()
        except Exception:
            return None
        return self._write_truth(sample)

    def _read_truth(self, info: dict[str, Any]) -> dict[str, Any] | None:
        display = None
        if info["display"] is not None:
            display = np.load(self.dir / "display.npy", allow_pickle=False)
        aif = read_image(self.dir / "all_in_focus.png") if info["aif"] else None
        return {"info": info, "display": display, "aif": aif}

    def _write_truth(self, sample: Sample) -> dict[str, Any]:
        self.dir.mkdir(parents=True, exist_ok=True)
        disparity = sample.truth_disparity is not None and sample.focus_kind == "disparity"
        display = sample.truth_disparity if disparity else sample.truth_index
        info = {
            "stack": self.source.name,
            "frames": sample.stack.n,
            "shape": list(sample.stack.shape),
            "display": None if display is None else ("disparity" if disparity else "index"),
            "focus": None if sample.focus_values is None else sample.focus_values.tolist(),
            "ground_truth": [
                k
                for k, v in (
                    ("index", sample.truth_index),
                    ("disparity", sample.truth_disparity),
                    ("depth", sample.truth_depth),
                    ("all_in_focus", sample.all_in_focus),
                )
                if v is not None
            ],
            "aif": sample.all_in_focus is not None,
        }
        if display is not None:
            write_npy(self.dir / "display.npy", np.asarray(display, np.float32))
        if sample.all_in_focus is not None:
            write_image(self.dir / "all_in_focus.png", _storable(sample.all_in_focus))
        text = json.dumps(info, indent=1) + "\n"
        atomic_write_bytes(self.dir / "truth.json", text.encode("utf-8"))
        return {"info": info, "display": display, "aif": sample.all_in_focus}


def _storable(image: np.ndarray) -> np.ndarray:
    if image.dtype in (np.uint8, np.uint16):
        return image
    return np.clip(to_float32(image) * 65535 + 0.5, 0, 65535).astype(np.uint16)


def _one_line(exc: BaseException) -> str:
    text = "; ".join(s.strip() for s in str(exc).splitlines() if s.strip())
    if isinstance(exc, DffError):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _read_entry(entry: Path) -> dict[str, Any] | None:
    try:
        row = json.loads((entry / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(row, dict) or row.get("status") != "done":
        return None
    if not all((entry / f).is_file() for f in ("depth_index.npy", "all_in_focus.png")):
        return None
    return row


def _compute(variant: PipelineVariant, state: _StackState, entry: Path, key: str) -> dict[str, Any]:
    from dffcore.run.engine import run_pipeline

    row: dict[str, Any] = {"status": "failed", "error": "", "cache": f"cache/{key}"}
    try:
        sample = state.sample()
        run = run_pipeline(variant.spec, sample.stack)
        metrics = score(run, sample)
    except Exception as exc:  # recorded; the other runs go on
        row["error"] = _one_line(exc)
        logger.warning("%s on %s: failed: %s", variant.name, state.source.name, row["error"])
        return row
    row.update(
        status="done",
        seconds=run.seconds,
        peak_rss_mb=max((r.peak_rss_mb for r in run.records), default=math.nan),
        stages=[
            {"stage": r.stage, "name": r.name, "seconds": r.seconds, "peak_rss_mb": r.peak_rss_mb}
            for r in run.records
        ],
        frames=run.stack.n,
        shape=list(run.result.index.shape),
        crop=None if run.crop is None else [int(v) for v in run.crop],
        spec_hash=variant.spec.spec_hash(),
        metrics=metrics,
    )
    entry.mkdir(parents=True, exist_ok=True)
    (entry / "metrics.json").unlink(missing_ok=True)  # incomplete until written again
    write_npy(entry / "depth_index.npy", run.result.index)
    write_image(entry / "all_in_focus.png", _storable(run.result.all_in_focus))
    text = json.dumps(row, indent=1) + "\n"
    atomic_write_bytes(entry / "metrics.json", text.encode("utf-8"))
    return row


def compare(
    pipelines: Sequence[PipelineVariant],
    stacks: Sequence[StackSource],
    out: str | Path,
    *,
    force: bool = False,
    progress: ProgressCallback | None = None,
) -> list[dict[str, Any]]:
    """Run every variant on every stack, score, cache and write the report folder.

    Parameters
    ----------
    pipelines : sequence of PipelineVariant
        From :func:`pipeline_variants`; names must be unique.
    stacks : sequence of StackSource
        From :func:`synthetic_stacks` or :func:`dataset_stacks`; names must be unique.
    out : str or Path
        The report folder (created): ``report.md``, ``report.html``, ``results.csv``,
        ``results.json``, the figures and ``cache/``.
    force : bool
        Recompute entries already in the cache.
    progress : callable, optional
        ``progress("compare", done, total)`` after each run (cached ones included).

    Returns
    -------
    list of dict
        One row per (stack, variant), stacks outer: ``pipeline``, ``stack``, ``status``
        (``done`` or ``failed``), ``cached``, ``error``, ``seconds``, ``peak_rss_mb``,
        ``stages``, ``frames``, ``shape``, ``crop``, ``metrics`` (see the module doc).
    """
    from dffcore.io.outputs import prepare_output_dir

    if not pipelines or not stacks:
        raise DffError("compare needs at least one pipeline and one stack")
    for what, names in (
        ("pipeline", [p.name for p in pipelines]),
        ("stack", [s.name for s in stacks]),
    ):
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise DffError(f"two {what}s are named '{dup}'; names must be unique")
    for source in stacks:  # a report inside a dataset folder would become a sample of it
        data = source.identity.get("path")
        if data and Path(data).is_dir() and Path(out).resolve().is_relative_to(data):
            raise DffError(
                f"{out}: the report folder is inside the dataset {data}; choose a folder outside it"
            )
    root = prepare_output_dir(out)
    cache = root / "cache"
    cache.mkdir(exist_ok=True)
    total, done = len(pipelines) * len(stacks), 0
    rows: list[dict[str, Any]] = []
    figures: dict[str, list[str]] = {}
    truths: dict[str, dict[str, Any] | None] = {}
    stems: set[str] = set()
    for source in stacks:
        state = _StackState(source, cache)
        stack_rows = []
        for variant in pipelines:
            key = cache_key(variant.spec, source.identity)
            entry = cache / key
            row = None if force else _read_entry(entry)
            cached = row is not None
            if row is None:
                row = _compute(variant, state, entry, key)
            row.update(
                pipeline=variant.name,
                stack=source.name,
                cached=cached,
                pipeline_file=variant.source,
                overrides=list(variant.overrides),
            )
            logger.info(
                "%s on %s: %s", variant.name, source.name, "cached" if cached else row["status"]
            )
            stack_rows.append(row)
            done += 1
            if progress is not None:
                progress("compare", done, total)
        truth = state.truth()
        truths[source.name] = truth
        stem = _unique(re.sub(r"[^A-Za-z0-9._-]+", "_", source.name).strip("._") or "stack", stems)
        figures[source.name] = draw_figures(root, stem, source.name, truth, stack_rows)
        rows.extend(stack_rows)
    write_report(root, pipelines, stacks, rows, truths, figures)
    return rows


# -- figures ---------------------------------------------------------------------
def edge_crop(truth: np.ndarray, size: int = CROP_SIZE) -> tuple[int, int, int, int]:
    """``(x, y, w, h)``: a ``size`` x ``size`` box (the image, if smaller) centred on the
    strongest depth edge of ``truth`` (largest gradient magnitude; NaN has no gradient),
    kept inside the image; the centre of the image when ``truth`` has no edge."""
    h, w = truth.shape
    cw, ch = min(size, w), min(size, h)
    gy, gx = np.gradient(np.asarray(truth, np.float64))
    mag = np.nan_to_num(np.hypot(gx, gy), nan=0.0)
    if mag.max() > 0:
        y, x = np.unravel_index(int(np.argmax(mag)), mag.shape)
    else:
        y, x = h // 2, w // 2
    x0 = int(np.clip(x - cw // 2, 0, w - cw))
    y0 = int(np.clip(y - ch // 2, 0, h - ch))
    return x0, y0, cw, ch


def _paste(arr: np.ndarray, crop: Sequence[int] | None, shape: Sequence[int], fill: float):
    """A result in its (possibly cropped) grid, placed in the full reference grid."""
    if crop is None and tuple(arr.shape[:2]) == tuple(shape):
        return arr.astype(np.float32)
    full = np.full((*shape, *arr.shape[2:]), fill, np.float32)
    x, y = (crop or (0, 0))[:2]
    h, w = arr.shape[:2]
    full[y : y + h, x : x + w] = arr
    return full


def _panels_figure(
    panels: Sequence[tuple[str, np.ndarray | None]],
    cmap: Any,
    vmin: float,
    vmax: float,
    label: str,
    extend: str = "neither",
) -> bytes:
    """Titled image panels, up to 4 a row, with one colour bar (``cmap`` None: RGB images
    in [0, 1], no bar); a None panel is a grey "failed" placeholder. PNG bytes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = len(panels)
    cols = min(n, 4)
    rows = -(-n // cols)
    shape = next(p.shape for _, p in panels if p is not None)
    h, w = shape[:2]
    pw = 2.6  # inches per panel
    fig = Figure(
        figsize=(pw * cols + (0.9 if cmap else 0.1), (pw * h / w + 0.35) * rows),
        layout="constrained",
    )
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    image = None
    for ax, (title, data) in itertools.zip_longest(axes.ravel(), panels, fillvalue=(None, None)):
        ax.set_axis_off()
        if title is None:
            continue
        ax.set_title(title, fontsize=8)
        if data is None:
            data = np.full(shape, np.nan if cmap else 0.85, np.float32)
            ax.text(0.5, 0.5, "failed", ha="center", va="center", transform=ax.transAxes)
        if cmap is None:
            ax.imshow(data, interpolation="nearest")
        else:
            image = ax.imshow(data, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    if image is not None:
        fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.9, label=label, extend=extend)
    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=FIGURE_DPI)
    return buf.getvalue()


def draw_figures(
    root: Path,
    stem: str,
    stack_name: str,
    truth: dict[str, Any] | None,
    rows: Sequence[dict[str, Any]],
) -> list[str]:
    """Write ``depth_<stem>.png``, ``error_<stem>.png`` and ``aif_<stem>.png`` for one
    stack (those that have something to show); returns the file names written."""
    import matplotlib

    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="0.85")
    hot = matplotlib.colormaps["magma"].with_extremes(bad="0.85")
    info = truth["info"] if truth else None
    display = truth["display"] if truth else None
    kind = info["display"] if info else None
    shape = info["shape"] if info else None
    preds: list[tuple[str, np.ndarray | None, dict[str, Any]]] = []
    for row in rows:
        pred = None
        if row["status"] == "done":
            entry = root / row["cache"]
            index = np.load(entry / "depth_index.npy", allow_pickle=False)
            if kind == "disparity":
                index = index_to_disparity(index, info["focus"])
            pred = _paste(index, row.get("crop"), shape or index.shape, np.nan)
        preds.append((row["pipeline"], pred, row))
    if shape is None:
        shape = next((p.shape for _, p, _ in preds if p is not None), None)
    if shape is None:
        return []  # the stack never loaded: nothing to draw
    label = "disparity (px)" if kind == "disparity" else "slice index"
    written: list[str] = []

    def save(name: str, data: bytes) -> None:
        atomic_write_bytes(root / name, data)
        written.append(name)

    maps = ([("ground truth", display)] if display is not None else []) + [
        (n, p) for n, p, _ in preds
    ]
    finite = [m[np.isfinite(m)] for _, m in maps if m is not None]
    finite = [f for f in finite if f.size]
    vmin = min(float(f.min()) for f in finite) if finite else 0.0
    vmax = max(float(f.max()) for f in finite) if finite else 1.0
    if finite:
        save(f"depth_{stem}.png", _panels_figure(maps, cmap, vmin, max(vmax, vmin + 1e-6), label))
    if display is not None and any(p is not None for _, p, _ in preds):
        errors = [(n, None if p is None else np.abs(p - display)) for n, p, _ in preds]
        values = np.concatenate([e[np.isfinite(e)] for _, e in errors if e is not None])
        top = float(np.percentile(values, 99)) if values.size else 1.0
        save(
            f"error_{stem}.png",
            _panels_figure(errors, hot, 0.0, max(top, 1e-6), f"|error|, {label}", "max"),
        )
    x, y, w, h = edge_crop(display) if display is not None else edge_crop(np.zeros(shape))
    crops = []
    if truth is not None and truth["aif"] is not None:
        crops.append(("ground truth", _rgb01(truth["aif"])[y : y + h, x : x + w]))
    for name, _, row in preds:
        img = None
        if row["status"] == "done":
            aif = _rgb01(read_image(root / row["cache"] / "all_in_focus.png"))
            img = _paste(aif, row.get("crop"), shape, 0.85)[y : y + h, x : x + w]
        crops.append((name, img))
    if any(c is not None for _, c in crops):
        save(f"aif_{stem}.png", _panels_figure(crops, None, 0, 1, ""))
    logger.info("figures of %s: %s", stack_name, ", ".join(written))
    return written


def _rgb01(image: np.ndarray) -> np.ndarray:
    img = np.clip(to_float32(image), 0, 1)
    return np.repeat(img, 3, axis=2) if img.ndim == 3 and img.shape[2] == 1 else img


# -- the report ------------------------------------------------------------------
def metric_info(key: str) -> tuple[str, str | None]:
    """(description, ``"lower"``/``"higher"`` is better or None) of a row column key."""
    if key in PERFORMANCE:
        return PERFORMANCE[key]
    if key in _INFO:
        return _INFO[key]
    return METRIC_INFO.get(key.split(".", 1)[-1], (key, None))


def _value(row: dict[str, Any], key: str) -> float:
    v = row.get(key) if key in PERFORMANCE else row.get("metrics", {}).get(key)
    return float(v) if isinstance(v, (int, float)) and row["status"] == "done" else math.nan


def _fmt(v: float) -> str:
    if not math.isfinite(v):
        return "–"
    return f"{v:.4g}"


def _table(
    key: str, pipelines: Sequence[str], stacks: Sequence[str], rows: Sequence[dict[str, Any]]
) -> tuple[list[str], list[list[str]], list[list[bool]]]:
    """Header, cells and bold flags of one metric's table (rows = pipelines)."""
    by = {(r["pipeline"], r["stack"]): r for r in rows}
    values = np.array([[_value(by[p, s], key) for s in stacks] for p in pipelines], np.float64)
    with np.errstate(invalid="ignore"):
        means = values.mean(axis=1)  # NaN when any stack is missing
    full = np.concatenate([values, means[:, None]], axis=1)
    better = metric_info(key)[1]
    bold = np.zeros(full.shape, bool)
    for j in range(full.shape[1]):
        col = full[:, j]
        if better and np.isfinite(col).any() and len(pipelines) > 1:
            best = np.nanmin(col) if better == "lower" else np.nanmax(col)
            bold[:, j] = col == best
    cells = []
    for i, p in enumerate(pipelines):
        line = [p]
        for j in range(full.shape[1]):
            failed = j < len(stacks) and by[p, stacks[j]]["status"] == "failed"
            line.append("failed" if failed else _fmt(full[i, j]))
        cells.append(line)
    return ["pipeline", *stacks, "mean"], cells, bold.tolist()


#: the headline metrics of the summary table, when the stacks have what they need
SUMMARY_KEYS = (
    "slice.mae",
    "slice.bad_1",
    "disparity.mse",
    "disparity.bump",
    "depth.rmse",
    "depth.abs_rel",
    "aif.psnr",
    "seconds",
    "peak_rss_mb",
)


def _summary(
    pipelines: Sequence[str], stacks: Sequence[str], rows: Sequence[dict[str, Any]]
) -> tuple[list[str], list[list[str]], list[list[bool]]]:
    """One row per pipeline, one column per headline metric: its mean over the stacks."""
    keys = [k for k in SUMMARY_KEYS if _present(k, rows)]
    columns = [_table(k, pipelines, stacks, rows) for k in keys]
    cells = [[p] + [col[1][i][-1] for col in columns] for i, p in enumerate(pipelines)]
    bold = [[col[2][i][-1] for col in columns] for i in range(len(pipelines))]
    return ["pipeline", *keys], cells, bold


def _present(key: str, rows: Sequence[dict[str, Any]]) -> bool:
    return any(math.isfinite(_value(r, key)) for r in rows)


def _blocks(pipelines, stacks, rows, truths, figures) -> list[tuple]:
    """The report as blocks: ("h", level, text), ("p", text), ("list", items),
    ("table", header, cells, bold), ("img", [files])."""

    pnames = [p.name for p in pipelines]
    snames = [s.name for s in stacks]
    count = {"computed": 0, "cached": 0, "failed": 0}
    for r in rows:
        count["failed" if r["status"] == "failed" else "cached" if r["cached"] else "computed"] += 1
    created = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    blocks: list[tuple] = [
        ("h", 1, "dff compare report"),
        (
            "p",
            f"Created {created} by dffcore {__version__}: {len(pnames)} pipelines × "
            f"{len(snames)} stacks, {count['computed']} runs computed, {count['cached']} "
            f"from the cache, {count['failed']} failed.",
        ),
        ("h", 2, "Stacks"),
    ]
    stack_cells = []
    for s in stacks:
        info = (truths.get(s.name) or {}).get("info") or {}
        size = f"{info['shape'][1]}x{info['shape'][0]}" if info.get("shape") else "–"
        gt = ", ".join(info.get("ground_truth", [])) or "–"
        stack_cells.append([s.name, s.description, str(info.get("frames", "–")), size, gt])
    blocks.append(
        ("table", ["stack", "source", "frames", "size", "ground truth"], stack_cells, None)
    )
    blocks.append(("h", 2, "Pipelines"))
    pipe_cells = [
        [p.name, p.source, p.spec.spec_hash(), " ".join(p.overrides) or "–"] for p in pipelines
    ]
    blocks.append(("table", ["pipeline", "file", "spec hash", "overrides"], pipe_cells, None))
    blocks.append(("h", 2, "Summary"))
    blocks.append(
        (
            "p",
            "Means over the stacks (best in bold); the sections below define each "
            "metric and give every stack's value.",
        )
    )
    blocks.append(("table", *_summary(pnames, snames, rows)))
    for group, title, keys in GROUPS:
        present = [f"{group}.{k}" for k in keys if _present(f"{group}.{k}", rows)]
        if not present:
            continue
        blocks.append(("h", 2, title))
        for key in present:
            desc, better = metric_info(key)
            note = f", {better} is better" if better else ""
            blocks.append(("h", 3, f"{key.split('.', 1)[1]}: {desc}{note}"))
            blocks.append(("table", *_table(key, pnames, snames, rows)))
    blocks.append(("h", 2, "Time and memory"))
    for key, (desc, better) in PERFORMANCE.items():
        blocks.append(("h", 3, f"{key}: {desc}, {better} is better"))
        blocks.append(("table", *_table(key, pnames, snames, rows)))
    failures = [r for r in rows if r["status"] == "failed"]
    if failures:
        blocks.append(("h", 2, "Failures"))
        cells = [[r["pipeline"], r["stack"], r["error"]] for r in failures]
        blocks.append(("table", ["pipeline", "stack", "error"], cells, None))
    if any(figures.values()):
        blocks.append(("h", 2, "Figures"))
        blocks.append(
            (
                "p",
                "Depth: ground truth and each pipeline on one colour scale (grey: "
                "no data, e.g. outside an aligner's crop). Error: |prediction − "
                "truth| on one scale, capped at the 99th percentile of all errors. "
                "All-in-focus: a 128×128 crop around the strongest depth edge of "
                "the ground truth.",
            )
        )
        for s in snames:
            if figures.get(s):
                blocks.append(("h", 3, s))
                blocks.append(("img", figures[s]))
    blocks.append(("h", 2, "Protocol"))
    blocks.append(("list", list(PROTOCOL)))
    return blocks


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _markdown(blocks: list[tuple]) -> str:
    out: list[str] = []
    for b in blocks:
        if b[0] == "h":
            out += ["#" * b[1] + " " + b[2], ""]
        elif b[0] == "p":
            out += [b[1], ""]
        elif b[0] == "list":
            out += [f"- {item}" for item in b[1]] + [""]
        elif b[0] == "table":
            _, header, cells, bold = b
            out.append("| " + " | ".join(_md_cell(h) for h in header) + " |")
            out.append("|" + "---|" * len(header))
            for i, line in enumerate(cells):
                shown = [
                    f"**{_md_cell(c)}**" if bold and j and bold[i][j - 1] else _md_cell(c)
                    for j, c in enumerate(line)
                ]
                out.append("| " + " | ".join(shown) + " |")
            out.append("")
        elif b[0] == "img":
            out += [" ".join(f"![{Path(f).stem}]({f})" for f in b[1]), ""]
    return "\n".join(out)


_CSS = (
    "body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}"
    "table{border-collapse:collapse;margin:0.5em 0 1.5em}"
    "th,td{border:1px solid #bbb;padding:3px 8px;text-align:right}"
    "th{background:#eee}td:first-child,th:first-child{text-align:left}"
    "img{max-width:100%;display:block;margin:0.5em 0}h3{font-size:1em;margin-bottom:0.2em}"
)


def _html(blocks: list[tuple]) -> str:
    e = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>dff compare report</title>",
        f"<style>{_CSS}</style></head><body>",
    ]
    for b in blocks:
        if b[0] == "h":
            out.append(f"<h{b[1]}>{e(b[2])}</h{b[1]}>")
        elif b[0] == "p":
            out.append(f"<p>{e(b[1])}</p>")
        elif b[0] == "list":
            out.append("<ul>" + "".join(f"<li>{e(i)}</li>" for i in b[1]) + "</ul>")
        elif b[0] == "table":
            _, header, cells, bold = b
            out.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>")
            for i, line in enumerate(cells):
                tds = [
                    f"<td><b>{e(c)}</b></td>"
                    if bold and j and bold[i][j - 1]
                    else f"<td>{e(c)}</td>"
                    for j, c in enumerate(line)
                ]
                out.append("<tr>" + "".join(tds) + "</tr>")
            out.append("</table>")
        elif b[0] == "img":
            out += [f'<img src="{e(f)}" alt="{e(Path(f).stem)}">' for f in b[1]]
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _clean(value: Any) -> Any:
    """JSON-ready: NaN and infinities become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _csv(rows: Sequence[dict[str, Any]]) -> str:
    metric_keys = [f"{g}.{k}" for g, _, keys in GROUPS for k in keys]
    metric_keys = [k for k in metric_keys if any(k in r.get("metrics", {}) for r in rows)]
    stage_keys: list[str] = []
    for r in rows:
        for st in r.get("stages", []):
            for what in ("seconds", "peak_rss_mb"):
                k = f"{what}.{st['stage']}"
                if k not in stage_keys:
                    stage_keys.append(k)
    head = [
        "pipeline",
        "stack",
        "status",
        "cached",
        "seconds",
        "peak_rss_mb",
        "frames",
        "height",
        "width",
        "crop",
        "spec_hash",
    ]
    buf = _io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([*head, *metric_keys, *stage_keys, "error"])
    for r in rows:
        shape = r.get("shape") or [None, None]
        crop = r.get("crop")
        base = [
            r["pipeline"],
            r["stack"],
            r["status"],
            r["cached"],
            r.get("seconds"),
            r.get("peak_rss_mb"),
            r.get("frames"),
            shape[0],
            shape[1],
            " ".join(map(str, crop)) if crop else "",
            r.get("spec_hash", ""),
        ]
        stages = {
            f"{w}.{s['stage']}": s[w]
            for s in r.get("stages", [])
            for w in ("seconds", "peak_rss_mb")
        }
        values = [
            *base,
            *(r.get("metrics", {}).get(k) for k in metric_keys),
            *(stages.get(k) for k in stage_keys),
            r.get("error", ""),
        ]
        writer.writerow(["" if v is None or v != v else v for v in values])
    return buf.getvalue()


def write_report(
    root: Path,
    pipelines: Sequence[PipelineVariant],
    stacks: Sequence[StackSource],
    rows: Sequence[dict[str, Any]],
    truths: dict[str, dict[str, Any] | None],
    figures: dict[str, list[str]],
) -> list[Path]:
    """Write ``report.md``, ``report.html``, ``results.csv`` and ``results.json``."""

    blocks = _blocks(pipelines, stacks, rows, truths, figures)
    created = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    results = {
        "created": created,
        "dffcore": __version__,
        "pipelines": [
            {
                "name": p.name,
                "file": p.source,
                "overrides": list(p.overrides),
                "spec_hash": p.spec.spec_hash(),
                "spec": p.spec.to_dict(),
            }
            for p in pipelines
        ],
        "stacks": [{"name": s.name, "description": s.description} for s in stacks],
        "rows": list(rows),
    }
    files = {
        "report.md": _markdown(blocks),
        "report.html": _html(blocks),
        "results.csv": _csv(rows),
        "results.json": json.dumps(_clean(results), indent=1) + "\n",
    }
    for name, text in files.items():
        atomic_write_bytes(root / name, text.encode("utf-8"))
    return [root / n for n in files]
