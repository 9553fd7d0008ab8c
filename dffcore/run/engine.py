"""Run a pipeline spec on a focal stack: one engine, three strategies.

The engine aligns the stack (in memory, or streamed to disk under a memory budget:
:mod:`dffcore.run.frames`), splits the aligned frames into regions of rows as the
:class:`~dffcore.run.plan.RunPlan` says (the whole image, one strip per core, or bands
that fit the budget), runs the stages after alignment on every region
(:func:`run_stages`) and assembles the regions' own rows. Every stage is timed and its
memory measured as it runs (:class:`~dffcore.run.records.Recorder`).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dffcore.core.components import Component, Context
from dffcore.core.data import AlignedStack, Alignment, DepthResult, FocalStack, FocusVolume
from dffcore.core.errors import DffError
from dffcore.core.spec import PipelineSpec, StageSpec
from dffcore.ops.depth import index_to_depth
from dffcore.ops.evidence import CurveSums
from dffcore.ops.filters import opencv_threads, pick, take_frames
from dffcore.run.checks import (
    check_aligned,
    check_contexts,
    check_output,
    checked_measure,
    guard,
)
from dffcore.run.frames import AlignedFrames, InMemoryFrames, streamed_frames
from dffcore.run.plan import RunPlan, align_scale, band_plan, in_memory_plan
from dffcore.run.records import Recorder, StageRecord

logger = logging.getLogger(__name__)

#: progress(stage label, done, total)
ProgressCallback = Callable[[str, int, int], None]
#: call(stage, component, one argument tuple per region) -> one output per region
StageCall = Callable[[StageSpec, Component, Sequence[tuple[Any, ...]]], list[Any]]


@dataclass
class Run:
    """Everything a run produced: the result, how it was aligned and split, the records.

    ``aligned`` (the aligned frames) and ``volume`` (the focus volume) are kept only
    when :func:`run_pipeline` is asked for ``intermediates``; otherwise both are None,
    whatever the number of cores. ``alignment`` is None only for an aligner that warps
    its frames itself.
    """

    spec: PipelineSpec
    stack: FocalStack
    reference: int
    alignment: Alignment | None
    #: (x, y, w, h) of the reference grid the outputs cover, or None (the whole grid)
    crop: tuple[int, int, int, int] | None
    result: DepthResult
    records: list[StageRecord]
    plan: dict[str, Any]
    #: licence notices of third-party code the run used (``Component.notices``)
    notices: list[str] = field(default_factory=list)
    aligned: AlignedStack | None = None
    volume: FocusVolume | None = None

    @property
    def seconds(self) -> float:
        return sum(r.seconds for r in self.records)


def run_pipeline(
    spec: PipelineSpec,
    stack: FocalStack,
    *,
    progress: ProgressCallback | None = None,
    jobs: int | None = None,
    memory: int | None = None,
    band_rows: int | None = None,
    intermediates: bool = False,
) -> Run:
    """Run every stage of ``spec`` on ``stack`` and return a :class:`Run`.

    ``jobs`` threads (default: every core) for the stages' thread pools and OpenCV.
    With a memory budget (``memory`` bytes, else ``spec.memory``), or a stack read with
    ``lazy=True``, frames are streamed and the image is processed in bands that fit the
    budget (``band_rows`` forces the band height); otherwise the frames are held in
    memory and processed whole, or in one strip per core when every stage is local.
    ``intermediates`` keeps the aligned frames and the focus volume in the run (a
    whole-image run in memory; refused with a budget).
    """
    jobs = jobs or os.cpu_count() or 1
    budget = memory if memory is not None else spec.memory
    streamed = budget is not None or band_rows is not None
    streamed = streamed or not isinstance(stack.frames, np.ndarray)
    if intermediates and streamed:
        raise DffError(
            "the aligned frames and the focus volume are kept only by a run in memory: "
            "give no memory budget (--memory) and read the stack with lazy=False"
        )
    report = progress or _silent
    stages = spec.after_alignment()
    components = [guard(stage, stage.build) for stage in stages]
    checked_measure(stages[0], components[0])
    check_contexts(stages, components)
    aligner = guard(spec.align, spec.align.build)
    recorder = Recorder()
    notices = _Notices([(spec.align, aligner), *zip(stages, components, strict=True)])

    def align_call(frames: FocalStack) -> AlignedStack:
        notices.announce(spec.align)
        ctx = Context(lambda d, t: report(f"align {spec.align.name}", d, t), jobs)
        aligned = invoke(spec.align, aligner, (frames,), ctx)
        check_aligned(spec.align, aligned, frames.n)
        return aligned

    with opencv_threads(jobs), contextlib.ExitStack() as scope:
        frames: AlignedFrames
        if streamed:
            scale = align_scale(stack.frames.shape, stack.frames.dtype, budget)

            def ticks(what: str) -> Callable[[int, int], None]:
                return lambda done, total: report(f"align ({what})", done, total)

            def align_small(small: FocalStack) -> Alignment:
                return require_alignment(spec.align, align_call(small))

            opened = streamed_frames(stack, align_small, scale, ticks)
            frames = recorder.measure(
                spec.align.path, spec.align.name, lambda: scope.enter_context(opened)
            )
            plan = band_plan(frames.shape, frames.dtype, components, budget, band_rows, scale)
        else:
            aligned = recorder.measure(spec.align.path, spec.align.name, lambda: align_call(stack))
            frames = InMemoryFrames(aligned)
            plan = in_memory_plan(components, frames.shape[1], jobs, intermediates)
        logger.info("run plan: %s", plan.as_dict(frames.shape[1]))
        # bands: one progress line for the bands, not one per stage of every band
        stage_report = report if plan.mode != "bands" else _silent
        call = _stage_caller(recorder, stage_report, jobs, notices)
        result, volume = process(plan, frames, stages, components, call, report)
    warn_unreliable(stack, result)
    depth = None
    if stack.focus_distances is not None:
        depth = index_to_depth(result.index, stack.focus_distances, stack.focus_unit or "m")
    return Run(
        spec=spec,
        stack=stack,
        reference=frames.reference,
        alignment=frames.alignment,
        crop=frames.crop,
        result=result.replace(depth=depth),
        records=recorder.as_list(),
        plan=plan.as_dict(frames.shape[1]),
        notices=notices.shown,
        aligned=frames.rows(0, frames.shape[1]) if intermediates else None,
        volume=volume if intermediates else None,
    )


#: a frame covering less of the output grid, or a result with more unreliable pixels than
#: this share, is named in a warning
UNRELIABLE_SHARE = 0.5


def warn_unreliable(stack: FocalStack, result: DepthResult) -> None:
    """Say which frames lack data after alignment and when most depth is unreliable: a run
    never ends with nearly every pixel at confidence 0 without a word."""
    coverage = result.diagnostics.get("frame_coverage", [])
    poor = [(i, c) for i, c in enumerate(coverage) if c < UNRELIABLE_SHARE]
    if poor:
        names = ", ".join(
            f"{i} ({stack.paths[i].name if i < len(stack.paths) else f'#{i}'}, {c:.0%})"
            for i, c in poor[:6]
        )
        more = f" and {len(poor) - 6} more" if len(poor) > 6 else ""
        logger.warning(
            "after alignment, frames %s%s cover less than half of the output; depth that "
            "relies on them gets confidence 0",
            names,
            more,
        )
    evidence = result.diagnostics.get("focus_evidence", 1.0)
    if evidence < UNRELIABLE_SHARE:
        logger.warning(
            "the frames hold almost no focus information (focus evidence %.2f of 1): "
            "noise, identical frames or no texture? the depth is a guess; confidence "
            "scaled down to match",
            evidence,
        )
        return
    unreliable = float((result.confidence == 0).mean())
    if unreliable > UNRELIABLE_SHARE:
        logger.warning(
            "%.0f %% of the pixels are unreliable (confidence 0)%s",
            100 * unreliable,
            ": the alignment left frames without data" if poor else "",
        )


def require_alignment(stage: StageSpec, aligned: AlignedStack) -> Alignment:
    """The :class:`Alignment` an aligner returned; a clear error for one that gives none."""
    if aligned.alignment is None:
        raise DffError(
            f"{stage.path} ({stage.name}): the aligner warps frames itself and returns no "
            "Alignment (transforms, crop, interpolation), so its frames cannot be streamed "
            "under a memory budget; run without --memory / 'memory:', or return "
            "dffcore.align.apply.apply_alignment(stack, alignment) from the aligner"
        )
    return aligned.alignment


def process(
    plan: RunPlan,
    frames: AlignedFrames,
    stages: list[StageSpec],
    components: list[Component],
    call: StageCall,
    report: ProgressCallback,
) -> tuple[DepthResult, FocusVolume | None]:
    """The stages after alignment on every region of ``plan``; the regions' own rows are
    kept and assembled. Returns the result and, for a single region, the focus volume."""
    n, h, w, c = frames.shape
    index = np.empty((h, w), np.float32)
    confidence = np.empty((h, w), np.float32)
    aif = np.empty((h, w, c), frames.dtype)
    regions = plan.regions(h)
    groups = [regions] if plan.parallel else [[r] for r in regions]
    volume: FocusVolume | None = None
    diagnostics: list[dict[str, Any]] = []
    covered = np.zeros(n)  # pixels of the output grid each frame has data for
    curves = CurveSums.for_image(h, w)  # is there focus information at all?
    for done, group in enumerate(groups, 1):
        # windows start on even rows: stages that work at half resolution (best's local
        # estimate) then sample the same rows in every band as in the whole image
        windows = [(_even(max(a - plan.margin, 0)), min(b + plan.margin, h)) for a, b in group]
        parts = [frames.rows(ra, rb) for ra, rb in windows]
        results, volumes = run_stages(stages, components, parts, call)
        regions_of = zip(group, windows, parts, results, volumes, strict=True)
        for (a, b), (ra, _), part, res, vol in regions_of:
            keep = slice(a - ra, b - ra)
            index[a:b] = np.clip(np.nan_to_num(res.index[keep], nan=0.0), 0, n - 1)
            confidence[a:b] = np.clip(np.nan_to_num(res.confidence[keep], nan=0.0), 0, 1)
            curves.add(vol, keep, ra)
            if part.valid is not None:
                confidence[a:b][unmeasured(index[a:b], part.valid[:, keep])] = 0
                covered += part.valid[:, keep].sum(axis=(1, 2))
            else:
                covered += (b - a) * w
            aif[a:b] = res.all_in_focus[keep].reshape(b - a, w, c)
            diagnostics.append(res.diagnostics)
        if len(regions) == 1:
            volume = volumes[0]
        # the next band is read only after this one's frames, volumes and results are
        # gone: a band never shares the budget with the one before it
        del parts, results, volumes, regions_of, part, res, vol
        if plan.mode == "bands":
            report("bands", done, len(groups))
    evidence = curves.evidence()  # ~0 for a stack without focus information
    if evidence < 1:
        confidence *= np.float32(evidence)
    if len(diagnostics) > 1:  # one region's diagnostics each (e.g. graph-cut energies)
        diagnostics = [{"regions": diagnostics}] if any(diagnostics) else [{}]
    diagnostics[0] = {
        **diagnostics[0],
        "frame_coverage": np.round(covered / (h * w), 4).tolist(),
        "focus_evidence": evidence,
    }
    return DepthResult(index, confidence, aif, diagnostics=diagnostics[0]), volume


def _even(row: int) -> int:
    return row - row % 2


def run_stages(
    stages: list[StageSpec],
    components: list[Component],
    parts: list[AlignedStack],
    call: StageCall,
) -> tuple[list[DepthResult], list[FocusVolume]]:
    """Focus, aggregate, regularise and composite every part (a region of rows), one
    stage at a time through ``call``; the all-in-focus image is selection at the final
    depth when no stage made one. Every stage's output is checked
    (:func:`dffcore.run.checks.check_output`) before the next stage sees it."""

    def checked(stage: StageSpec, component: Component, args: list[tuple[Any, ...]]) -> list:
        outs = call(stage, component, args)
        for out, part in zip(outs, parts, strict=True):
            check_output(stage, out, part)
        return outs

    volumes: list[FocusVolume] = checked(stages[0], components[0], [(p,) for p in parts])
    results: list[DepthResult] = checked(
        stages[1], components[1], list(zip(volumes, parts, strict=True))
    )
    for stage, component in zip(stages[2:], components[2:], strict=True):
        args = list(zip(results, volumes, parts, strict=True))
        outs = checked(stage, component, args)
        if stage.kind == "composite":
            results = [r.replace(all_in_focus=o) for r, o in zip(results, outs, strict=True)]
        else:
            results = outs
    for i, (res, part) in enumerate(zip(results, parts, strict=True)):
        if res.all_in_focus is None:
            aif = take_frames(part.frames, np.rint(res.index), part.valid)
            results[i] = res.replace(all_in_focus=aif)
    return results, volumes


def invoke(
    stage: StageSpec, component: Callable[..., Any], args: tuple[Any, ...], ctx: Context
) -> Any:
    """``component(*args, ctx)`` at the plugin boundary (:func:`dffcore.run.checks.guard`):
    its user errors prefixed with the stage's YAML path, a plugin's other exceptions (and
    ``sys.exit()``) a :class:`~dffcore.run.checks.PluginFailure` naming its distribution."""
    return guard(stage, component, *args, ctx)


def unmeasured(index: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Pixels where the frame at, before or after the depth has no data: not measured."""
    n = valid.shape[0]
    near = np.rint(index).astype(np.intp)
    out = np.zeros(index.shape, bool)
    for k in (near - 1, near, near + 1):
        out |= ~pick(valid, np.clip(k, 0, n - 1))
    return out


class _Notices:
    """Licence notices of the run's components, each logged once, when it first runs."""

    def __init__(self, pairs: list[tuple[StageSpec, Component]]) -> None:
        self.pending = {stage.path: guard(stage, component.notices) for stage, component in pairs}
        self.shown: list[str] = []

    def announce(self, stage: StageSpec) -> None:
        for text in self.pending.pop(stage.path, []):
            if text not in self.shown:
                logger.warning("licence: %s", text)
                self.shown.append(text)


def _stage_caller(
    recorder: Recorder, report: ProgressCallback, jobs: int, notices: _Notices
) -> StageCall:
    """A :data:`StageCall`: one region with ``jobs`` threads, or several regions side by
    side with one thread each (and one OpenCV thread each); recorded as one stage."""

    def call(stage: StageSpec, component: Component, arglists: Sequence[tuple[Any, ...]]):
        notices.announce(stage)
        label = f"{stage.path} {stage.name}"

        def work() -> list[Any]:
            if len(arglists) == 1:
                ctx = Context(lambda d, t: report(label, d, t), jobs)
                return [invoke(stage, component, arglists[0], ctx)]
            outs: list[Any] = [None] * len(arglists)

            def one(i: int) -> None:
                outs[i] = invoke(stage, component, arglists[i], Context(jobs=1))

            with opencv_threads(1), ThreadPoolExecutor(len(arglists)) as pool:
                for done, _ in enumerate(pool.map(one, range(len(arglists))), 1):
                    report(label, done, len(arglists))
            return outs

        return recorder.measure(stage.path, stage.name, work)

    return call


def _silent(label: str, done: int, total: int) -> None:
    """A progress callback that shows nothing."""
