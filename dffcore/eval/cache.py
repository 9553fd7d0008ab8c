"""The cache of a comparison: one entry per (pipeline, stack), the ground truth per stack.

The result of a pipeline on a stack lives in ``REPORT/cache/<key>/`` (``metrics.json``,
``depth_index.npy``, ``all_in_focus.png``), ``key`` (:func:`cache_key`) a hash of the
resolved spec (:meth:`~dffcore.core.spec.PipelineSpec.spec_hash`), the stack's identity
(:class:`~dffcore.eval.sources.StackSource`) and the dffcore version. ``metrics.json``
is written last, so an entry is complete exactly when it is present. Failures are not
cached. After changing a component's code without a version bump, recompute
(``force``).

The ground truth the figures need (the display map, the true all-in-focus image and a
description of the stack) is cached per stack in ``REPORT/cache/stack-<key>/``
(:class:`StackState`), so a fully cached comparison reads no frame.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dffcore.core.spec import PipelineSpec, spec_hash
from dffcore.eval.datasets import Sample
from dffcore.eval.sources import StackSource
from dffcore.io.images import atomic_write_bytes, read_image, write_image, write_npy
from dffcore.ops.convert import to_storable
from dffcore.version import __version__

CACHE_FORMAT = 1
ENTRY_FILES = ("depth_index.npy", "all_in_focus.png")  # besides metrics.json


def cache_key(spec: PipelineSpec, identity: dict[str, Any]) -> str:
    """Name of the cache entry of ``spec`` on a stack.

    Parameters
    ----------
    spec : PipelineSpec
        The validated pipeline.
    identity : dict
        The stack's :attr:`~dffcore.eval.sources.StackSource.identity`.

    Returns
    -------
    str
        A hash of the cache format, the dffcore version, the spec's hash and ``identity``.
    """
    data = {
        "format": CACHE_FORMAT,
        "dffcore": __version__,
        "spec": spec.spec_hash(),
        "stack": identity,
    }
    return spec_hash(data)


def read_entry(entry: Path) -> dict[str, Any] | None:
    """The row of a complete cache entry.

    Parameters
    ----------
    entry : Path
        The entry's folder, ``REPORT/cache/<key>``.

    Returns
    -------
    dict or None
        The row of ``metrics.json`` (``status`` ``done``), or None when the entry is
        missing, incomplete or unreadable.
    """
    try:
        row = json.loads((entry / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(row, dict) or row.get("status") != "done":
        return None
    if not all((entry / f).is_file() for f in ENTRY_FILES):
        return None
    return row


def write_entry(
    entry: Path, row: dict[str, Any], index: np.ndarray, all_in_focus: np.ndarray
) -> None:
    """Write a cache entry: the maps first, ``metrics.json`` (``row``) last.

    Parameters
    ----------
    entry : Path
        The entry's folder (created).
    row : dict
        The run's row (JSON ready).
    index : ndarray
        The fractional index map.
    all_in_focus : ndarray
        The all-in-focus image.
    """
    entry.mkdir(parents=True, exist_ok=True)
    (entry / "metrics.json").unlink(missing_ok=True)  # incomplete until written again
    write_npy(entry / "depth_index.npy", index)
    write_image(entry / "all_in_focus.png", to_storable(all_in_focus))
    text = json.dumps(row, indent=1) + "\n"
    atomic_write_bytes(entry / "metrics.json", text.encode("utf-8"))


def read_entry_maps(entry: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(index, all_in_focus)`` of a complete cache entry (see :func:`read_entry`)."""
    index = np.load(entry / "depth_index.npy", allow_pickle=False)
    return index, read_image(entry / "all_in_focus.png")


@dataclass(frozen=True)
class StackTruth:
    """What the report needs of a stack's ground truth.

    ``info``: ``stack``, ``frames``, ``shape``, ``display`` (``"disparity"``,
    ``"index"`` or None), ``focus`` (the slices' focus values), ``ground_truth`` (the
    kinds the stack has) and ``aif``; ``display``: the disparity (else index) truth map
    in the reference grid; ``all_in_focus``: the true all-in-focus image.
    """

    info: dict[str, Any]
    display: np.ndarray | None = None
    all_in_focus: np.ndarray | None = None


class StackState:
    """One stack during a comparison: its sample (loaded at most once, on demand) and the
    ground truth the figures need (cached in ``cache/stack-<key>/``).

    Parameters
    ----------
    source : StackSource
        The stack.
    cache : Path
        The comparison's cache folder.
    """

    def __init__(self, source: StackSource, cache: Path) -> None:
        self.source = source
        self.dir = cache / f"stack-{spec_hash({'v': __version__, 'stack': source.identity})}"
        self._sample: Sample | None = None
        self._error: Exception | None = None

    def sample(self) -> Sample:
        """The loaded sample; raises what loading raised (again, without retrying)."""
        if self._error is not None:
            raise self._error
        if self._sample is None:
            try:
                self._sample = self.source.load()
            except Exception as exc:
                self._error = exc
                raise
        return self._sample

    def truth(self) -> StackTruth | None:
        """The stack's ground truth for the report.

        Returns
        -------
        StackTruth or None
            From the loaded sample, else from the cache, else by loading the sample
            (and caching it); None when the stack cannot be read.
        """
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

    def _read_truth(self, info: dict[str, Any]) -> StackTruth:
        display = None
        if info["display"] is not None:
            display = np.load(self.dir / "display.npy", allow_pickle=False)
        aif = read_image(self.dir / "all_in_focus.png") if info["aif"] else None
        return StackTruth(info, display, aif)

    def _write_truth(self, sample: Sample) -> StackTruth:
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
            write_image(self.dir / "all_in_focus.png", to_storable(sample.all_in_focus))
        text = json.dumps(info, indent=1) + "\n"
        atomic_write_bytes(self.dir / "truth.json", text.encode("utf-8"))
        return StackTruth(info, display, sample.all_in_focus)
