"""Readers for focal-stack datasets with ground truth: ours, HCI, DDFF-12 and FoD500.

``open_dataset(path)`` looks at the folder (or file), recognises one of the layouts in
:data:`KINDS` and returns a :class:`Dataset`: a lazy, ordered collection of named
:class:`Sample` objects. Opening only lists files (or reads HDF5 key shapes); frames
and ground truth are read when a sample is loaded, so a dataset of thousands of
stacks costs nothing until it is iterated.

Layouts (docs/datasets.md has the citations, download addresses and licences):

- ``dffcore``: what :func:`dffcore.eval.synth.write_stack` writes: frames, an optional
  ``focus_distances.txt`` and ``ground_truth/{index.npy, depth.npy, all_in_focus.png}``;
  or, instead of the frames, one file ``stack.<ending>`` that a reader takes as a whole
  stack (``stack.ome.tif``, as ``dff synth --format ome-tiff`` writes), read through it.
- ``hci``: focal stacks refocused from the 4D Light Field Benchmark (Honauer et al.,
  ACCV 2016): ``stack/slice_XX.png``, ``focus_disparity.txt``, ``gt/disparity.npy``,
  ``gt/all_in_focus.png``.
- ``ddff12``: the DDFF 12-Scene HDF5 files (Hazirbas et al., "Deep Depth From Focus",
  ACCV 2018): ``stack_<split>`` (N,10,H,W,3) and ``disp_<split>`` (N,H,W). Needs h5py.
- ``fod500``: FoD500 (Maximov et al., "Focus on Defocus", CVPR 2020): one folder of
  ``<scene>_<k>All.tif`` focal images, ``<scene>Dpt.exr`` depth and ``<scene>Aif.tif``.
  Reading the depth needs the OpenEXR package (``dffcore[exr]``).

Invalid ground truth is NaN. ``truth_index`` is unclipped: a pixel whose truth lies
outside the focus sweep gets an index below 0 or above N-1 (linear extrapolation
from the end slices), so callers decide how to treat it.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike

from dffcore.core.data import FocalStack
from dffcore.core.errors import DffError, did_you_mean
from dffcore.io.images import IMAGE_EXTENSIONS, load_npy_checked, max_pixels, read_image
from dffcore.io.stack import FOCUS_SIDECAR, natural_key, read_focus_distances, read_stack

logger = logging.getLogger(__name__)

KINDS: tuple[str, ...] = ("dffcore", "hci", "ddff12", "fod500")

#: FoD500 focus distances in metres, slice order (defocus-net README, "Data setting").
FOD500_FOCUS_M: tuple[float, ...] = (0.1, 0.15, 0.3, 0.7, 1.5)

#: DDFF-12 calibration (ddff-toolbox refocus.py; constants as used by AiFDepthNet/DFV):
#: baseline x sub-aperture focal length = K2 / flens * 1e-3 * 521.4052, in metre-pixels.
DDFF12_BASELINE_FOCAL = 1982.0250823695178 / 7317.020641763665 * 1e-3 * 521.4052
#: DDFF-12 focus sweep: 10 slices, uniform in disparity from 0.5 m (first) to 7 m (last).
DDFF12_FOCUS_DISPARITY: tuple[float, ...] = tuple(
    np.linspace(DDFF12_BASELINE_FOCAL / 0.5, DDFF12_BASELINE_FOCAL / 7.0, 10).tolist()
)

_HCI_HINT = "an HCI stack folder has stack/slice_XX.png, focus_disparity.txt and gt/"
_FOD_FILE = re.compile(r"^(\d{6})(.*)(All\.tif|Dpt\.exr|Aif\.tif)$", re.IGNORECASE)
_H5_SUFFIXES = (".h5", ".hdf5")


@dataclass
class Sample:
    """One focal stack and whatever ground truth the dataset has (None when absent).

    ``stack.frames`` is (N,H,W,3) RGB in its native dtype; ``stack.focus_distances``
    (metres or diopters, ``stack.focus_unit``) when the dataset knows them.
    ``truth_index`` (H,W) float32 is the fractional slice index where each pixel is
    sharpest (unclipped), ``truth_depth`` float32 metres, ``truth_disparity`` float32
    pixels; invalid pixels are NaN. ``focus_values`` (N,) says what each slice is
    focused at, in ``focus_kind`` units: ``"m"``, ``"diopter"`` or ``"disparity"`` (px).
    """

    name: str
    stack: FocalStack
    truth_index: np.ndarray | None = None
    truth_depth: np.ndarray | None = None
    truth_disparity: np.ndarray | None = None
    all_in_focus: np.ndarray | None = None
    focus_values: np.ndarray | None = None
    focus_kind: str | None = None


class Dataset:
    """An ordered, lazily loaded collection of samples.

    ``names`` lists the samples in order; ``load(name)`` (or ``dataset[name]`` /
    ``dataset[i]``) reads one; iterating loads them one at a time.
    """

    def __init__(self, root: Path, kind: str, loaders: dict[str, Callable[[], Sample]]) -> None:
        self.root = root
        self.kind = kind
        self._loaders = loaders

    @property
    def names(self) -> list[str]:
        return list(self._loaders)

    def __len__(self) -> int:
        return len(self._loaders)

    def __iter__(self) -> Iterator[Sample]:
        for name in self._loaders:
            yield self.load(name)

    def __getitem__(self, key: int | str) -> Sample:
        if isinstance(key, int):
            if not -len(self) <= key < len(self):
                raise DffError(f"{self.root}: sample {key} out of range ({len(self)} samples)")
            return self.load(self.names[key])
        return self.load(key)

    def load(self, name: str) -> Sample:
        """Read sample ``name`` (frames, focus values, ground truth)."""
        if name not in self._loaders:
            hint = did_you_mean(name, self._loaders)
            raise DffError(f"{self.root}: no sample '{name}' in this {self.kind} dataset.{hint}")
        return self._loaders[name]()

    def __repr__(self) -> str:
        return f"Dataset(kind={self.kind!r}, root={str(self.root)!r}, samples={len(self)})"


def open_dataset(path: str | Path, kind: str = "auto") -> Dataset:
    """Open a dataset folder (or DDFF-12 HDF5 file) without reading any frames.

    Parameters
    ----------
    path : str or Path
        A stack folder, a folder of stack folders, a FoD500 folder, or a DDFF-12
        ``.h5`` file / a folder holding them.
    kind : str
        One of :data:`KINDS`, or ``"auto"`` to recognise the layout.

    Returns
    -------
    Dataset
        The samples: folders in natural order, FoD500 scenes by id, DDFF-12 by file,
        split and index.
    """
    root = Path(path)
    if not root.exists():
        raise DffError(f"{root}: no such file or folder")
    if kind == "auto":
        kind = detect_kind(root)
    elif kind not in KINDS:
        hint = did_you_mean(kind, KINDS)
        raise DffError(f"unknown dataset kind '{kind}'.{hint} Valid: auto, {', '.join(KINDS)}")
    if kind == "ddff12":
        loaders = _scan_ddff12(root)
    else:
        loaders = _scan_folders(root, kind)
    logger.info("opened %s dataset %s: %d samples", kind, root, len(loaders))
    return Dataset(root, kind, loaders)


def detect_kind(path: str | Path) -> str:
    """The layout of ``path`` (one of :data:`KINDS`); a DffError when none fits."""
    root = Path(path)
    if root.is_file():
        if root.suffix.lower() in _H5_SUFFIXES:
            return "ddff12"
    elif root.is_dir():
        own = _folder_kind(root)
        if own:
            return own
        if any(p.suffix.lower() in _H5_SUFFIXES for p in _files(root)):
            return "ddff12"
        found = {k for child in _subfolders(root) if (k := _folder_kind(child))}
        if len(found) == 1:
            return found.pop()
        if len(found) > 1:
            raise DffError(
                f"{root}: its subfolders mix dataset layouts ({', '.join(sorted(found))}); "
                "open each layout's folders separately"
            )
    raise DffError(
        f"{root}: not a recognised dataset layout; valid kinds: {', '.join(KINDS)} "
        "(see docs/datasets.md)"
    )


def fractional_index(
    values: ArrayLike, focus: ArrayLike, source: str = "focus values"
) -> np.ndarray:
    """Fractional slice index of ``values`` by linear interpolation in ``focus``.

    ``focus`` (N,) must be strictly monotonic (increasing or decreasing); ``source``
    names it in the error otherwise. Values outside the sweep are extrapolated
    linearly from the two end slices, so the result can be below 0 or above N-1;
    NaN stays NaN. Returns float32 of the shape of ``values``.
    """
    f = np.asarray(focus, np.float64)
    v = np.asarray(values, np.float64)
    n = f.size
    if n < 2:
        raise DffError(f"{source}: need at least 2 values to index slices, got {n}")
    ascending = f[-1] > f[0]
    g = f if ascending else f[::-1]
    if np.any(np.diff(g) <= 0):
        raise DffError(f"{source}: must be strictly increasing or decreasing")
    k = np.clip(np.searchsorted(g, v, side="right") - 1, 0, n - 2)
    idx = k + (v - g[k]) / (g[k + 1] - g[k])
    if not ascending:
        idx = (n - 1) - idx
    return idx.astype(np.float32)


# -- folder layouts ----------------------------------------------------------------
def sample_files(root: Path, kind: str, name: str) -> list[Path]:
    """The files sample ``name`` of a ``kind`` dataset at ``root`` is read from (what a
    cache keys on: their sizes and modification times identify the sample's data)."""

    def files(folder: Path) -> list[Path]:
        return _files(folder) if folder.is_dir() else []

    if kind == "ddff12":
        return (
            [root]
            if root.is_file()
            else [p for p in files(root) if p.suffix.lower() in (".h5", ".hdf5")]
        )
    if kind == "fod500":
        unit, _, scene = name.rpartition("/")
        return [p for p in files(root / unit if unit else root) if p.name.startswith(scene)]
    folder = root if _folder_kind(root) == kind else root / name
    if kind == "hci":
        parts = [folder / "focus_disparity.txt"]
        return [p for p in parts if p.is_file()] + files(folder / "stack") + files(folder / "gt")
    return files(folder) + files(folder / "ground_truth")


def _files(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_file()), key=natural_key)


def _subfolders(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_dir()), key=natural_key)


def _is_dffcore(folder: Path) -> bool:
    images = [p for p in _files(folder) if p.suffix.lower() in IMAGE_EXTENSIONS]
    return len(images) >= 2 or _stack_file(folder) is not None


def _stack_file(folder: Path) -> Path | None:
    """The file ``stack.<ending>`` of ``folder`` that a reader takes as a whole stack (a
    z-stack TIFF), when there is exactly one."""
    named = [p for p in _files(folder) if p.name.lower().startswith("stack.")]
    if not named:
        return None
    from dffcore.io.readers import installed_readers, is_stack_file

    readers = installed_readers()
    found = [path for path in named if is_stack_file(path, readers)]
    return found[0] if len(found) == 1 else None


def _is_hci(folder: Path) -> bool:
    return (folder / "stack").is_dir() and (folder / "focus_disparity.txt").is_file()


def _is_fod500(folder: Path) -> bool:
    return any(_FOD_FILE.match(p.name) for p in _files(folder))


_DETECT: dict[str, Callable[[Path], bool]] = {
    "hci": _is_hci,
    "fod500": _is_fod500,
    "dffcore": _is_dffcore,
}


def _folder_kind(folder: Path) -> str | None:
    for kind, test in _DETECT.items():  # fod500 before dffcore: its .tif are images too
        if test(folder):
            return kind
    return None


def _scan_folders(root: Path, kind: str) -> dict[str, Callable[[], Sample]]:
    if not root.is_dir():
        raise DffError(f"{root}: a {kind} dataset is a folder, not a file")
    test = _DETECT[kind]
    if test(root):
        units, prefix = [root], False
    else:
        units, prefix = [c for c in _subfolders(root) if test(c)], True
    if not units:
        what = {
            "dffcore": "a stack folder (2 or more images) or a folder of them",
            "hci": "a folder with stack/slice_XX.png and focus_disparity.txt, or a folder of them",
            "fod500": "a folder of <scene>_<k>All.tif, <scene>Dpt.exr files",
        }[kind]
        raise DffError(f"{root}: not a {kind} layout: expected {what}")
    loaders: dict[str, Callable[[], Sample]] = {}
    for unit in units:
        if kind == "fod500":
            for scene, loader in _scan_fod500(unit).items():
                loaders[f"{unit.name}/{scene}" if prefix else scene] = loader
        else:
            load = _load_dffcore if kind == "dffcore" else _load_hci
            loaders[unit.name] = functools.partial(load, unit)
    return loaders


def _float_map(path: Path) -> np.ndarray:
    """A 2-D ``.npy`` map as float32 with every non-finite value NaN."""
    try:  # the header is checked first: a huge declared shape is refused unread
        raw = load_npy_checked(path, max_elements=max_pixels())
        arr = np.squeeze(np.asarray(raw, dtype=np.float32))
    except (OSError, ValueError, TypeError) as exc:
        raise DffError(f"{path}: not a readable numeric .npy array ({exc})") from None
    if arr.ndim != 2:
        raise DffError(f"{path}: expected a 2-D (H,W) map, got shape {arr.shape}")
    arr[~np.isfinite(arr)] = np.nan
    return arr


def _rgb(image: np.ndarray) -> np.ndarray:
    return np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image


def _check_shape(path: Path, arr: np.ndarray | None, shape: tuple[int, int]) -> None:
    if arr is not None and arr.shape[:2] != shape:
        raise DffError(
            f"{path}: is {arr.shape[1]}x{arr.shape[0]} but the frames are {shape[1]}x{shape[0]}"
        )


def _optional(path: Path, read: Callable[[Path], np.ndarray]) -> np.ndarray | None:
    return read(path) if path.is_file() else None


def _load_dffcore(folder: Path) -> Sample:
    file = _stack_file(folder)
    if file is None:
        stack = read_stack(folder)
    else:  # a sidecar next to the stack file is part of the layout: it wins, as for frames
        sidecar = folder / FOCUS_SIDECAR
        stack = read_stack(file, focus_distances=sidecar if sidecar.is_file() else None)
    stack.metadata.update(dataset="dffcore", sample=folder.name)
    stack.frames = _rgb_frames(stack.frames)
    gt = folder / "ground_truth"
    index = _optional(gt / "index.npy", _float_map)
    depth = _optional(gt / "depth.npy", _float_map)
    aif = _optional(gt / "all_in_focus.png", read_image)
    for name, arr in (("index.npy", index), ("depth.npy", depth), ("all_in_focus.png", aif)):
        _check_shape(gt / name, arr, stack.shape)
    values = stack.focus_distances
    return Sample(
        name=folder.name,
        stack=stack,
        truth_index=index,
        truth_depth=depth,
        all_in_focus=_rgb(aif) if aif is not None else None,
        focus_values=values.copy() if values is not None else None,
        focus_kind=stack.focus_unit if values is not None else None,
    )


def _rgb_frames(frames: np.ndarray) -> np.ndarray:
    return np.repeat(frames, 3, axis=3) if frames.shape[3] == 1 else frames


def _load_hci(folder: Path) -> Sample:
    sidecar = folder / "focus_disparity.txt"
    if not sidecar.is_file():
        raise DffError(f"{sidecar}: missing; {_HCI_HINT}")
    stack = read_stack(folder / "stack")
    stack.metadata.update(dataset="hci", sample=folder.name)
    stack.frames = _rgb_frames(stack.frames)
    focus, _ = read_focus_distances(sidecar, stack.n, signed=True)  # disparities
    disparity = _optional(folder / "gt" / "disparity.npy", _float_map)
    aif = _optional(folder / "gt" / "all_in_focus.png", read_image)
    _check_shape(folder / "gt" / "disparity.npy", disparity, stack.shape)
    _check_shape(folder / "gt" / "all_in_focus.png", aif, stack.shape)
    return Sample(
        name=folder.name,
        stack=stack,
        truth_index=None if disparity is None else fractional_index(disparity, focus, str(sidecar)),
        truth_disparity=disparity,
        all_in_focus=_rgb(aif) if aif is not None else None,
        focus_values=focus,
        focus_kind="disparity",
    )


# -- FoD500 --------------------------------------------------------------------------
def _scan_fod500(folder: Path) -> dict[str, Callable[[], Sample]]:
    scenes: dict[str, dict[str, list[Path]]] = {}
    for p in _files(folder):
        m = _FOD_FILE.match(p.name)
        if m:
            parts = scenes.setdefault(m.group(1), {"all": [], "dpt": [], "aif": []})
            parts[m.group(3)[:3].lower()].append(p)
    return {
        scene: functools.partial(_load_fod500, folder, scene, parts)
        for scene, parts in sorted(scenes.items())
    }


def _load_fod500(folder: Path, scene: str, parts: dict[str, list[Path]]) -> Sample:
    frames = parts["all"]  # natural order: <scene>_00All.tif ... <scene>_04All.tif
    if len(frames) != len(FOD500_FOCUS_M):
        raise DffError(
            f"{folder}: scene {scene} has {len(frames)} focal images ({scene}_<k>All.tif); "
            f"FoD500 scenes have {len(FOD500_FOCUS_M)}"
        )
    stack = read_stack(frames)
    stack.frames = _rgb_frames(stack.frames)
    stack.focus_distances = np.asarray(FOD500_FOCUS_M, np.float64)
    stack.focus_unit = "m"
    stack.metadata.update(dataset="fod500", sample=scene)
    depth = index = aif = None
    if parts["dpt"]:
        depth = read_exr_channel(parts["dpt"][0])
        depth[~(np.isfinite(depth) & (depth > 0))] = np.nan  # 0, <0, inf: no surface
        _check_shape(parts["dpt"][0], depth, stack.shape)
        index = fractional_index(1.0 / depth, 1.0 / stack.focus_distances)
    if parts["aif"]:
        aif = _rgb(read_image(parts["aif"][0]))
        _check_shape(parts["aif"][0], aif, stack.shape)
    return Sample(
        name=scene,
        stack=stack,
        truth_index=index,
        truth_depth=depth,
        all_in_focus=aif,
        focus_values=stack.focus_distances.copy(),
        focus_kind="m",
    )


# -- OpenEXR ------------------------------------------------------------------------
def read_exr_channel(path: str | Path, prefer: tuple[str, ...] = ("R", "Z", "Y")) -> np.ndarray:
    """Read one channel of an OpenEXR file as (H,W) float32.

    Decoded by the official ``OpenEXR`` Python bindings (an optional dependency:
    ``pip install 'dffcore[exr]'``), so every compression and pixel type they support
    is read. The first channel of ``prefer`` that exists is returned (FoD500 depth is
    in R), else the first channel; of a multi-part file, the first part.

    Parameters
    ----------
    path : str or Path
        The ``.exr`` file.
    prefer : tuple of str
        Channel names to look for, in order.

    Returns
    -------
    ndarray
        ``(H, W)`` float32 values of the channel.

    Raises
    ------
    DffError
        One line naming the file: OpenEXR is not installed, the file is missing, not
        OpenEXR, damaged or truncated, or has no (two-dimensional) channel.
    """
    path = Path(path)
    try:
        import OpenEXR
    except ImportError:
        raise DffError(
            f"{path}: reading OpenEXR needs the OpenEXR package: "
            "pip install 'dffcore[exr]' (or 'dffcore[datasets]')"
        ) from None
    if not path.is_file():
        raise DffError(f"{path}: no such file")
    if not OpenEXR.isOpenExrFile(str(path)):
        raise DffError(f"{path}: not an OpenEXR file")
    try:
        with OpenEXR.File(str(path), separate_channels=True) as exr:
            channels = {name: ch.pixels for name, ch in exr.channels().items()}
    except Exception as exc:  # the library's own RuntimeError/ValueError, in one line
        why = " ".join(str(exc).split()) or type(exc).__name__
        raise DffError(f"{path}: damaged or truncated OpenEXR file ({why})") from None
    if not channels:
        raise DffError(f"{path}: OpenEXR file without channels")
    want = next((n for n in prefer if n in channels), next(iter(channels)))
    values = np.asarray(channels[want])
    if values.ndim != 2:
        raise DffError(f"{path}: OpenEXR channel {want!r} is not a 2-D image")
    return values.astype(np.float32)


# -- DDFF-12 -------------------------------------------------------------------------
def _h5py():
    try:
        import h5py
    except ImportError:
        raise DffError("reading DDFF-12 (.h5) needs h5py: pip install 'dffcore[hdf5]'") from None
    return h5py


def _scan_ddff12(root: Path) -> dict[str, Callable[[], Sample]]:
    if root.is_dir():
        files = [p for p in _files(root) if p.suffix.lower() in _H5_SUFFIXES]
        if not files:
            raise DffError(
                f"{root}: not a ddff12 layout: expected ddff-dataset-trainval.h5 "
                "and/or ddff-dataset-test.h5"
            )
    elif root.suffix.lower() in _H5_SUFFIXES:
        files = [root]
    else:
        raise DffError(f"{root}: not a ddff12 layout: expected an .h5 file or a folder of them")
    h5py = _h5py()
    loaders: dict[str, Callable[[], Sample]] = {}
    for path in files:
        try:
            with h5py.File(path, "r") as f:
                splits = {
                    k[len("stack_") :]: f[k].shape
                    for k in f.keys()
                    if k.startswith("stack_") and isinstance(f[k], h5py.Dataset)
                }
                disp_keys = {k for k in f.keys() if k.startswith("disp_")}
                aif_keys = {k for k in f.keys() if k.startswith("AiF_")}
        except OSError as exc:
            raise DffError(f"{path}: not a readable HDF5 file ({exc})") from None
        if not splits:
            raise DffError(f"{path}: no 'stack_<split>' dataset (e.g. stack_train, stack_test)")
        for split, shape in splits.items():
            if len(shape) != 5 or shape[4] != 3:
                raise DffError(
                    f"{path}: stack_{split} has shape {shape}; expected (N, slices, H, W, 3)"
                )
            disp = f"disp_{split}" if f"disp_{split}" in disp_keys else None
            aif = f"AiF_{split}" if f"AiF_{split}" in aif_keys else None
            for i in range(shape[0]):
                name = f"{split}/{i}"
                if name in loaders:
                    name = f"{path.stem}/{name}"
                loaders[name] = functools.partial(_load_ddff12, path, split, i, disp, aif, name)
    return loaders


def _load_ddff12(
    path: Path, split: str, i: int, disp_key: str | None, aif_key: str | None, name: str
) -> Sample:
    h5py = _h5py()
    try:
        with h5py.File(path, "r") as f:
            frames = np.asarray(f[f"stack_{split}"][i])
            disp = np.asarray(f[disp_key][i], np.float32) if disp_key else None
            aif = np.asarray(f[aif_key][i]) if aif_key else None
    except OSError as exc:
        raise DffError(f"{path}: cannot read stack_{split}[{i}] ({exc})") from None
    frames = _as_image(frames)
    focus = np.asarray(DDFF12_FOCUS_DISPARITY, np.float64)
    if focus.size != frames.shape[0]:
        raise DffError(
            f"{path}: stack_{split} has {frames.shape[0]} slices; DDFF-12 stacks have {focus.size}"
        )
    stack = FocalStack(
        frames,
        [],
        DDFF12_BASELINE_FOCAL / focus,
        "m",
        {"dataset": "ddff12", "sample": name, "file": str(path)},
    )
    index = depth = None
    if disp is not None:
        disp = np.squeeze(disp)
        _check_shape(path, disp, stack.shape)
        disp[~(np.isfinite(disp) & (disp > 0))] = np.nan  # 0 = no depth measured
        index = fractional_index(disp, focus)
        depth = (DDFF12_BASELINE_FOCAL / disp).astype(np.float32)
    return Sample(
        name=name,
        stack=stack,
        truth_index=index,
        truth_depth=depth,
        truth_disparity=disp,
        all_in_focus=_as_image(aif) if aif is not None else None,
        focus_values=focus,
        focus_kind="disparity",
    )


def _as_image(arr: np.ndarray) -> np.ndarray:
    """8-bit images stored as floats 0..255 (as some re-packed files do) back to uint8."""
    if arr.dtype.kind == "f":
        return np.clip(np.rint(arr), 0, 255).astype(np.uint8)
    return arr
