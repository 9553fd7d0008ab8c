"""The ``dff`` command line. Only this module prints and draws progress bars."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from typing import TextIO

from dffcore.core.errors import DffError, SpecError
from dffcore.core.kinds import COMPONENT_KINDS

logger = logging.getLogger("dffcore.cli")

# The stages run their own thread pools and OpenCV's threads; BLAS threads on top of them
# only oversubscribe the cores (the alignment path's small matrix products waited 70 ms
# for them on a busy 2-core machine). Set before NumPy is first imported; a user's own
# OPENBLAS_NUM_THREADS wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


class ProgressBar:
    """One line per stage on a terminal: ``align homography  [#####-----] 16/32  0.8s``."""

    def __init__(self, stream: TextIO, enabled: bool) -> None:
        self.stream, self.enabled = stream, enabled
        self.label: str | None = None
        self.t0 = time.perf_counter()
        self.last = 0.0

    def __call__(self, label: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if label != self.label:
            if self.label is not None:
                self.stream.write("\n")
            self.label, self.t0, self.last = label, now, 0.0
        elif done < total and now - self.last < 0.1:
            return
        self.last = now
        width = 24
        filled = int(width * done / max(total, 1))
        bar = "#" * filled + "-" * (width - filled)
        self.stream.write(f"\r{label:<28.28} [{bar}] {done}/{total} {now - self.t0:6.1f}s")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.label is not None:
            self.stream.write("\n")
            self.stream.flush()
            self.label = None


class _Formatter(logging.Formatter):
    """``dff: warning: message``: one line per record, the level in lower case."""

    def format(self, record: logging.LogRecord) -> str:
        return f"dff: {record.levelname.lower()}: {record.getMessage()}"


ALLOW_CORRUPT_HELP = (
    "use frames with corrupt or truncated data (a warning names each) instead of stopping "
    "with an error (also: environment variable DFF_ALLOW_CORRUPT=1)"
)


def _read_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--frames",
        metavar="START:STOP:STEP",
        help="use these frames, 0-based like a Python slice (e.g. 10:200:2, ::3)",
    )
    p.add_argument(
        "--reader",
        metavar="NAME",
        help="read the stack with this reader instead of choosing it by the file names",
    )
    p.add_argument(
        "--read",
        dest="read_params",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a parameter of the reader, e.g. series=1 or channel=0 for a TIFF",
    )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dff", description="Depth from focus with pluggable stages.")
    p.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    r = sub.add_parser("run", help="run a pipeline on a focal stack")
    r.add_argument("pipeline", help="pipeline YAML file, or a built-in name (classic)")
    r.add_argument(
        "stack",
        nargs="+",
        help="folder of frames, a glob pattern, image files, or one file holding a whole "
        "stack (a z-stack TIFF, a video: see `dff plugins --kind read`)",
    )
    r.add_argument("-o", "--out", required=True, help="output folder")
    r.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a spec value, e.g. align.params.reference=middle",
    )
    r.add_argument("--reverse", action="store_true", help="reverse the frame order")
    _read_options(r)
    r.add_argument("--allow-corrupt", action="store_true", help=ALLOW_CORRUPT_HELP)
    r.add_argument("--focus-distances", metavar="FILE", help="sidecar with one distance per frame")
    r.add_argument(
        "--memory",
        metavar="SIZE",
        help="memory budget, e.g. 4GB: frames are read one at a time and the image is "
        "processed in bands that fit (also 'memory:' in the YAML)",
    )
    r.add_argument(
        "--ply",
        action="store_true",
        help="also write points.ply, a metric point cloud (needs focus distances)",
    )
    r.add_argument("--jobs", type=int, default=None, help="worker threads (default: all cores)")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")

    v = sub.add_parser("validate", help="check a pipeline spec without running it")
    v.add_argument("pipeline")
    v.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")

    pl = sub.add_parser("plugins", help="list the available components")
    pl.add_argument("--kind", choices=COMPONENT_KINDS)
    pl.add_argument("--json", action="store_true", help="machine-readable output")

    d = sub.add_parser("demo", help="render a synthetic stack with ground truth and run on it")
    d.add_argument("-o", "--out", default="dff-demo", help="output folder (default: dff-demo)")
    d.add_argument("--pipeline", default="classic", help="pipeline file or built-in name")
    d.add_argument("--scene", default="default", help="synthetic scene name")
    d.add_argument("--frames", type=int, default=16, help="number of frames to render")
    d.add_argument("-q", "--quiet", action="store_true")

    s = sub.add_parser("synth", help="render a synthetic focal stack with ground truth")
    s.add_argument("out", help="folder to write the frames and ground truth into")
    s.add_argument("--scene", default="default", help="default, planes, slant, steps, ...")
    s.add_argument("--frames", type=int, default=16)
    s.add_argument("--size", default="240x320", help="HxW, e.g. 360x640")
    s.add_argument("--noise", type=float, default=0.0, help="noise σ in 8-bit grey levels")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--flicker", type=float, default=0.0, help="exposure gain std, e.g. 0.02")
    s.add_argument(
        "--breathing", type=float, default=0.0, help="zoom over the sweep, e.g. 0.03 = 3 %%"
    )
    s.add_argument("--shake-px", type=float, default=0.0, help="hand shake: shift std (px)")
    s.add_argument("--shake-deg", type=float, default=0.0, help="hand shake: rotation std (°)")
    s.add_argument(
        "--format",
        choices=["folder", "ome-tiff", "imagej-tiff"],
        default="folder",
        help="folder: one PNG a frame (default); ome-tiff / imagej-tiff: one 16-bit grey "
        "z-stack OUT/stack.ome.tif or OUT/stack.tif with its z step",
    )
    s.add_argument(
        "--z-step", type=float, default=1.0, metavar="UM", help="TIFF z step in µm (default 1)"
    )

    b = sub.add_parser("batch", help="run a pipeline on many stacks, locally or on Dask")
    b.add_argument("pipeline", help="pipeline YAML file, or a built-in name (classic)")
    b.add_argument(
        "stacks",
        nargs="+",
        help="stack folders, stack files (a z-stack TIFF, a video), glob patterns, or "
        "@list.txt files",
    )
    b.add_argument("-o", "--out", required=True, help="output root: one folder per stack")
    b.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    b.add_argument("--executor", choices=["local", "dask"], default="local")
    b.add_argument("--scheduler", metavar="ADDRESS", help="Dask scheduler, e.g. tcp://host:8786")
    b.add_argument("--workers", type=int, help="Dask local cluster worker processes (default 2)")
    b.add_argument("--jobs", type=int, default=1, help="local worker processes (default 1)")
    b.add_argument("--retries", type=int, default=2, help="Dask retries of a failed task")
    b.add_argument("--force", action="store_true", help="recompute finished stacks")
    _read_options(b)
    b.add_argument("--allow-corrupt", action="store_true", help=ALLOW_CORRUPT_HELP)
    b.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")

    c = sub.add_parser("compare", help="compare pipelines on stacks with ground truth: a report")
    c.add_argument("pipelines", nargs="+", metavar="PIPELINE", help="YAML files or built-in names")
    src = c.add_mutually_exclusive_group(required=True)
    src.add_argument("--synth", metavar="SCENE[,SCENE...]", help="synthetic scenes ('all': every)")
    src.add_argument("--data", metavar="PATH", help="a dataset: dffcore, hci, ddff12 or fod500")
    c.add_argument("--kind", default=None, help="dataset layout of --data (default: auto)")
    c.add_argument("-o", "--out", required=True, metavar="REPORT", help="report folder")
    c.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    c.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=V1,V2,...",
        help="expand the one pipeline into variants (cartesian product over several --grid)",
    )
    c.add_argument("--frames", type=int, help="--synth: frames per stack (default 16)")
    c.add_argument("--size", help="--synth: HxW (default 240x320)")
    c.add_argument("--noise", type=float, help="--synth: noise σ in grey levels (default 0)")
    c.add_argument("--seed", type=int, help="--synth: seed (default 0)")
    c.add_argument("--limit", type=int, help="--data: only the first N samples")
    c.add_argument("--force", action="store_true", help="recompute cached results")
    c.add_argument("--allow-corrupt", action="store_true", help=ALLOW_CORRUPT_HELP)
    c.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    level = logging.WARNING - 10 * args.verbose
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    logging.basicConfig(level=level, handlers=[handler])
    try:
        _check_common(args)
        return _COMMANDS[args.command](args)
    except SpecError as exc:
        for line in exc.problems:
            print(f"dff: error: {line}", file=sys.stderr)
        return 2
    except DffError as exc:
        print(f"dff: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dff: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `dff plugins | head`: the reader is gone; stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except MemoryError as exc:  # outside a stage (a stage's own names the stage)
        what = f": {str(exc).splitlines()[0]}" if str(exc) else ""
        print(f"dff: error: out of memory{what}; try --memory SIZE", file=sys.stderr)
        return 1
    except Exception as exc:
        if args.debug:
            raise
        msg = str(exc).splitlines()[0] if str(exc) else ""
        print(
            f"dff: internal error: {type(exc).__name__}: {msg} (rerun with --debug for the "
            "traceback and please report it)",
            file=sys.stderr,
        )
        return 1


def _check_common(args: argparse.Namespace) -> None:
    """Options several commands share: an output folder must be named, threads >= 1."""
    out = getattr(args, "out", None)
    if out is not None and not str(out).strip():
        raise DffError("-o/--out: the output folder name is empty; name a folder (-o result)")
    jobs = getattr(args, "jobs", None)
    if args.command == "run" and jobs is not None and jobs < 1:
        raise DffError(f"--jobs {jobs}: must be 1 or more (default: all cores)")
    if getattr(args, "allow_corrupt", False) and args.command in ("batch", "compare"):
        os.environ["DFF_ALLOW_CORRUPT"] = "1"  # read_stack's default, in worker processes too


def _cmd_run(args: argparse.Namespace) -> int:
    from dffcore.core.spec import find_pipeline, load_spec, parse_memory
    from dffcore.io.outputs import check_output_dir, write_outputs
    from dffcore.io.readers import parse_read_params, read_record
    from dffcore.io.stack import read_stack
    from dffcore.run.engine import run_pipeline

    pipeline = find_pipeline(args.pipeline)
    spec = load_spec(pipeline, args.overrides)
    memory = None
    if args.memory is not None:
        try:
            memory = parse_memory(args.memory)
        except DffError as exc:
            raise DffError(f"--memory: {exc}") from None
    bounded = (memory if memory is not None else spec.memory) is not None
    check_output_dir(args.out)  # fail before the work, not after it
    bar = ProgressBar(sys.stderr, sys.stderr.isatty() and not args.quiet)
    source = args.stack if len(args.stack) > 1 else args.stack[0]
    read_params = parse_read_params(args.read_params)
    try:
        stack = read_stack(
            source,
            reverse=args.reverse,
            focus_distances=args.focus_distances,
            progress=lambda d, t: bar("read", d, t),
            lazy=bounded,
            jobs=args.jobs,
            allow_corrupt=args.allow_corrupt or None,  # None: DFF_ALLOW_CORRUPT decides
            frames=args.frames,
            reader=args.reader,
            read_params=read_params,
        )
        if args.ply:
            from dffcore.io.pointcloud import point_cloud_problem

            if (problem := point_cloud_problem(stack)) is not None:
                raise DffError(f"--ply: {problem}")  # before the work, not after it
        run = run_pipeline(spec, stack, progress=bar, jobs=args.jobs, memory=memory)
        read = {"frames": args.frames, "reader": args.reader, "read_params": read_params}
        files = write_outputs(
            run,
            args.out,
            spec_file=str(pipeline),
            reversed_=args.reverse,
            point_cloud=args.ply,
            read_options=read_record(read),
        )
    finally:
        bar.close()
    if not args.quiet:
        if run.alignment is not None and run.alignment.summary:
            print(f"dff: align ({run.spec.align.name}): {run.alignment.summary}", file=sys.stderr)
        _summary(run, files, args.out)
    return 0


def _summary(run, files, out) -> None:
    stages = ", ".join(f"{r.stage} {r.seconds:.2f}s" for r in run.records)
    print(
        f"{run.stack.n} frames {run.stack.shape[1]}x{run.stack.shape[0]} in "
        f"{run.seconds:.2f} s ({stages})"
    )
    print(f"wrote {len(files)} files to {out}")


def _cmd_validate(args: argparse.Namespace) -> int:
    from dffcore.core.spec import find_pipeline, load_spec

    spec = load_spec(find_pipeline(args.pipeline), args.overrides)
    stages = ", ".join(f"{s.path}={s.name}" for s in spec.stages())
    print(f"{spec.source}: OK ({stages})")
    return 0


def _cmd_plugins(args: argparse.Namespace) -> int:
    from dffcore.core import plugin_cache

    # the index cache answers without importing a plugin (nor NumPy, OpenCV, pydantic)
    index = plugin_cache.read()
    errors: list[dict[str, str]] = []
    if index is not None:
        plugins, components = index["plugins"], index["components"]
    else:
        from dffcore.core.registry import default_registry

        reg = default_registry()
        reg.load_all()
        plugins, components, _ = reg.index_payload(strict=False)  # as the cache holds
        errors = [dict(e.__dict__) for e in reg.errors]
    chosen = [c for c in components if args.kind in (None, c["describe"]["kind"])]
    if args.json:
        out = {"components": [c["describe"] for c in chosen], "errors": errors}
        print(json.dumps(out, indent=2, default=str))
        return 0
    print(plugin_cache.plugins_line(plugins))
    for item in chosen:
        print(item["text"])
    for err in errors:
        print(f"\nplugin error: {err['plugin']}: {err['message']}", file=sys.stderr)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    import numpy as np

    from dffcore.core.spec import find_pipeline, load_spec
    from dffcore.eval.synth import render_stack, write_stack
    from dffcore.io.outputs import check_output_dir, write_outputs
    from dffcore.io.stack import read_stack
    from dffcore.run.engine import run_pipeline

    pipeline = find_pipeline(args.pipeline)
    spec = load_spec(pipeline)
    out = check_output_dir(args.out)
    quiet = args.quiet
    if not quiet:
        print(f"rendering the synthetic '{args.scene}' scene ({args.frames} frames)...")
    synth = render_stack(args.scene, n_frames=args.frames)
    write_stack(synth, out / "stack")
    stack = read_stack(out / "stack")
    bar = ProgressBar(sys.stderr, sys.stderr.isatty() and not quiet)
    try:
        run = run_pipeline(spec, stack, progress=bar)
    finally:
        bar.close()
    files = write_outputs(run, out / "result", spec_file=str(pipeline))
    from dffcore.eval.metrics import to_output_grid
    from dffcore.io.images import write_image
    from dffcore.io.outputs import colour_depth, side_by_side
    from dffcore.ops.convert import to_uint8

    n = stack.n
    summary = side_by_side(
        [
            stack.frames[0],
            to_uint8(run.result.all_in_focus),
            colour_depth(run.result.index, n),
            colour_depth(to_output_grid(synth.index, run.crop), n),
        ],
        [f"frame 0 (of {n})", "all-in-focus", f"depth ({pipeline.stem})", "ground truth"],
    )
    write_image(out / "result" / "summary.png", summary)
    files.append(out / "result" / "summary.png")
    err = run.result.index - to_output_grid(synth.index, run.crop)
    mae, rmse = float(np.abs(err).mean()), float(np.sqrt((err**2).mean()))
    within = float((np.abs(err) <= 1).mean() * 100)
    print(
        f"pipeline {pipeline.stem} on synthetic '{args.scene}' ({stack.n} frames "
        f"{stack.shape[1]}x{stack.shape[0]}): {run.seconds:.2f} s"
    )
    metres = ""  # the synthetic stack's focus_distances.txt gives metric depth
    if run.result.depth is not None:
        from dffcore.eval.metrics import evaluate_depth

        truth_m = to_output_grid(synth.depth_m, run.crop)
        metres = f", depth RMSE {evaluate_depth(run.result.depth, truth_m)['rmse']:.4f} m"
    print(
        f"accuracy against ground truth: MAE {mae:.3f} slices{metres}, RMSE {rmse:.3f} slices, "
        f"{within:.1f}% of pixels within 1 slice"
    )
    print(f"wrote {len(files)} files to {out / 'result'} (input frames in {out / 'stack'})")
    return 0


def _cmd_synth(args: argparse.Namespace) -> int:
    from pathlib import Path

    from dffcore.eval.synth import TIFF_FORMATS, render_stack, write_stack, write_stack_tiff

    try:
        h, w = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        raise DffError(f"--size {args.size}: expected HxW, e.g. 360x640") from None
    synth = render_stack(
        args.scene,
        n_frames=args.frames,
        size=(h, w),
        noise_sigma=args.noise,
        seed=args.seed,
        exposure_flicker=args.flicker,
        focus_breathing=args.breathing,
        shake_px=args.shake_px,
        shake_deg=args.shake_deg,
    )
    if args.format != "folder":
        fmt = args.format.removesuffix("-tiff")
        path = write_stack_tiff(
            synth, Path(args.out) / TIFF_FORMATS[fmt], fmt, z_step_um=args.z_step
        )
        print(f"wrote {synth.frames.shape[0]} frames to {path}, ground truth to {args.out}")
        return 0
    paths = write_stack(synth, args.out)
    print(f"wrote {len(paths)} frames and ground truth to {args.out}")
    return 0


def _cmd_batch(args: argparse.Namespace) -> int:
    from pathlib import Path

    from dffcore.batch import collect_stacks, run_batch, totals
    from dffcore.core.spec import find_pipeline, load_spec
    from dffcore.io.readers import make_reader, parse_frames, parse_read_params

    pipeline = find_pipeline(args.pipeline)
    spec = load_spec(pipeline, args.overrides)  # validated once, before any work
    parse_frames(args.frames)  # reader options too
    read = {
        "frames": args.frames,
        "reader": args.reader,
        "read_params": parse_read_params(args.read_params),
    }
    stacks = collect_stacks(args.stacks, reader=args.reader)
    if args.reader is not None:
        make_reader(args.reader, read["read_params"])
    if args.executor == "dask":
        try:
            import distributed  # noqa: F401  (sets its loggers to INFO when imported)
        except ImportError:
            pass  # run_batch says what to install
        else:  # Dask's own chatter only with -vv
            logging.getLogger("distributed").setLevel(
                logging.WARNING if args.verbose < 2 else logging.DEBUG
            )
    bar = ProgressBar(sys.stderr, sys.stderr.isatty() and not args.quiet)
    t0 = time.perf_counter()
    try:
        rows = run_batch(
            spec,
            stacks,
            args.out,
            spec_file=str(pipeline),
            executor=args.executor,
            jobs=args.jobs,
            workers=args.workers,
            scheduler=args.scheduler,
            retries=args.retries,
            force=args.force,
            progress=bar,
            read=read,
        )
    finally:
        bar.close()
    count = totals(rows)
    if not args.quiet:
        for row in rows:
            if row["status"] == "failed":
                print(f"failed: {row['name']}: {row['error']}")
        print(
            f"{len(rows)} stacks in {time.perf_counter() - t0:.1f} s: {count['done']} done, "
            f"{count['skipped']} skipped, {count['failed']} failed; "
            f"summary in {Path(args.out) / 'batch_summary.csv'}"
        )
    return 1 if count["failed"] else 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from pathlib import Path

    from dffcore.eval.compare import compare
    from dffcore.eval.sources import SYNTH_DEFAULTS, dataset_stacks, parse_size, synthetic_stacks
    from dffcore.eval.variants import pipeline_variants

    synth_opts = {"frames": args.frames, "size": args.size, "noise": args.noise, "seed": args.seed}
    if args.data is not None:
        for flag, value in synth_opts.items():
            if value is not None:
                raise DffError(f"--{flag} applies to --synth stacks, not to --data")
    elif args.kind is not None or args.limit is not None:
        raise DffError(f"--{'kind' if args.kind else 'limit'} applies to --data, not to --synth")
    variants = pipeline_variants(args.pipelines, args.overrides, args.grid)  # before any work
    if args.data is not None:
        stacks = dataset_stacks(args.data, args.kind or "auto", args.limit)
    else:
        opts = {k: v for k, v in synth_opts.items() if v is not None}
        if "size" in opts:
            opts["size"] = parse_size(opts["size"])
        stacks = synthetic_stacks(args.synth, **{**SYNTH_DEFAULTS, **opts})
    bar = ProgressBar(sys.stderr, sys.stderr.isatty() and not args.quiet)
    t0 = time.perf_counter()
    try:
        rows = compare(variants, stacks, args.out, force=args.force, progress=bar)
    finally:
        bar.close()
    failed = [r for r in rows if r["status"] == "failed"]
    if not args.quiet:
        for row in failed:
            print(f"failed: {row['pipeline']} on {row['stack']}: {row['error']}")
        cached = sum(1 for r in rows if r["cached"])
        print(
            f"{len(variants)} pipelines × {len(stacks)} stacks in "
            f"{time.perf_counter() - t0:.1f} s: {len(rows) - cached - len(failed)} computed, "
            f"{cached} cached, {len(failed)} failed; report in {Path(args.out) / 'report.md'}"
        )
    return 1 if failed else 0


_COMMANDS = {
    "run": _cmd_run,
    "validate": _cmd_validate,
    "plugins": _cmd_plugins,
    "demo": _cmd_demo,
    "synth": _cmd_synth,
    "batch": _cmd_batch,
    "compare": _cmd_compare,
}

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
