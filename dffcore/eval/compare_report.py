"""The report of ``dff compare``: ``report.md``, ``report.html``, ``results.csv``, ``results.json``.

:func:`write_report` turns the rows of :func:`dffcore.eval.compare.compare` into a
document of :mod:`dffcore.report.tables` blocks: the stacks and pipelines compared, a
summary of the headline metrics (means over the stacks), one table per metric (one row
per pipeline, one column per stack, best values in bold), time and memory, failures, the
figures and the protocol. ``results.csv`` has one line per run, ``results.json`` every
row with the resolved specs.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dffcore.eval.cache import StackTruth
from dffcore.eval.metrics import METRIC_INFO
from dffcore.eval.sources import StackSource
from dffcore.eval.variants import PipelineVariant
from dffcore.io.images import atomic_write_bytes
from dffcore.report.tables import (
    Block,
    BulletList,
    Heading,
    Images,
    Paragraph,
    Table,
    to_csv,
    to_html,
    to_markdown,
)
from dffcore.version import __version__

#: (group, title, metric keys) in report order
GROUPS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (
        "slice",
        "Depth in slices (fractional frame index)",
        ("mae", "mae_edges", "mae_inside", "rmse", "bad_0.5", "bad_1", "bad_2", "outside_sweep"),
    ),
    (
        "disparity",
        "Disparity (px), HCI 4D light-field benchmark protocol",
        ("mse", "mse_edges", "mse_inside", "rmse", "bump"),
    ),
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
    "slice.mae_edges": (
        "mean absolute error within 5 px of a true depth jump of more than half a slice",
        "lower",
    ),
    "slice.mae_inside": ("mean absolute error farther than 5 px from a depth jump", "lower"),
    "slice.rmse": ("root-mean-square error (slices)", "lower"),
    "slice.outside_sweep": (
        "fraction of scored pixels whose truth lies outside the sweep (kept in the scores)",
        None,
    ),
    "disparity.mse": ("mean squared error (px²); HCI tables show this ×100", "lower"),
    "disparity.mse_edges": (
        "mean squared error within 5 px of a true disparity jump of more than half a slice",
        "lower",
    ),
    "disparity.mse_inside": ("mean squared error farther than 5 px from a jump", "lower"),
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
    "index. `mae_edges` is the MAE within 5 px of a place where the true index jumps by "
    "more than half a slice between neighbouring pixels (occlusion boundaries), "
    "`mae_inside` the MAE of the other pixels; disparity's `mse_edges` and `mse_inside` "
    "split the same way (a jump: more than half the mean spacing of the focus "
    "disparities). The truth is not clipped to the sweep [0, N-1]: pixels outside it stay in "
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


#: the headline metrics of the summary table, when the stacks have what they need
SUMMARY_KEYS = (
    "slice.mae",
    "slice.mae_edges",
    "slice.bad_1",
    "disparity.mse",
    "disparity.mse_edges",
    "disparity.bump",
    "depth.rmse",
    "depth.abs_rel",
    "aif.psnr",
    "seconds",
    "peak_rss_mb",
)
FIGURES_NOTE = (
    "Depth: ground truth and each pipeline on one colour scale (grey: no data, e.g. outside "
    "an aligner's crop). Error: |prediction − truth| on one scale, capped at the 99th "
    "percentile of all errors. All-in-focus: a 128×128 crop around the strongest depth edge "
    "of the ground truth."
)


def metric_info(key: str) -> tuple[str, str | None]:
    """Description of a column of the report.

    Parameters
    ----------
    key : str
        ``"group.metric"`` (a key of a row's ``metrics``) or a key of :data:`PERFORMANCE`.

    Returns
    -------
    tuple of (str, str or None)
        The description and ``"lower"`` or ``"higher"`` (which is better) or None.
    """
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


def _present(key: str, rows: Sequence[dict[str, Any]]) -> bool:
    return any(math.isfinite(_value(r, key)) for r in rows)


def metric_table(
    key: str, pipelines: Sequence[str], stacks: Sequence[str], rows: Sequence[dict[str, Any]]
) -> Table:
    """One metric's table: a row per pipeline, a column per stack and the mean.

    Parameters
    ----------
    key : str
        The metric (see :func:`metric_info`).
    pipelines, stacks : sequence of str
        The names, in report order.
    rows : sequence of dict
        The comparison's rows, one per (pipeline, stack).

    Returns
    -------
    Table
        Values with 4 significant digits, ``failed`` for a failed run, ``–`` for no
        value; the mean is over the stacks (none when one is missing). The best value of
        each column is bold when the metric has a better direction.
    """
    by = {(r["pipeline"], r["stack"]): r for r in rows}
    values = np.array([[_value(by[p, s], key) for s in stacks] for p in pipelines], np.float64)
    with np.errstate(invalid="ignore"):
        means = values.mean(axis=1)  # NaN when any stack is missing
    full = np.concatenate([values, means[:, None]], axis=1)
    better = metric_info(key)[1]
    bold = np.zeros((len(pipelines), full.shape[1] + 1), bool)  # column 0: the names
    for j in range(full.shape[1]):
        col = full[:, j]
        if better and np.isfinite(col).any() and len(pipelines) > 1:
            best = np.nanmin(col) if better == "lower" else np.nanmax(col)
            bold[:, j + 1] = col == best
    cells = []
    for i, p in enumerate(pipelines):
        line = [p]
        for j in range(full.shape[1]):
            failed = j < len(stacks) and by[p, stacks[j]]["status"] == "failed"
            line.append("failed" if failed else _fmt(full[i, j]))
        cells.append(line)
    return Table(["pipeline", *stacks, "mean"], cells, bold.tolist())


def summary_table(
    pipelines: Sequence[str], stacks: Sequence[str], rows: Sequence[dict[str, Any]]
) -> Table:
    """One row per pipeline, one column per headline metric (:data:`SUMMARY_KEYS` that
    have a value): its mean over the stacks, the best bold (see :func:`metric_table`)."""
    keys = [k for k in SUMMARY_KEYS if _present(k, rows)]
    columns = [metric_table(k, pipelines, stacks, rows) for k in keys]
    cells = [[p] + [col.rows[i][-1] for col in columns] for i, p in enumerate(pipelines)]
    bold = [[False] + [col.is_bold(i, -1) for col in columns] for i in range(len(pipelines))]
    return Table(["pipeline", *keys], cells, bold)


def report_blocks(
    pipelines: Sequence[PipelineVariant],
    stacks: Sequence[StackSource],
    rows: Sequence[dict[str, Any]],
    truths: dict[str, StackTruth | None],
    figures: dict[str, list[str]],
    created: str,
) -> list[Block]:
    """The report as a document (see the module doc).

    Parameters
    ----------
    pipelines : sequence of PipelineVariant
        The variants compared.
    stacks : sequence of StackSource
        The stacks compared.
    rows : sequence of dict
        The comparison's rows.
    truths : dict
        Stack name -> its ground truth (None: unreadable), for the stacks table.
    figures : dict
        Stack name -> the figure files written for it.
    created : str
        The time stamp shown.

    Returns
    -------
    list of Block
    """
    pnames = [p.name for p in pipelines]
    snames = [s.name for s in stacks]
    count = {"computed": 0, "cached": 0, "failed": 0}
    for r in rows:
        count["failed" if r["status"] == "failed" else "cached" if r["cached"] else "computed"] += 1
    blocks: list[Block] = [
        Heading(1, "dff compare report"),
        Paragraph(
            f"Created {created} by dffcore {__version__}: {len(pnames)} pipelines × "
            f"{len(snames)} stacks, {count['computed']} runs computed, {count['cached']} "
            f"from the cache, {count['failed']} failed."
        ),
        Heading(2, "Stacks"),
    ]
    stack_cells = []
    for s in stacks:
        truth = truths.get(s.name)
        info = (truth.info if truth is not None else None) or {}
        size = f"{info['shape'][1]}x{info['shape'][0]}" if info.get("shape") else "–"
        gt = ", ".join(info.get("ground_truth", [])) or "–"
        stack_cells.append([s.name, s.description, str(info.get("frames", "–")), size, gt])
    blocks.append(Table(["stack", "source", "frames", "size", "ground truth"], stack_cells))
    blocks.append(Heading(2, "Pipelines"))
    pipe_cells = [
        [p.name, p.source, p.spec.spec_hash(), " ".join(p.overrides) or "–"] for p in pipelines
    ]
    blocks.append(Table(["pipeline", "file", "spec hash", "overrides"], pipe_cells))
    blocks.append(Heading(2, "Summary"))
    blocks.append(
        Paragraph(
            "Means over the stacks (best in bold); the sections below define each "
            "metric and give every stack's value."
        )
    )
    blocks.append(summary_table(pnames, snames, rows))
    for group, title, keys in GROUPS:
        present = [f"{group}.{k}" for k in keys if _present(f"{group}.{k}", rows)]
        if not present:
            continue
        blocks.append(Heading(2, title))
        for key in present:
            desc, better = metric_info(key)
            note = f", {better} is better" if better else ""
            blocks.append(Heading(3, f"{key.split('.', 1)[1]}: {desc}{note}"))
            blocks.append(metric_table(key, pnames, snames, rows))
    blocks.append(Heading(2, "Time and memory"))
    for key, (desc, better) in PERFORMANCE.items():
        blocks.append(Heading(3, f"{key}: {desc}, {better} is better"))
        blocks.append(metric_table(key, pnames, snames, rows))
    failures = [r for r in rows if r["status"] == "failed"]
    if failures:
        blocks.append(Heading(2, "Failures"))
        cells = [[r["pipeline"], r["stack"], r["error"]] for r in failures]
        blocks.append(Table(["pipeline", "stack", "error"], cells))
    if any(figures.values()):
        blocks.append(Heading(2, "Figures"))
        blocks.append(Paragraph(FIGURES_NOTE))
        for s in snames:
            if figures.get(s):
                blocks.append(Heading(3, s))
                blocks.append(Images(figures[s]))
    blocks.append(Heading(2, "Protocol"))
    blocks.append(BulletList(PROTOCOL))
    return blocks


def results_csv(rows: Sequence[dict[str, Any]]) -> str:
    """``results.csv``: one line per run with its scores and per-stage time and memory."""
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
    lines = []
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
        lines.append(
            [
                *base,
                *(r.get("metrics", {}).get(k) for k in metric_keys),
                *(stages.get(k) for k in stage_keys),
                r.get("error", ""),
            ]
        )
    return to_csv([*head, *metric_keys, *stage_keys, "error"], lines)


def _clean(value: Any) -> Any:
    """JSON-ready: NaN and infinities become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def write_report(
    root: Path,
    pipelines: Sequence[PipelineVariant],
    stacks: Sequence[StackSource],
    rows: Sequence[dict[str, Any]],
    truths: dict[str, StackTruth | None],
    figures: dict[str, list[str]],
) -> list[Path]:
    """Write ``report.md``, ``report.html``, ``results.csv`` and ``results.json``.

    Parameters
    ----------
    root : Path
        The report folder.
    pipelines, stacks, rows, truths, figures
        As for :func:`report_blocks`.

    Returns
    -------
    list of Path
        The files written (atomically).
    """
    created = dt.datetime.now().astimezone().isoformat(timespec="seconds")
    blocks = report_blocks(pipelines, stacks, rows, truths, figures, created)
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
        "report.md": to_markdown(blocks),
        "report.html": to_html(blocks, "dff compare report"),
        "results.csv": results_csv(rows),
        "results.json": json.dumps(_clean(results), indent=1) + "\n",
    }
    for name, text in files.items():
        atomic_write_bytes(root / name, text.encode("utf-8"))
    return [root / n for n in files]
