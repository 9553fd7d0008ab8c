"""The plugin boundary: what a component raises and what it returns is checked.

Plugin code (a component of any distribution but dffcore) may fail in any way: an
exception, ``sys.exit()``, or an answer of the wrong shape, type or values. Each becomes
a :class:`PluginFailure`, a one-line :class:`~dffcore.core.errors.DffError` that names the
stage's YAML path, the component and the distribution that provides it::

    focus (mymeasure, from mypkg 1.0): plugin raised ValueError: boom

dffcore's own components raising anything but a ``DffError`` are dffcore's bugs and keep
the internal-error path (the command line asks for a report). ``KeyboardInterrupt``
always passes through; running out of memory (``MemoryError``, OpenCV's "Insufficient
memory") is a one-line error naming the stage and what was being allocated.

What is checked (:func:`check_output`): a focus volume is a :class:`FocusVolume` of shape
``(N,H,W)``, real floats, finite wherever ``valid`` is True (NaN or ±inf are allowed only
where the frame has no data); a depth result has ``index`` and ``confidence`` of shape
``(H,W)``, real numbers, finite everywhere, and an ``all_in_focus`` of ``(H,W,C)`` or
None; a compositor returns ``(H,W,C)`` real numbers; an aligner returns an
:class:`AlignedStack` of ``N`` frames. A focus measure's ``measure()`` must return one
``(H,W)`` real array per frame (checked before it is stored, so a row or a scalar is not
broadcast and a complex or object array is not cast).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from dffcore.core.components import Component, FocusMeasure
from dffcore.core.data import AlignedStack, DepthResult, FocusVolume
from dffcore.core.errors import DffError, one_line
from dffcore.core.registry import OWN_DISTRIBUTION
from dffcore.core.spec import StageSpec


class PluginFailure(DffError):
    """A plugin's component raised, exited or returned something unusable."""


def is_builtin(stage: StageSpec) -> bool:
    """True for a component of dffcore's own distribution."""
    return stage.source.distribution == OWN_DISTRIBUTION


def who(stage: StageSpec) -> str:
    """``"focus (mymeasure, from mypkg 1.0)"``: stage path, component, distribution."""
    src = stage.source
    dist = f"{src.distribution} {src.version}".strip() or f"plugin {src.plugin}"
    return f"{stage.path} ({stage.name}, from {dist})"


def guard(stage: StageSpec, call: Callable[..., Any], *args: Any) -> Any:
    """``call(*args)`` at the plugin boundary of ``stage``.

    Parameters
    ----------
    stage : StageSpec
        The stage whose component ``call`` runs (named in errors).
    call : callable
        The component, its constructor or one of its methods.
    *args
        Its arguments.

    Returns
    -------
    Any
        What ``call`` returned.

    Raises
    ------
    DffError
        The component's own ``DffError`` prefixed with the stage path and name; a
        :class:`PluginFailure` for anything else a plugin raised (``SystemExit`` too).
        A built-in component's other exceptions propagate unchanged (dffcore's bugs).
    """
    try:
        return call(*args)
    except PluginFailure:
        raise
    except DffError as exc:
        raise DffError(f"{stage.path} ({stage.name}): {exc}") from None
    except KeyboardInterrupt:
        raise
    except MemoryError as exc:
        raise out_of_memory(stage, exc) from None
    except Exception as exc:
        if _is_allocation_failure(exc):
            raise out_of_memory(stage, exc) from None
        if is_builtin(stage):
            raise
        raise PluginFailure(f"{who(stage)}: plugin raised {one_line(exc)}") from None
    except BaseException as exc:  # SystemExit, GeneratorExit, ...: never a silent exit
        if is_builtin(stage):
            raise RuntimeError(f"{stage.path} ({stage.name}) raised {one_line(exc)}") from None
        raise PluginFailure(f"{who(stage)}: plugin raised {_exit_text(exc)}") from None


def _is_allocation_failure(exc: Exception) -> bool:
    """OpenCV's out-of-memory errors (``Insufficient memory``, ``std::bad_alloc``)."""
    text = str(exc)
    return type(exc).__name__ == "error" and ("Insufficient memory" in text or "bad_alloc" in text)


def out_of_memory(stage: StageSpec, exc: BaseException) -> DffError:
    """A one-line error for a stage that ran out of memory, saying what it allocated
    (NumPy's message names the array's size, shape and dtype) and what helps."""
    text = one_line(exc).removeprefix("MemoryError: ").removeprefix("MemoryError") or (
        "an allocation failed"
    )
    return DffError(
        f"{who(stage)}: out of memory: {text}; bound the run's memory with "
        "--memory SIZE, or use fewer or smaller frames"
    )


def _exit_text(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"SystemExit({exc.code!r}) (it called sys.exit())"
    return one_line(exc)


def fail(stage: StageSpec, message: str) -> Exception:
    """A :class:`PluginFailure` about what ``stage``'s component returned (for a built-in
    component a RuntimeError: dffcore's bug)."""
    text = f"{who(stage)}: {message}"
    return RuntimeError(text) if is_builtin(stage) else PluginFailure(text)


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"a {value.dtype} array of shape {value.shape}"
    return f"{type(value).__name__} {value!r:.40}"


def check_array(
    stage: StageSpec,
    what: str,
    value: Any,
    shape: tuple[int, ...],
    *,
    finite: np.ndarray | bool = True,
    floats: bool = False,
) -> None:
    """Raise a :class:`PluginFailure` unless ``value`` is a real array of ``shape``.

    Parameters
    ----------
    stage : StageSpec
        The stage that returned it.
    what : str
        What it is, e.g. ``"the depth index"``.
    value : Any
        The returned value.
    shape : tuple of int
        The expected shape.
    finite : ndarray of bool or bool
        Where every value must be finite (True: everywhere, False: nowhere).
    floats : bool
        Require a floating-point dtype (else any real number or bool dtype).
    """
    kinds = "f" if floats else "fiub"
    expect = f"{'real floats' if floats else 'real numbers'} of shape {shape}"
    if not isinstance(value, np.ndarray) or value.dtype.kind not in kinds:
        raise fail(stage, f"returned {what} as {_describe(value)}; expected {expect}")
    if value.shape != shape:
        raise fail(stage, f"returned {what} of shape {value.shape}; expected {expect}")
    if finite is False or value.dtype.kind != "f":
        return
    bad = ~np.isfinite(value)
    if finite is not True:
        bad &= np.broadcast_to(finite, bad.shape)
    if bad.any():
        raise fail(
            stage,
            f"returned {what} with {int(bad.sum())} NaN or infinite values of {bad.size}"
            + ("" if finite is True else " where the frames have data")
            + "; expected finite values",
        )


def check_output(stage: StageSpec, out: Any, part: AlignedStack) -> None:
    """Raise a :class:`PluginFailure` unless ``out`` is what ``stage`` must return for
    ``part`` (a region of rows of the aligned frames)."""
    n, h, w, c = part.frames.shape
    kind = stage.kind
    if kind == "focus":
        if not isinstance(out, FocusVolume):
            raise fail(stage, f"returned {_describe(out)}; expected a FocusVolume")
        valid = True if out.valid is None else np.asarray(out.valid, bool)
        check_array(stage, "a focus volume", out.data, (n, h, w), finite=valid, floats=True)
    elif kind in ("aggregate", "regularize"):
        if not isinstance(out, DepthResult):
            raise fail(stage, f"returned {_describe(out)}; expected a DepthResult")
        check_array(stage, "the depth index", out.index, (h, w))
        check_array(stage, "the confidence", out.confidence, (h, w))
        if out.all_in_focus is not None:
            check_array(stage, "the all-in-focus image", out.all_in_focus, (h, w, c))
    elif kind == "composite":
        check_array(stage, "the all-in-focus image", out, (h, w, c))


def check_aligned(stage: StageSpec, out: Any, n: int) -> None:
    """Raise a :class:`PluginFailure` unless an aligner returned ``n`` aligned frames."""
    if not isinstance(out, AlignedStack):
        raise fail(stage, f"returned {_describe(out)}; expected an AlignedStack")
    frames = out.frames
    if not isinstance(frames, np.ndarray) or frames.ndim != 4 or frames.shape[0] != n:
        raise fail(
            stage, f"returned aligned frames as {_describe(frames)}; expected ({n}, H, W, C)"
        )
    check_array(stage, "aligned frames", frames, frames.shape, finite=False)


def checked_measure(stage: StageSpec, component: Component) -> None:
    """Make a focus measure's ``measure()`` check each frame's answer before the base
    class stores it (a no-op for built-ins and for measures with their own ``__call__``)."""
    if is_builtin(stage) or not isinstance(component, FocusMeasure):
        return
    if type(component).__call__ is not FocusMeasure.__call__:
        return
    measure = component.measure

    def checked(frame: np.ndarray) -> np.ndarray:
        out = measure(frame)
        check_array(stage, "a frame's sharpness from measure()", out, frame.shape[:2], finite=False)
        return out

    component.measure = checked  # type: ignore[method-assign]


def check_contexts(stages: list[StageSpec], components: list[Component]) -> None:
    """Ask every component for its :meth:`~dffcore.core.components.Component.context`
    once, at the plugin boundary: rows of overlap (an int >= 0) or None (global)."""
    for stage, component in zip(stages, components, strict=True):
        rows = guard(stage, component.context)
        if rows is not None and (isinstance(rows, bool) or not isinstance(rows, int) or rows < 0):
            raise fail(stage, f"context() returned {_describe(rows)}: expected rows >= 0 or None")
