"""Compare pipelines on focal stacks with ground truth and write a report (``dff compare``).

Every pipeline variant runs on every stack; each result is scored against the stack's
ground truth in the result's pixel grid, timed, cached, and gathered into a report
folder::

    from dffcore.eval.compare import compare
    from dffcore.eval.sources import synthetic_stacks
    from dffcore.eval.variants import pipeline_variants

    variants = pipeline_variants(["fast", "best"], grid=["aggregate.params.sigma=1,2"])
    rows = compare(variants, synthetic_stacks("all", frames=8), "report/")

The parts, one module each:

- :mod:`dffcore.eval.variants`: the pipelines (files, ``--set``, ``--grid``);
- :mod:`dffcore.eval.sources`: the stacks (synthetic scenes, dataset samples);
- :mod:`dffcore.eval.scoring`: the scores (``slice.*``, ``disparity.*``, ``depth.*``,
  ``aif.*``: the keys of a row's ``metrics``);
- :mod:`dffcore.eval.cache`: the cache of runs and ground truth in ``REPORT/cache/``;
- :mod:`dffcore.eval.compare_report` and :mod:`dffcore.report.figures`: the report and
  its figures.

Failures: a stack that cannot be read, a stage's :class:`DffError` or any other
exception is recorded in its row (``status`` ``failed`` and a one-line ``error``) and the
other runs go on. Failures are not cached. A re-run computes only the runs missing from
the cache (``force`` recomputes all).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from dffcore.core.errors import DffError, one_line
from dffcore.eval.cache import (
    StackState,
    StackTruth,
    cache_key,
    read_entry,
    read_entry_maps,
    write_entry,
)
from dffcore.eval.compare_report import write_report
from dffcore.eval.scoring import index_to_disparity, score
from dffcore.eval.sources import StackSource
from dffcore.eval.variants import PipelineVariant, unique_name
from dffcore.report.figures import ResultMaps, draw_figures

logger = logging.getLogger(__name__)

#: progress(label, done, total)
ProgressCallback = Callable[[str, int, int], None]


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
        From :func:`dffcore.eval.variants.pipeline_variants`; names must be unique.
    stacks : sequence of StackSource
        From :func:`dffcore.eval.sources.synthetic_stacks` or
        :func:`dffcore.eval.sources.dataset_stacks`; names must be unique.
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
        ``stages``, ``frames``, ``shape``, ``crop``, ``metrics``
        (:func:`dffcore.eval.scoring.score`).
    """
    from dffcore.io.outputs import check_output_dir

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
    root = check_output_dir(out)
    cache = root / "cache"
    cache.mkdir(exist_ok=True)
    total, done = len(pipelines) * len(stacks), 0
    rows: list[dict[str, Any]] = []
    figures: dict[str, list[str]] = {}
    truths: dict[str, StackTruth | None] = {}
    stems: set[str] = set()
    for source in stacks:
        state = StackState(source, cache)
        stack_rows = []
        for variant in pipelines:
            key = cache_key(variant.spec, source.identity)
            row = None if force else read_entry(cache / key)
            cached = row is not None
            if row is None:
                row = _compute(variant, state, cache / key, key)
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
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", source.name).strip("._") or "stack"
        figures[source.name] = _draw(root, unique_name(stem, stems), truth, stack_rows)
        logger.info("figures of %s: %s", source.name, ", ".join(figures[source.name]))
        rows.extend(stack_rows)
    write_report(root, pipelines, stacks, rows, truths, figures)
    return rows


def _compute(variant: PipelineVariant, state: StackState, entry: Path, key: str) -> dict[str, Any]:
    """Run ``variant`` on the stack, score it and cache the result; a failure is a row."""
    from dffcore.run.engine import run_pipeline

    row: dict[str, Any] = {"status": "failed", "error": "", "cache": f"cache/{key}"}
    try:
        sample = state.sample()
        run = run_pipeline(variant.spec, sample.stack)
        metrics = score(run, sample)
    except Exception as exc:  # recorded; the other runs go on
        row["error"] = one_line(exc)
        logger.warning("%s on %s: failed: %s", variant.name, state.source.name, row["error"])
        return row
    peaks = [r.peak_rss_mb for r in run.records if r.peak_rss_mb is not None]
    row.update(
        status="done",
        seconds=run.seconds,
        peak_rss_mb=max(peaks, default=math.nan),
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
    write_entry(entry, row, run.result.index, run.result.all_in_focus)
    return row


def _draw(
    root: Path, stem: str, truth: StackTruth | None, rows: Sequence[dict[str, Any]]
) -> list[str]:
    """The figures of one stack from its cached results (in the truth's unit)."""
    info = truth.info if truth is not None else {}
    kind = info.get("display")
    results = []
    for row in rows:
        index = aif = None
        if row["status"] == "done":
            index, aif = read_entry_maps(root / row["cache"])
            if kind == "disparity":
                index = index_to_disparity(index, info["focus"])
        results.append(ResultMaps(row["pipeline"], index, aif, row.get("crop")))
    return draw_figures(
        root,
        stem,
        results,
        truth=truth.display if truth is not None else None,
        true_aif=truth.all_in_focus if truth is not None else None,
        shape=info.get("shape"),
        label="disparity (px)" if kind == "disparity" else "slice index",
    )
