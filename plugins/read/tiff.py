"""Z-stack TIFF files: OME-TIFF, ImageJ hyperstacks and plain multi-page TIFFs.

One image series of the file is one focal stack: its frames run along the Z axis (or,
in a plain multi-page TIFF, along the pages, tifffile's axes ``I`` and ``Q``). The z
step and the lateral pixel size come from the OME-XML (``PhysicalSizeZ/X/Y`` and their
units, ``Plane PositionZ`` of the first plane for the start) or from ImageJ's
``spacing``/``unit`` and the resolution tags, converted to metres: the depth map is then
the focal-plane position along the optical axis (focus unit ``"z"``).

tifffile is imported only when this reader reads a file.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import re
import struct
import threading
import weakref
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from dffcore.core.components import Params, Reader, ReadRequest
from dffcore.core.data import FocalStack
from dffcore.core.errors import DffError
from dffcore.io.images import allow_corrupt_default, max_pixels
from dffcore.ops.convert import to_float32

logger = logging.getLogger(__name__)

#: metres per unit of length, for the unit names OME and ImageJ files use
_METRES = {
    "m": 1.0,
    "cm": 1e-2,
    "mm": 1e-3,
    "µm": 1e-6,
    "um": 1e-6,
    "micron": 1e-6,
    "microns": 1e-6,
    "micrometer": 1e-6,
    "micrometre": 1e-6,
    "nm": 1e-9,
    "nanometer": 1e-9,
    "pm": 1e-12,
    "å": 1e-10,
    "angstrom": 1e-10,
    "in": 0.0254,
    "inch": 0.0254,
}
_FRAME_AXES = "ZIQ"  # the frame axis: Z, else the pages of a plain multi-page file
#: exceptions tifffile raises on broken files (TiffFileError is a ValueError)
_BROKEN = (ValueError, OSError, struct.error, IndexError, KeyError, TypeError, EOFError)


def metres_per(unit: str | None) -> float | None:
    """Metres in one ``unit`` (``"µm"``, ``"micron"``, ``"\\u00B5m"``, ``"nm"``, ...), or
    None for an unknown unit or none (ImageJ's ``"pixel"``)."""
    if not unit:
        return None
    text = unit.strip().lower().replace("\\u00b5", "µ").replace("μ", "µ")
    return _METRES.get(text)


class TiffParams(Params):
    series: int = Field(0, ge=0, description="which image series of a multi-series file")
    channel: int | None = Field(
        None,
        ge=0,
        description="which channel of a multi-channel stack; default: grey if 1 channel, "
        "RGB if 3, else an error listing the choice",
    )
    z_step: float | None = Field(
        None,
        gt=0,
        description="z step between frames in micrometres, when the file has none or to "
        "override it",
    )


class Tiff(Reader):
    """A z-stack in one TIFF file (OME-TIFF, ImageJ hyperstack, plain multi-page TIFF).

    Frames keep their dtype (uint8, uint16, float32; float16/64 become float32, other
    integers float32 scaled by their maximum, booleans 0/255 uint8). The focus
    positions are ``z_0 + k Δz`` in metres for the frames read; without a z step in the
    file or ``--read z_step=UM`` the depth stays in frame indices.
    """

    name = "tiff"
    Params = TiffParams
    suffixes = (".ome.tif", ".ome.tiff", ".tif", ".tiff")
    container = True
    citation = (
        "OME-TIFF: Goldberg et al., Genome Biology 6:R47, 2005; ImageJ hyperstack TIFF; "
        "TIFF 6.0 (Adobe, 1992)"
    )

    def read(self, paths: list[Path], request: ReadRequest) -> FocalStack:
        path = Path(paths[0])
        allow = allow_corrupt_default() if request.allow_corrupt is None else request.allow_corrupt
        tif = _open(path, allow)
        try:
            try:
                with _tifffile_log(path, allow):  # pages and tags are parsed on demand
                    layout = _Layout(tif, path, self.params.series, self.params.channel, allow)
                    selected = list(range(layout.n))[request.frames]
                    z, meta = _physical(tif, layout, self.params.z_step, selected)
            except _BROKEN as exc:
                raise _broken(path, exc) from None
            if request.lazy:
                shape = (len(selected), layout.h, layout.w, layout.c)
                frames: Any = _LazyTiff(shape, layout, selected).frames()
            else:
                frames = layout.read(selected, request.progress)
                tif.close()
        except BaseException:
            tif.close()
            raise
        return FocalStack(frames, [path], z, "z" if z is not None else None, meta)


@contextlib.contextmanager
def _tifffile_log(path: Path, allow: bool) -> Iterator[None]:
    """tifffile's logged errors (a truncated or corrupt file) as a DffError naming
    ``path``, or one warning each when ``allow``; tifffile logs nothing itself."""
    records: list[logging.LogRecord] = []

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    log = logging.getLogger("tifffile")
    handler, propagate = Catch(logging.DEBUG), log.propagate
    log.addHandler(handler)
    log.propagate = False
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.propagate = propagate
    for record in records:
        text = re.sub(r"<[^>]*>\s*", "", record.getMessage()).strip() or "unreadable data"
        text = re.sub(r"^raised \w+\(['\"](.*)['\"]\)$", r"\1", text)
        if record.levelno < logging.ERROR:  # an oddity tifffile copes with
            logger.debug("%s: tifffile: %s", path, text)
            continue
        if not allow:
            raise DffError(
                f"{path}: corrupt or truncated TIFF ({text}); --allow-corrupt reads what is left"
            )
        logger.warning("%s: corrupt or truncated TIFF: %s", path, text)


def _reason(exc: BaseException) -> str:
    """The first line of a tifffile exception, without its ``<tifffile.TiffTag ...>``."""
    lines = str(exc).splitlines()
    text = re.sub(r"<[^>]*>\s*", "", lines[0] if lines else "").strip()
    return text or type(exc).__name__


def _broken(path: Path, exc: BaseException) -> DffError:
    return DffError(f"{path}: not a readable TIFF file ({_reason(exc)})")


def _open(path: Path, allow: bool) -> Any:
    import tifffile

    try:
        with _tifffile_log(path, allow):
            tif = tifffile.TiffFile(path)
            try:
                series = tif.series  # parses the OME-XML / ImageJ layout
            except BaseException:
                tif.close()
                raise
    except DffError:
        raise
    except _BROKEN as exc:
        raise _broken(path, exc) from None
    if not tif.pages or not series:
        tif.close()
        raise DffError(f"{path}: holds no images (a TIFF without pages)")
    return tif


class _Layout:
    """Where frame ``k`` of one series lies: its pages and the axes inside a page."""

    def __init__(self, tif: Any, path: Path, index: int, channel: int | None, allow: bool):
        self.tif, self.path, self.allow = tif, path, allow
        count = len(tif.series)
        if index >= count:
            have = "1 image series (0)" if count == 1 else f"{count} image series (0..{count - 1})"
            raise DffError(f"{path}: --read series={index}: the file has {have}")
        self.index = index
        series = tif.series[index]
        self.series = series
        self.axes_text = series.axes
        axes, shape = series.get_axes(False), tuple(int(v) for v in series.get_shape(False))
        self.axes, self.shape = axes, shape
        size = dict(zip(axes, shape, strict=True))
        if "Y" not in size or "X" not in size:
            raise DffError(f"{path}: series {index} has axes {series.axes}, no image plane (YX)")
        self.h, self.w = size["Y"], size["X"]
        if self.h * self.w > max_pixels():
            raise DffError(
                f"{path}: frames of {self.w}x{self.h} = {self.h * self.w / 1e6:.0f} megapixels, "
                f"more than the limit of {max_pixels() / 1e6:.0f} megapixels per frame "
                "(set DFF_MAX_PIXELS to raise it)"
            )
        if size.get("T", 1) > 1:
            raise DffError(
                f"{path}: has a time axis (T) of {size['T']} points; dffcore reads one z-stack: "
                "save one time point, or save the focus sweep along Z"
            )
        big = [a for a in _FRAME_AXES if size.get(a, 1) > 1]
        if len(big) > 1:
            raise DffError(f"{path}: has several stack axes ({series.axes}); expected one z-stack")
        self.frame_axis = (
            axes.index(big[0])
            if big
            else next((axes.index(a) for a in _FRAME_AXES if a in axes), -1)
        )
        self.n = shape[self.frame_axis] if self.frame_axis >= 0 else 1
        chans = [a for a in "CS" if size.get(a, 1) > 1]
        others = [a for a in axes if size[a] > 1 and a not in "ZIQCSYX"]
        if len(chans) > 1 or others:
            raise DffError(
                f"{path}: series {index} has axes {series.axes} of shape {series.shape}; "
                "expected one z-stack of grey or RGB frames"
            )
        self.chan_axis = axes.index(chans[0]) if chans else -1
        n_chan = size[chans[0]] if chans else 1
        self.channel = channel
        if channel is not None and channel >= n_chan:
            raise DffError(
                f"{path}: --read channel={channel}: the stack has {n_chan} channel"
                f"{'s' if n_chan > 1 else ''} (0..{n_chan - 1})"
            )
        if channel is None and n_chan not in (1, 3):
            raise DffError(
                f"{path}: has {n_chan} channels ({chans[0]} axis of {series.axes}); choose one "
                f"with --read channel=K (K = 0..{n_chan - 1})"
            )
        self.c = 1 if channel is not None else n_chan
        self.dtype, self.convert = _dtype(path, np.dtype(series.dtype))
        pages = list(series.pages)
        lead = 0
        while lead < len(shape) and int(np.prod(shape[:lead])) < len(pages):
            lead += 1
        self.lead = lead  # leading axes index pages; the others lie inside a page
        per_page = int(np.prod(shape[lead:]))
        self.by_page = int(np.prod(shape[:lead])) == len(pages) and all(
            p is not None and int(np.prod(p.shape)) == per_page for p in pages
        )
        self.pages = pages
        self._whole: np.ndarray | None = None

    def _sub(self, k: int) -> np.ndarray:
        """Frame ``k`` (and its channels) over every axis of the series."""
        fa, ca = self.frame_axis, self.chan_axis
        keep = [slice(None)] * len(self.shape)
        if fa >= 0:
            keep[fa] = slice(k, k + 1)
        if ca >= 0 and self.channel is not None:
            keep[ca] = slice(self.channel, self.channel + 1)
        if not self.by_page:  # pages do not split the series (e.g. a > 4 GB ImageJ file)
            if self._whole is None:
                self._whole = np.asarray(self.series.asarray()).reshape(self.shape)
            return self._whole[tuple(keep)]
        ranges = [range(*keep[i].indices(n)) for i, n in enumerate(self.shape[: self.lead])]
        index = [
            np.ravel_multi_index(ix, self.shape[: self.lead]) for ix in itertools.product(*ranges)
        ]
        planes = [self.pages[int(i)].asarray().reshape(self.shape[self.lead :]) for i in index]
        sub = np.stack(planes).reshape([len(r) for r in ranges] + list(self.shape[self.lead :]))
        inside = [slice(None)] * self.lead + keep[self.lead :]
        return sub[tuple(inside)]

    def frame(self, k: int) -> np.ndarray:
        """Frame ``k`` as (H, W, C) in the frames' dtype."""
        try:
            with _tifffile_log(self.path, self.allow):
                sub = self._sub(k)
        except DffError:
            raise
        except (*_BROKEN, RuntimeError, MemoryError) as exc:
            raise DffError(f"{self.path}: frame {k} cannot be decoded ({_reason(exc)})") from None
        axes = self.axes
        order = [axes.index("Y"), axes.index("X")]
        order += [self.chan_axis] if self.chan_axis >= 0 else []
        order = [i for i in range(len(axes)) if i not in order] + order
        img = np.transpose(sub, order).reshape(self.h, self.w, -1)
        return self.convert(img)

    def read(self, selected: list[int], progress: Callable[[int, int], None] | None) -> np.ndarray:
        out = np.empty((len(selected), self.h, self.w, self.c), self.dtype)
        for i, k in enumerate(selected):
            out[i] = self.frame(k)
            if progress:
                progress(i + 1, len(selected))
        return out


class _LazyTiff:
    """Frames decoded one at a time from the open file (one lock: a file handle is not
    shared safely between threads)."""

    def __init__(self, shape: tuple[int, ...], layout: _Layout, selected: list[int]):
        self.shape, self.layout, self.selected = shape, layout, selected
        self.lock = threading.Lock()
        weakref.finalize(self, layout.tif.close)  # the file closes with the last frame view

    def decode(self, k: int) -> np.ndarray:
        with self.lock:
            return self.layout.frame(self.selected[k])

    def frames(self) -> Any:
        from dffcore.io.stack import LazyFrames

        return LazyFrames(self.shape, self.layout.dtype, self.decode)


def _dtype(path: Path, dtype: np.dtype) -> tuple[np.dtype, Callable[[np.ndarray], np.ndarray]]:
    """The frames' dtype and the conversion of decoded samples into it."""
    if dtype in (np.uint8, np.uint16, np.float32):
        return dtype, lambda a: a
    if dtype == np.bool_:
        return np.dtype(np.uint8), lambda a: a.astype(np.uint8) * np.uint8(255)
    if np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.integer):
        if np.issubdtype(dtype, np.integer):
            top = float(np.iinfo(dtype).max)
            logger.info("%s: %s samples read as float32 scaled by 1/%g", path, dtype, top)
        return np.dtype(np.float32), to_float32  # the project's one conversion
    raise DffError(f"{path}: holds {dtype} samples; expected integer or floating-point grey or RGB")


def _physical(
    tif: Any, layout: _Layout, z_step_um: float | None, selected: list[int]
) -> tuple[np.ndarray | None, dict[str, Any]]:
    """Focus positions (metres) of the selected frames and the metadata the file gives."""
    path = layout.path
    fmt, dz, z0, xy, positions = "tiff", None, 0.0, None, None
    if tif.is_ome and tif.ome_metadata:
        fmt = "ome"
        dz, z0, xy, positions = _ome(path, tif.ome_metadata, layout)
    elif tif.is_imagej and tif.imagej_metadata is not None:
        fmt = "imagej"
        dz, xy = _imagej(tif.imagej_metadata, layout.pages[0])
    else:
        xy = _resolution(layout.pages[0], None)
    meta: dict[str, Any] = {
        "format": fmt,
        "series": layout.index,
        "axes": layout.axes_text,
        "source_frames": layout.n,
    }
    if xy is not None:
        meta["pixel_size_m"] = xy
    if z_step_um is not None:
        dz = z_step_um * 1e-6
    if dz is None and positions is not None:  # no step: the planes' own positions
        meta["z_step_m"] = float(np.mean(np.diff(positions)))
        return np.asarray(positions, np.float64)[selected], meta
    if dz is None:
        logger.info(
            "%s: no z step in the file: depth stays in frame indices; give it with "
            "--read z_step=0.5 (micrometres)",
            path,
        )
        return None, meta
    meta["z_step_m"] = dz
    return z0 + dz * np.asarray(selected, np.float64), meta


def _float(text: str | None) -> float | None:
    try:
        value = float(text) if text is not None else None
    except ValueError:
        return None
    return value if value is not None and np.isfinite(value) else None


def _ome(
    path: Path, xml: str, layout: _Layout
) -> tuple[float | None, float, tuple[float, float] | None, list[float] | None]:
    """z step, z of the first plane, lateral pixel size (metres) and every z plane's
    position (when all have one and they are strictly monotonic) from the OME-XML."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        logger.warning("%s: OME-XML cannot be parsed (%s): no physical sizes", path, exc)
        return None, 0.0, None, None
    images = [e for e in root.iter() if e.tag.rsplit("}", 1)[-1] == "Image"]
    if not images:
        return None, 0.0, None, None
    image = images[layout.index] if layout.index < len(images) else images[0]
    pixels = next((e for e in image if e.tag.rsplit("}", 1)[-1] == "Pixels"), None)
    if pixels is None:
        return None, 0.0, None, None

    def size(axis: str) -> float | None:
        value = _float(pixels.get(f"PhysicalSize{axis}"))
        factor = metres_per(pixels.get(f"PhysicalSize{axis}Unit", "µm"))
        if value is None or value <= 0 or factor is None:
            return None
        return value * factor

    dz, sx, sy = size("Z"), size("X"), size("Y")
    xy = (sx, sy if sy is not None else sx) if sx is not None else None
    channel = layout.channel or 0
    at: dict[int, float] = {}
    for plane in pixels:
        if plane.tag.rsplit("}", 1)[-1] != "Plane":
            continue
        if int(plane.get("TheT", 0)) != 0 or int(plane.get("TheC", 0)) != channel:
            continue
        value = _float(plane.get("PositionZ"))
        unit = plane.get("PositionZUnit", "µm")
        factor = metres_per("µm" if unit == "reference frame" else unit)
        if value is not None and factor is not None:
            at.setdefault(int(plane.get("TheZ", 0)), value * factor)
    z0 = at.get(0, 0.0)
    positions = None
    if len(at) == layout.n >= 2 and sorted(at) == list(range(layout.n)):
        steps = np.diff([at[k] for k in range(layout.n)])
        if np.all(steps > 0) or np.all(steps < 0):
            positions = [at[k] for k in range(layout.n)]
    return dz, z0, xy, positions


def _imagej(meta: dict[str, Any], page: Any) -> tuple[float | None, tuple[float, float] | None]:
    """z step and lateral pixel size (metres) from ImageJ's ``spacing``/``unit`` and the
    resolution tags (pixels per unit)."""
    factor = metres_per(str(meta.get("unit", "")))
    spacing = _float(str(meta["spacing"])) if "spacing" in meta else None
    dz = spacing * factor if spacing and spacing > 0 and factor is not None else None
    return dz, _resolution(page, factor)


def _resolution(page: Any, unit_m: float | None) -> tuple[float, float] | None:
    """Lateral pixel size (metres) from XResolution/YResolution (pixels per ``unit_m``;
    None: per centimetre when the ResolutionUnit tag says so — an inch is a printing
    resolution, such as the 72 dpi cameras write, not a size in the scene)."""
    tags = page.tags
    if unit_m is None:
        res_unit = tags.get("ResolutionUnit")
        unit_m = 0.01 if res_unit is not None and int(res_unit.value) == 3 else None
    if unit_m is None or "XResolution" not in tags:
        return None
    sizes = []
    for name in ("XResolution", "YResolution"):
        tag = tags.get(name) or tags["XResolution"]
        try:
            num, den = tag.value
            per_unit = num / den
        except (TypeError, ValueError, ZeroDivisionError):
            return None
        if not (np.isfinite(per_unit) and per_unit > 0):
            return None
        sizes.append(unit_m / per_unit)
    return sizes[0], sizes[1]
