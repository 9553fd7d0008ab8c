"""Write a run's results to an output folder (the output contract), atomically.

An output folder always holds one consistent run. :func:`write_outputs` writes every
file into a fresh folder of the same name inside a hidden sibling
``.OUT.dff-tmp-<pid>-<start time>/OUT`` (same parent), ``run.json`` last, then swaps it
in: the old folder is renamed aside (``.OUT.dff-old-<pid>-<start time>``), the new one
renamed into place, the old one deleted. Files an earlier run wrote and this one does not
(``depth.npy`` of a run with focus distances, ``points.ply``, temporary ``.*.tmp`` files
of killed writers) are therefore gone, and a run killed half-way leaves the earlier
folder untouched. Hidden siblings left by dead runs are removed by the next run into the
same folder (:mod:`dffcore.run.scratch`); a dead run's renamed-aside old folder is put
back when the output folder is missing.

Files you put in an output folder yourself are kept: every entry that is not a file of
the output contract (:data:`CONTRACT`), not listed by the old ``run.json`` and not a
temporary ``.NAME.*.tmp`` file of one of those (:func:`foreign_files`) is moved into the
new folder right after the swap (also by the next run when a run was killed between the
swap and the move). A file of yours named like an output (``depth.png``) is replaced.

16-bit PNGs state their scale in a PNG ``tEXt`` chunk with the keyword
:data:`PNG_SCALE_KEY` (``dffcore:scale``): ``depth.png`` the index mapping,
``depth_metres.png`` (written when focus distances give metric depth) ``1 unit = 1 mm``.
A microscope z-stack (focus unit ``"z"``) gets ``height.tif`` instead of
``depth_metres.png``: float32 micrometres that Fiji opens calibrated
(:mod:`dffcore.io.heightmap`).
"""

from __future__ import annotations

import datetime as _dt
import errno
import functools
import json
import math
import os
import platform
import re
import shutil
from concurrent.futures import Future, ThreadPoolExecutor
from importlib import metadata
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from dffcore.core.data import FocalStack
from dffcore.core.errors import DffError
from dffcore.io.heightmap import HEIGHT_TIF, HEIGHT_TIF_MEANING, write_height_tif
from dffcore.io.identity import file_identity
from dffcore.io.images import atomic_write_bytes, write_image, write_npy, write_png_text
from dffcore.io.pointcloud import (
    lateral_pixel_size,
    point_cloud_problem,
    stack_point_cloud,
    write_ply,
)
from dffcore.ops.convert import to_storable
from dffcore.run.engine import Run
from dffcore.run.scratch import is_dead, process_tag, sweep

INDEX_MEANING = (
    "fractional index into the frames in the order they were read "
    "(0 = first frame: natural sort of file names, reversed if requested), "
    "in the reference frame's pixel grid (offset by `crop` when the aligner cropped)"
)
PNG_SCALE_KEY = "dffcore:scale"
DEPTH_METRES_SCALE = "1 unit = 1 mm"
DEPTH_METRES_PNG = "uint16 millimetres, 0 = unknown"
#: threads that encode and write the output files
WRITERS = min(4, os.cpu_count() or 1)
#: every file name a run (or ``dff demo``) may write into its output folder
CONTRACT = frozenset(
    {
        "run.json",
        "depth_index.npy",
        "confidence.npy",
        "depth.png",
        "depth_color.png",
        "confidence.png",
        "all_in_focus.png",
        "depth.npy",
        "depth_metres.png",
        HEIGHT_TIF,
        "points.ply",
        "summary.png",
    }
)


def _siblings(out: Path) -> re.Pattern[str]:
    """Names of the hidden siblings of ``out`` that runs write (``tmp``) or set aside
    (``old``)."""
    return re.compile(
        re.escape(f".{out.name}.dff-") + r"(?P<what>tmp|old)-(?P<pid>\d+)-(?P<start>\d+)"
    )


def _absolute(path: str | Path) -> Path:
    return Path(os.path.abspath(path))


def check_output_dir(path: str | Path) -> Path:
    """Check, before any work, that a run can write the output folder ``path``.

    The folder (and its parents) is created when missing, an existing one must be
    writable, and its parent too (a probe folder is created and removed: the outputs are
    swapped in there); hidden siblings of dead runs are removed (module docstring).

    Parameters
    ----------
    path : str or Path
        The output folder.

    Returns
    -------
    Path
        ``path`` as a Path.

    Raises
    ------
    DffError
        One line naming the path and what is wrong.
    """
    given = Path(path)
    out = _absolute(path)
    if out.exists() and not out.is_dir():
        raise DffError(f"{given}: the output folder is an existing file; name a folder")
    parent = out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DffError(f"{given}: cannot create the output folder: {exc.strerror or exc}") from None
    probe = parent / f".{out.name}.dff-probe-{process_tag()}"
    try:
        probe.mkdir()
        probe.rmdir()
    except OSError as exc:
        raise DffError(
            f"{parent}: cannot write the output folder {given.name} here: "
            f"{exc.strerror or exc}; choose a writable folder with -o"
        ) from None
    _recover(out)
    try:
        out.mkdir(exist_ok=True)
    except OSError as exc:
        raise DffError(f"{given}: cannot create the output folder: {exc.strerror or exc}") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise DffError(f"{given}: the output folder is read-only; choose another with -o")
    return given


def remove_leftovers(path: str | Path) -> None:
    """Clean up after runs into output folder ``path`` that were killed: put back a folder
    one set aside, remove their hidden siblings (``dff batch`` calls it for every stack at
    its end)."""
    _recover(_absolute(path))


def _recover(out: Path) -> None:
    """Put back an output folder a dead run set aside, and remove dead runs' siblings."""
    rx = _siblings(out)
    try:
        names = sorted(os.listdir(out.parent))
    except OSError:
        names = []
    for name in names:
        m = rx.fullmatch(name)
        if not (m and m["what"] == "old" and is_dead(int(m["pid"]), int(m["start"]))):
            continue
        try:
            if not out.exists():
                os.rename(out.parent / name, out)
            else:  # killed after the swap: the user's files are still in the old folder
                _move_foreign(out.parent / name, out)
        except OSError:
            continue
    sweep(out.parent, rx.pattern)


def _move_foreign(old: Path, new: Path) -> None:
    """Move the entries of ``old`` that no dffcore run wrote into ``new`` (none that
    ``new`` already has)."""
    for name in foreign_files(old):
        name = name.rstrip("/")
        if not (new / name).exists():
            os.rename(old / name, new / name)


def foreign_files(out: Path) -> list[str]:
    """Names in ``out`` that no dffcore run wrote: not listed by its ``run.json``, not in
    :data:`CONTRACT` and not a temporary file of one of those (sorted)."""
    known = set(CONTRACT)
    try:
        listed = json.loads((out / "run.json").read_text(encoding="utf-8")).get("outputs", [])
        known |= {str(n) for n in listed if isinstance(n, str)}
    except (OSError, ValueError, AttributeError):
        pass
    foreign = []
    for name in sorted(os.listdir(out)):
        path = out / name
        tmp = re.fullmatch(r"\.(.+)\.[^.]+\.tmp", name)
        if path.is_file() and (name in known or (tmp and tmp[1] in known)):
            continue
        foreign.append(name + ("/" if path.is_dir() else ""))
    return foreign


def depth_png(index: np.ndarray, n: int) -> np.ndarray:
    """16-bit depth image: value = index × 65535 / (N − 1)."""
    scale = 65535.0 / max(n - 1, 1)
    return np.clip(np.rint(index * scale), 0, 65535).astype(np.uint16)


def depth_png_mapping(n: int) -> str:
    """What a value of ``depth.png`` means (``run.json``'s ``depth_png`` and its tEXt chunk)."""
    return f"uint16 = round(index * 65535 / {max(n - 1, 1)})"


def depth_metres_png(depth_m: np.ndarray, confidence: np.ndarray | None = None) -> np.ndarray:
    """16-bit metric depth: uint16 millimetres = round(depth × 1000), 0 = unknown.

    Unknown means no depth (NaN, or <= 0 m) or, when ``confidence`` is given, confidence
    0. Depths are clipped to 1 .. 65535 mm, so the farthest representable depth is
    65.535 m (farther, infinity included, reads as 65.535 m) and a known depth never
    reads as 0.
    """
    d = np.asarray(depth_m, np.float64)
    known = d > 0  # False for NaN too
    if confidence is not None:
        known &= confidence > 0
    mm = np.clip(np.rint(np.where(known, d, 0.0) * 1000.0), 1, 65535)
    return np.where(known, mm, 0).astype(np.uint16)


def colour_depth(index: np.ndarray, n: int) -> np.ndarray:
    """RGB colour-mapped depth (viridis, near = dark) with a colour bar and tick labels."""
    h, w = index.shape
    norm = np.clip(index / max(n - 1, 1), 0, 1)
    img = cv2.applyColorMap((norm * 255 + 0.5).astype(np.uint8), cv2.COLORMAP_VIRIDIS)
    bar_w, pad = max(12, w // 40), 6
    font, fs = cv2.FONT_HERSHEY_SIMPLEX, max(0.3, min(0.6, h / 700))
    text_w = int(cv2.getTextSize(f"{n - 1}", font, fs, 1)[0][0]) + 8
    canvas = np.full((h, w + pad + bar_w + text_w + pad, 3), 255, np.uint8)
    canvas[:, :w] = img
    m = min(max(8, h // 20), (h - 1) // 2)  # vertical margin for labels (none on tiny maps)
    ramp = np.linspace(0, 255, max(h - 2 * m, 1)).astype(np.uint8)[:, None]
    bar = cv2.applyColorMap(np.repeat(ramp, bar_w, axis=1), cv2.COLORMAP_VIRIDIS)
    x0 = w + pad
    canvas[m : m + bar.shape[0], x0 : x0 + bar_w] = bar
    ticks = sorted({0, (n - 1) // 2, n - 1}) if n > 1 else [0]
    for t in ticks:
        y = m + round(t / max(n - 1, 1) * (bar.shape[0] - 1))
        cv2.line(canvas, (x0 + bar_w, y), (x0 + bar_w + 3, y), (0, 0, 0), 1)
        cv2.putText(canvas, str(t), (x0 + bar_w + 5, y + 4), font, fs, (0, 0, 0), 1, cv2.LINE_AA)
    return cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB)


def side_by_side(images: list[np.ndarray], titles: list[str]) -> np.ndarray:
    """RGB uint8 panels in a row, each titled, for a quick look at a result."""
    h = max(im.shape[0] for im in images)
    font, fs = cv2.FONT_HERSHEY_SIMPLEX, max(0.4, h / 600)
    bar = int(28 * fs / 0.5)
    panels = []
    for im, title in zip(images, titles, strict=True):
        if im.ndim == 2 or im.shape[2] == 1:
            im = np.repeat(im.reshape(im.shape[0], im.shape[1], 1), 3, axis=2)
        pad = np.full((h + bar, im.shape[1] + 8, 3), 255, np.uint8)
        pad[bar : bar + im.shape[0], 4 : 4 + im.shape[1]] = im
        cv2.putText(pad, title, (6, int(bar * 0.7)), font, fs, (0, 0, 0), 1, cv2.LINE_AA)
        panels.append(pad)
    return np.concatenate(panels, axis=1)


def _versions(run: Run) -> dict[str, Any]:
    """Python, the packages dffcore runs on, and where each component of the run came
    from (the registry entry the spec was validated against)."""
    used = []
    for stage in run.spec.stages():
        src = stage.source
        used.append(
            {
                "stage": stage.path,
                "name": stage.name,
                "plugin": src.plugin,
                "distribution": src.distribution,
                "version": src.version,
            }
        )
    pkgs = {name: v for name in PACKAGES if (v := package_version(name)) is not None}
    return {"python": platform.python_version(), "packages": pkgs, "components": used}


#: the distributions whose versions ``run.json`` records
PACKAGES = (
    "dffcore",
    "numpy",
    "opencv-contrib-python-headless",
    "scikit-image",
    "pydantic",
    "gco-wrapper",
    "PyMaxflow",
)


@functools.cache
def package_version(name: str) -> str | None:
    """The installed version of distribution ``name``, or None when it is not installed.

    Read from the ``Version:`` line of its metadata file: ``importlib.metadata.version``
    parses the whole file (long descriptions included) with the e-mail parser, about
    1 ms a package."""
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return None
    text = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or ""
    found = re.search(r"^Version:[ \t]*(\S+)", text.partition("\n\n")[0], re.M)
    return found[1] if found else dist.version


def _input_files(stack: FocalStack) -> list[Path]:
    """The stack's frames and, when the distances came from one, its sidecar file."""
    source = stack.metadata.get("focus_distances_source")
    sidecar = [Path(source)] if source and source != "exif" and Path(source).is_file() else []
    return list(stack.paths) + sidecar


def run_record(
    run: Run,
    *,
    spec_file: str | None = None,
    reversed_: bool = False,
    read_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    stack, result = run.stack, run.result
    ref = run.reference
    return {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "spec_file": spec_file,
        "spec": run.spec.to_dict(),
        "versions": _versions(run),
        "stack": {
            "frames": [str(p) for p in stack.paths],
            "count": stack.n,
            "height": stack.shape[0],
            "width": stack.shape[1],
            "channels": int(stack.frames.shape[3]),
            "dtype": str(stack.frames.dtype),
            "reversed": reversed_,
            "read": read_options,
            "reader": stack.metadata.get("reader"),
            "focus_distances": None
            if stack.focus_distances is None
            else [float(d) for d in stack.focus_distances],
            "focus_unit": stack.focus_unit,
            "focus_distances_source": stack.metadata.get("focus_distances_source"),
            "pixel_size_m": None if (size := lateral_pixel_size(stack)) is None else list(size),
            "z_step_m": _finite(stack.metadata.get("z_step_m")),
            "files": file_identity(_input_files(stack)),
        },
        "reference_frame": ref,
        "crop": None if run.crop is None else dict(zip("xywh", run.crop, strict=True)),
        "reference_file": str(stack.paths[ref]) if ref < len(stack.paths) else None,
        "index_meaning": INDEX_MEANING,
        "depth_png": depth_png_mapping(stack.n),
        "plan": run.plan,
        "stages": [
            {
                "stage": r.stage,
                "name": r.name,
                "seconds": round(r.seconds, 4),
                "peak_rss_mb": None if r.peak_rss_mb is None else round(r.peak_rss_mb, 1),
            }
            for r in run.records
        ],
        "seconds_total": round(run.seconds, 4),
        "licences": run.notices,
        "alignment_summary": "" if run.alignment is None else run.alignment.summary,
        "alignment": [] if run.alignment is None else run.alignment.frame_records(),
        "unreliable_pixels": int((result.confidence == 0).sum()),
        "diagnostics": result.diagnostics,
        **_depth_record(run),
    }


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _depth_record(run: Run) -> dict[str, Any]:
    """``run.json``'s entries on metric depth: its unit and the file that shows it."""
    if run.result.depth is None:
        return {}
    if run.stack.focus_unit == "z":
        return {"depth_unit": "m", "height_tif": HEIGHT_TIF_MEANING}
    return {"depth_unit": "m", "depth_metres_png": DEPTH_METRES_PNG}


def write_outputs(
    run: Run,
    out_dir: str | Path,
    *,
    spec_file: str | None = None,
    reversed_: bool = False,
    point_cloud: bool = False,
    read_options: dict[str, Any] | None = None,
) -> list[Path]:
    """Write every file of the output contract; each file appears complete or not at all.

    With metric depth (the stack has focus distances) this adds ``depth.npy`` (metres,
    ``run.json``'s ``depth_unit``) and ``depth_metres.png`` (:func:`depth_metres_png`),
    or for a z-stack (focus unit ``"z"``) ``height.tif`` (micrometres,
    :mod:`dffcore.io.heightmap`). ``point_cloud`` adds ``points.ply``: every pixel with a
    depth and confidence > 0, coloured by the all-in-focus image, back-projected with
    :func:`dffcore.io.pointcloud.stack_intrinsics` or, for a z-stack, orthographic with
    its lateral pixel size (:func:`dffcore.io.pointcloud.stack_point_cloud`); it needs
    focus distances (and a z-stack its pixel size).

    The files are written into a hidden sibling folder and swapped in at the end (module
    docstring), so ``out_dir`` holds this run alone, or the earlier one if this run fails.
    A full disk or an unwritable folder is a :class:`DffError` naming the folder (and the
    approximate space needed). ``read_options`` (the reader options the stack was read
    with: ``frames``, ``reader``, ``read_params``) are recorded as ``run.json``'s
    ``stack.read``.
    """
    if point_cloud and (problem := point_cloud_problem(run.stack)) is not None:
        raise DffError(problem)
    given = check_output_dir(out_dir)
    final = _absolute(out_dir)
    wrapper = final.parent / f".{final.name}.dff-tmp-{process_tag()}"
    shutil.rmtree(wrapper, ignore_errors=True)
    try:
        (wrapper / final.name).mkdir(parents=True)  # same name: writers see .../OUT/file
        names = _write_all(
            run, wrapper / final.name, spec_file, reversed_, point_cloud, read_options
        )
        _swap(wrapper / final.name, final)
    except OSError as exc:
        raise _write_error(given, exc, run) from None
    finally:
        shutil.rmtree(wrapper, ignore_errors=True)
    return [given / name for name in names]


def _write_error(out: Path, exc: OSError, run: Run) -> DffError:
    """A one-line error for an OSError while writing the outputs of ``run`` to ``out``."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        h, w = run.result.index.shape
        need = h * w * (4 + 4 + 2 + 3 + 1) + run.result.all_in_focus.nbytes
        if run.result.depth is not None:
            need += h * w * (4 + 2 + 15)
        return DffError(
            f"{out}: no space left on the device for the outputs (about {need / 1e6:.1f} MB "
            "needed); free space or choose another folder with -o"
        )
    return DffError(f"{out}: cannot write the outputs: {exc.strerror or exc}")


def _swap(new: Path, out: Path) -> None:
    """Put the complete folder ``new`` in the place of ``out``; the old folder is set
    aside, the user's files in it moved into ``new``, and the rest deleted."""
    if not out.exists():
        os.rename(new, out)
        return
    old = out.parent / f".{out.name}.dff-old-{process_tag()}"
    shutil.rmtree(old, ignore_errors=True)
    os.rename(out, old)
    try:
        os.rename(new, out)
    except BaseException:
        os.rename(old, out)
        raise
    _move_foreign(old, out)
    shutil.rmtree(old, ignore_errors=True)


def _write_all(
    run: Run,
    out: Path,
    spec_file: str | None,
    reversed_: bool,
    point_cloud: bool,
    read_options: dict[str, Any] | None = None,
) -> list[str]:
    """Every file of the output contract in the empty folder ``out``, ``run.json`` last;
    returns their names."""
    result, n = run.result, run.stack.n
    written: list[Path] = []
    pool = ThreadPoolExecutor(WRITERS)  # encoders release the GIL: files in parallel
    pending: list[Future[None]] = []

    def put(name: str, writer: Any, data: Any) -> None:
        pending.append(pool.submit(writer, out / name, data))
        written.append(out / name)

    put("depth_index.npy", write_npy, result.index)
    put("confidence.npy", write_npy, result.confidence)
    put("depth.png", _with_scale(depth_png_mapping(n)), depth_png(result.index, n))
    put("depth_color.png", write_image, colour_depth(result.index, n))
    put("confidence.png", write_image, (result.confidence * 255 + 0.5).astype(np.uint8))
    put("all_in_focus.png", write_image, to_storable(result.all_in_focus))  # floats: 16-bit
    cloud: dict[str, Any] | None = None
    if result.depth is not None:
        put("depth.npy", write_npy, result.depth)
        depth_m = result.depth
        if run.stack.focus_unit == "z":  # micrometres: millimetres would read all alike
            origin = (0, 0) if run.crop is None else (run.crop[0], run.crop[1])
            size = lateral_pixel_size(run.stack)
            height = functools.partial(write_height_tif, pixel_size_m=size, origin_px=origin)
            put(HEIGHT_TIF, lambda p, d: height(p, d, result.confidence), depth_m)
        else:
            mm = depth_metres_png(depth_m, result.confidence)
            put("depth_metres.png", _with_scale(DEPTH_METRES_SCALE), mm)
        if point_cloud:
            pc = stack_point_cloud(
                run.stack, depth_m, run.crop, result.all_in_focus, result.confidence > 0
            )
            put("points.ply", lambda p, _: write_ply(p, pc.points, pc.colours, pc.comments), None)
            positive = "" if run.stack.focus_unit == "z" else " positive"
            cloud = {
                "file": "points.ply",
                "points": len(pc.points),
                **pc.record,
                "left_out": f"pixels with confidence 0 or no finite{positive} depth",
            }
    with pool:
        for job in pending:  # every file is complete before run.json names it
            job.result()
    record = run_record(run, spec_file=spec_file, reversed_=reversed_, read_options=read_options)
    if cloud is not None:
        record["point_cloud"] = cloud
    record["outputs"] = sorted(p.name for p in [*written, out / "run.json"])
    text = json.dumps(finite_json(record), indent=2, default=_json_default, allow_nan=False)
    atomic_write_bytes(out / "run.json", (text + "\n").encode("utf-8"))
    written.append(out / "run.json")
    return [p.name for p in written]


def finite_json(obj: Any) -> Any:
    """``obj`` ready for strict JSON: NaN and ±infinity (floats, NumPy scalars and array
    elements, at any depth) become None (``null``); ``run.json`` never holds the
    ``NaN``/``Infinity`` tokens that JSON does not allow.

    Parameters
    ----------
    obj : Any
        Dicts, lists, tuples, numbers, arrays, and anything :func:`_json_default` turns
        into a string.

    Returns
    -------
    Any
        The same structure with NumPy values turned into Python ones and non-finite
        floats into None.
    """
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return finite_json(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _with_scale(scale: str) -> Any:
    """A writer of 16-bit PNGs that carry ``scale`` in a ``dffcore:scale`` tEXt chunk."""
    return lambda path, image: write_png_text(path, image, {PNG_SCALE_KEY: scale})


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)
