"""Run one pipeline over many focal stacks (``dff batch``), locally or on a Dask cluster.

Each stack is one task: read it, run the pipeline, write the usual output folder
(:func:`dffcore.io.outputs.write_outputs`) to ``OUT/<name>/``. A stack whose folder already
holds a complete result of the same resolved spec is skipped, so an interrupted batch
resumes where it stopped. A failing stack is recorded with its one-line error and does
not stop the others. ``OUT/batch_summary.csv`` and ``OUT/batch_summary.md`` list every
stack's status (``done``, ``skipped``, ``failed``), seconds, output folder and error.

Stacks: folders of frames, and files that hold a whole stack (a z-stack TIFF, a video:
files a container reader takes, :func:`dffcore.io.readers.choose_reader`). The reader
options of ``dff run`` (``--frames``, ``--reader``, ``--read``) apply to every stack.

Naming: a stack's name is its folder name, or its file name without the ending its reader
is chosen by (``sample.ome.tif`` -> ``sample``). When several stacks share a name, the first
(in the order given) keeps it and the others get ``-2``, ``-3``, ... (the smallest suffix
that is not another stack's name), so names are stable as long as the order is.

Completeness and retries: ``write_outputs`` writes a run into a hidden sibling folder and
swaps it in at the end (:mod:`dffcore.io.outputs`), so a stack's folder always holds one
complete run, and a task that dies half-way leaves the earlier one untouched (its
leftovers are removed by the next run into that folder, e.g. the retry). A folder is
taken as done exactly when its ``run.json`` is of the current resolved spec (same
:func:`spec_hash`), every file it lists exists and the stack's files are the ones it was
computed from (path, size and modification time of every frame and of the focus-distance
sidecar, :func:`dffcore.io.identity.file_identity`) with the same reader options.

Executors: ``local`` runs the stacks one after the other in this process when
``jobs == 1`` (each pipeline may use every core), otherwise in a process pool of ``jobs``
workers. ``dask`` (optional extra ``dffcore[dask]``) starts a ``LocalCluster`` of
``workers`` single-threaded worker processes, or connects to ``scheduler``; Dask
reschedules a task whose worker dies and retries a task that raised (``retries``). In pool
and Dask workers every pipeline runs with one thread and ``cv2.setNumThreads(1)``, so
``jobs`` (or ``workers``) processes do not oversubscribe the cores. With a remote
scheduler, the stack and output paths must be visible to the workers under the same
(absolute) names and dffcore must be installed there.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dffcore.core.errors import DffError, one_line
from dffcore.core.spec import PipelineSpec, spec_hash
from dffcore.io.identity import file_identity
from dffcore.io.images import atomic_write_bytes
from dffcore.io.readers import read_record
from dffcore.io.stack import FOCUS_SIDECAR, list_frames
from dffcore.io.stacklist import collect_stacks as collect_stacks  # the batch's stack list
from dffcore.io.stacklist import unique_names
from dffcore.report.tables import Block, Heading, Paragraph, Table, to_csv, to_markdown

logger = logging.getLogger(__name__)

#: progress(label, done, total)
ProgressCallback = Callable[[str, int, int], None]

EXECUTORS = ("local", "dask")
SUMMARY_COLUMNS = ("name", "status", "seconds", "output", "error", "stack")
DASK_HINT = "pip install 'dffcore[dask]'"
#: reader options of a batch: read_stack's ``frames``, ``reader`` and ``read_params``
ReadOptions = Mapping[str, Any]


@dataclass(frozen=True)
class BatchTask:
    """One stack of a batch: its unique ``name``, its folder or file and its output folder."""

    name: str
    stack: Path
    out: Path


# -- the tasks -------------------------------------------------------------------
def plan(stacks: Sequence[str | Path], out: str | Path) -> list[BatchTask]:
    """One task per stack, with absolute paths; refuses an output folder that is a stack."""
    out = Path(out).resolve()
    tasks = []
    for stack, name in zip(stacks, unique_names(stacks), strict=True):
        task = BatchTask(name, Path(stack).resolve(), out / name)
        if task.out == task.stack or (task.stack.is_file() and task.out == task.stack.parent):
            raise DffError(
                f"-o {out}: would write the results of {stack} into the stack folder itself; "
                "choose an output folder outside the stacks' parent"
            )
        tasks.append(task)
    return tasks


# -- completeness --------------------------------------------------------------
def _read_record(out_dir: Path) -> dict[str, Any] | None:
    try:
        record = json.loads((out_dir / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _listed_outputs(record: dict[str, Any]) -> list[str]:
    names = record.get("outputs")
    if not isinstance(names, list):
        return []
    # only plain file names: never follow a path out of the folder
    return [n for n in names if isinstance(n, str) and n and Path(n).name == n]


def stack_files(stack: str | Path) -> list[Path]:
    """The files a stack's result depends on: its frames in reading order, then the
    ``focus_distances.txt`` sidecar next to them when there is one; for a stack file,
    the file (a sidecar next to it is not read)."""
    paths = list_frames(stack)
    if Path(stack).is_file():
        return paths
    sidecar = paths[0].parent / FOCUS_SIDECAR
    return [*paths, sidecar] if sidecar.is_file() else paths


def is_complete(
    out_dir: str | Path,
    spec: PipelineSpec,
    stack: str | Path | None = None,
    read: ReadOptions | None = None,
) -> bool:
    """True when ``out_dir`` holds a complete result of ``spec`` (see the module doc) and,
    with ``stack``, of that stack's files as they are now: the record's ``stack.files``
    (path, size, modification time of every frame and the sidecar) must match, and so
    must the reader options ``read`` (``stack.read``)."""
    out_dir = Path(out_dir)
    record = _read_record(out_dir)
    if record is None or not isinstance(record.get("spec"), dict):
        return False
    if spec_hash(record["spec"]) != spec.spec_hash():
        return False
    names = _listed_outputs(record)
    if not ("run.json" in names and all((out_dir / n).is_file() for n in names)):
        return False
    if stack is None:
        return True
    recorded = record.get("stack")
    try:
        now = file_identity(stack_files(stack))
    except DffError:  # the stack is gone or empty now: run it to report why
        return False
    return (
        isinstance(recorded, dict)
        and recorded.get("files") == now
        and recorded.get("read") == read_record(read)
    )


# -- one stack -----------------------------------------------------------------
def run_one(
    spec: PipelineSpec,
    stack_path: str | Path,
    out_dir: str | Path,
    *,
    spec_file: str | None = None,
    threads: int | None = None,
    read: ReadOptions | None = None,
) -> dict[str, Any]:
    """Read one stack, run ``spec`` on it and write its output folder.

    Parameters
    ----------
    spec : PipelineSpec
        The validated pipeline.
    stack_path : str or Path
        Folder of frames (with an optional ``focus_distances.txt``) or a stack file.
    out_dir : str or Path
        Output folder; its name is the stack's name in the batch.
    spec_file : str, optional
        Recorded in ``run.json``.
    threads : int, optional
        Threads for the pipeline; when given, also ``cv2.setNumThreads(threads)`` (for
        pool and cluster workers, which run one single-threaded pipeline each).
    read : mapping, optional
        Reader options passed to :func:`dffcore.io.stack.read_stack`: ``frames``,
        ``reader``, ``read_params`` (recorded in ``run.json``'s ``stack.read``).

    Returns
    -------
    dict
        ``name``, ``stack``, ``output``, ``status`` (``done`` or ``failed``), ``seconds``
        and ``error`` (one line, empty when done). A :class:`DffError` (bad images, a
        stage's error) gives ``failed``; any other exception propagates, so that a Dask
        task is retried.
    """
    from dffcore.io.outputs import write_outputs
    from dffcore.io.stack import read_stack
    from dffcore.run.engine import run_pipeline

    if threads is not None:
        import cv2

        cv2.setNumThreads(threads)
    out_dir = Path(out_dir)
    row = _row(out_dir.name, stack_path, out_dir)
    t0 = time.perf_counter()
    try:
        options = read_record(read) or {}
        lazy = spec.memory is not None  # --set memory=...: streamed
        stack = read_stack(stack_path, lazy=lazy, **options)
        run = run_pipeline(spec, stack, jobs=threads)
        write_outputs(run, out_dir, spec_file=spec_file, read_options=read_record(read))
    except DffError as exc:
        row.update(status="failed", error=one_line(exc))
    else:
        row["status"] = "done"
    row["seconds"] = round(time.perf_counter() - t0, 3)
    return row


def _row(name: str, stack: str | Path, out: str | Path, **values: Any) -> dict[str, Any]:
    row = {"name": name, "status": "", "seconds": None, "output": str(out), "error": ""}
    row["stack"] = str(stack)
    row.update(values)
    return row


# -- the batch -----------------------------------------------------------------
def run_batch(
    spec: PipelineSpec,
    stacks: Sequence[str | Path],
    out: str | Path,
    *,
    spec_file: str | None = None,
    executor: str = "local",
    jobs: int = 1,
    workers: int | None = None,
    scheduler: str | None = None,
    retries: int = 2,
    force: bool = False,
    client: Any = None,
    progress: ProgressCallback | None = None,
    read: ReadOptions | None = None,
) -> list[dict[str, Any]]:
    """Run ``spec`` on every stack; write ``OUT/batch_summary.csv`` and ``.md``.

    Parameters
    ----------
    spec : PipelineSpec
        The validated pipeline.
    stacks : sequence of str or Path
        Stack folders and stack files (see :func:`collect_stacks`).
    out : str or Path
        Output root; stack ``name`` goes to ``out/name/``.
    spec_file : str, optional
        Recorded in each ``run.json``.
    executor : {"local", "dask"}
        Where the tasks run (see the module doc).
    jobs : int
        Local executor: 1 = sequential in this process, more = a process pool.
    workers : int, optional
        Dask without ``scheduler``: worker processes of the local cluster (default 2).
    scheduler : str, optional
        Dask: address of a running scheduler, e.g. ``tcp://host:8786``.
    retries : int
        Dask: retries of a task that raised.
    force : bool
        Recompute stacks whose output is already complete.
    client : distributed.Client, optional
        Dask: use this client (and its cluster) instead of starting one.
    progress : callable, optional
        ``progress("batch", done, total)`` after each stack.
    read : mapping, optional
        Reader options of every stack (``frames``, ``reader``, ``read_params``, as
        :func:`dffcore.io.stack.read_stack` takes them).

    Returns
    -------
    list of dict
        One row per stack, in the order given (see :func:`run_one`); ``status`` is
        ``done``, ``skipped`` or ``failed``.
    """
    from dffcore.io.outputs import check_output_dir

    _check_options(executor, jobs, workers, scheduler, retries, client)
    dask = _import_dask() if executor == "dask" else None
    root = check_output_dir(out)
    tasks = plan(stacks, root)
    rows: list[dict[str, Any] | None] = [None] * len(tasks)
    done = 0

    def record(i: int, row: dict[str, Any]) -> None:
        nonlocal done
        rows[i] = row
        done += 1
        if row["status"] == "failed":
            logger.warning("%s: failed: %s", row["name"], row["error"])
        else:
            logger.info("%s: %s (%s s)", row["name"], row["status"], row["seconds"])
        if progress is not None:
            progress("batch", done, len(tasks))

    pending: list[int] = []
    for i, task in enumerate(tasks):
        if not force and is_complete(task.out, spec, task.stack, read):
            record(i, _row(task.name, task.stack, task.out, status="skipped", seconds=0.0))
        else:
            pending.append(i)
    try:
        if not pending:
            pass
        elif dask is not None:
            _run_dask(
                dask,
                spec,
                tasks,
                pending,
                record,
                spec_file,
                workers,
                scheduler,
                retries,
                client,
                read,
            )
        elif jobs == 1:
            for i in pending:
                try:
                    row = run_one(
                        spec, tasks[i].stack, tasks[i].out, spec_file=spec_file, read=read
                    )
                except Exception as exc:  # not a DffError: an internal error, recorded
                    row = _failed(tasks[i], exc)
                record(i, row)
        else:
            _run_pool(spec, tasks, pending, record, spec_file, jobs, read)
    finally:  # leftovers of tasks killed during this batch (a Dask worker that died)
        from dffcore.io.outputs import remove_leftovers

        for task in tasks:
            remove_leftovers(task.out)
    final = [r for r in rows if r is not None]
    write_summary(final, root, spec=spec, spec_file=spec_file)
    return final


def _check_options(
    executor: str,
    jobs: int,
    workers: int | None,
    scheduler: str | None,
    retries: int,
    client: Any,
) -> None:
    if executor not in EXECUTORS:
        raise DffError(f"--executor {executor}: unknown executor (valid: {', '.join(EXECUTORS)})")
    if jobs < 1:
        raise DffError(f"--jobs {jobs}: must be 1 or more")
    if workers is not None and workers < 1:
        raise DffError(f"--workers {workers}: must be 1 or more")
    if retries < 0:
        raise DffError(f"--retries {retries}: must be 0 or more")
    if executor == "local":
        for flag, value in (("--workers", workers), ("--scheduler", scheduler)):
            if value is not None:
                raise DffError(f"{flag} needs --executor dask (the local executor uses --jobs)")
    else:
        if jobs != 1:
            raise DffError("--jobs is for the local executor; with --executor dask use --workers")
        if workers is not None and (scheduler or client is not None):
            raise DffError("--workers starts a local Dask cluster; it cannot go with --scheduler")


def _import_dask() -> Any:
    try:
        import distributed
    except ImportError:
        raise DffError(
            f"--executor dask needs Dask's distributed scheduler, which is not installed: "
            f"{DASK_HINT}"
        ) from None
    return distributed


def _failed(task: BatchTask, exc: BaseException) -> dict[str, Any]:
    return _row(task.name, task.stack, task.out, status="failed", error=one_line(exc))


def _run_pool(
    spec: PipelineSpec,
    tasks: list[BatchTask],
    pending: list[int],
    record: Callable[[int, dict[str, Any]], None],
    spec_file: str | None,
    jobs: int,
    read: ReadOptions | None,
) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    ctx = multiprocessing.get_context("spawn")  # no fork of a process with OpenCV threads
    with ProcessPoolExecutor(min(jobs, len(pending)), mp_context=ctx) as pool:
        futures = {
            pool.submit(
                run_one,
                spec,
                tasks[i].stack,
                tasks[i].out,
                spec_file=spec_file,
                threads=1,
                read=read_record(read),
            ): i
            for i in pending
        }
        try:
            for fut in as_completed(futures):
                i = futures[fut]
                try:
                    record(i, fut.result())
                except Exception as exc:
                    record(i, _failed(tasks[i], exc))
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def _run_dask(
    distributed: Any,
    spec: PipelineSpec,
    tasks: list[BatchTask],
    pending: list[int],
    record: Callable[[int, dict[str, Any]], None],
    spec_file: str | None,
    workers: int | None,
    scheduler: str | None,
    retries: int,
    client: Any,
    read: ReadOptions | None,
) -> None:
    cluster = own_client = None
    try:
        if client is None and scheduler:
            try:
                client = own_client = distributed.Client(scheduler, timeout="20s")
            except (OSError, TimeoutError, ValueError) as exc:
                raise DffError(
                    f"--scheduler {scheduler}: cannot connect to the Dask scheduler: "
                    f"{one_line(exc)}"
                ) from None
        elif client is None:
            cluster = distributed.LocalCluster(
                n_workers=workers or 2,
                threads_per_worker=1,
                processes=True,
                dashboard_address=":0",  # a free port: never clashes with another cluster
                silence_logs=logging.ERROR,
            )
            client = own_client = distributed.Client(cluster)
            logger.info("Dask dashboard: %s", client.dashboard_link)
        futures = {}
        for i in pending:
            t = tasks[i]
            fut = client.submit(
                run_one,
                spec,
                str(t.stack),
                str(t.out),
                spec_file=spec_file,
                threads=1,
                read=read_record(read),
                pure=False,
                retries=retries,
                key=f"dff-batch-{t.name}-{uuid.uuid4().hex[:8]}",
            )
            futures[fut] = i
        for fut in distributed.as_completed(list(futures)):
            i = futures[fut]
            try:
                record(i, fut.result())
            except Exception as exc:  # raised in the task after retries, or KilledWorker
                record(i, _failed(tasks[i], exc))
    finally:
        if own_client is not None:
            own_client.close()
        if cluster is not None:
            cluster.close()


# -- summary -------------------------------------------------------------------
def totals(rows: Sequence[dict[str, Any]]) -> dict[str, int]:
    """Count of rows per status: ``{"done": .., "skipped": .., "failed": ..}``."""
    out = {"done": 0, "skipped": 0, "failed": 0}
    for row in rows:
        out[row["status"]] = out.get(row["status"], 0) + 1
    return out


def write_summary(
    rows: Sequence[dict[str, Any]],
    out: str | Path,
    *,
    spec: PipelineSpec | None = None,
    spec_file: str | None = None,
) -> tuple[Path, Path]:
    """Write ``batch_summary.csv`` and ``batch_summary.md`` into ``out`` atomically."""
    out = Path(out)

    def cell(row: dict[str, Any], key: str) -> str:
        value = row.get(key)
        if value is None:
            return ""
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    cells = [[cell(row, k) for k in SUMMARY_COLUMNS] for row in rows]
    csv_path = out / "batch_summary.csv"
    atomic_write_bytes(csv_path, to_csv(SUMMARY_COLUMNS, cells).encode("utf-8"))

    count = totals(rows)
    about = f"pipeline `{spec_file or (spec.source if spec else '?')}`"
    if spec is not None:
        about += f", spec hash `{spec.spec_hash()}`"
    document: list[Block] = [
        Heading(1, "dff batch summary"),
        Paragraph(
            f"{about}; {len(rows)} stacks: {count['done']} done, {count['skipped']} skipped, "
            f"{count['failed']} failed"
        ),
        Table(SUMMARY_COLUMNS, cells),
    ]
    md_path = out / "batch_summary.md"
    atomic_write_bytes(md_path, to_markdown(document).encode("utf-8"))
    return csv_path, md_path
