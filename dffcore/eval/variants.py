"""The pipelines a comparison runs: pipeline files, ``--set`` overrides and ``--grid`` axes.

:func:`pipeline_variants` validates every variant before anything runs::

    from dffcore.eval.variants import pipeline_variants

    variants = pipeline_variants(["fast"], grid=["aggregate.params.sigma=1,2"])
    # names: fast[aggregate.params.sigma=1], fast[aggregate.params.sigma=2]
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dffcore.core.errors import DffError
from dffcore.core.spec import PipelineSpec, find_pipeline, load_spec


@dataclass(frozen=True)
class PipelineVariant:
    """One pipeline to compare: a display ``name`` and its validated ``spec``.

    ``source`` is the pipeline file and ``overrides`` the ``--set`` / ``--grid``
    assignments applied to it (for the report).
    """

    name: str
    spec: PipelineSpec
    source: str = ""
    overrides: tuple[str, ...] = ()


def split_top_level(text: str) -> list[str]:
    """Split ``text`` at the commas outside brackets and braces.

    Parameters
    ----------
    text : str
        E.g. ``"[1,2],[3,4]"``.

    Returns
    -------
    list of str
        The parts, stripped: ``["[1,2]", "[3,4]"]``.
    """
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += ch in "[{"
        depth -= ch in "]}"
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p.strip() for p in parts]


def parse_grid(option: str) -> tuple[str, list[str]]:
    """Parse one ``--grid`` option.

    Parameters
    ----------
    option : str
        ``"KEY=V1,V2,..."``; a value may be a YAML list or mapping (``[1,2],[3,4]``).

    Returns
    -------
    tuple of (str, list of str)
        ``("KEY", ["V1", "V2"])``; the values stay text (YAML-parsed by the spec loader).
        Raises :class:`DffError` for a missing key, an empty or a repeated value.
    """
    key, sep, values = option.partition("=")
    key = key.strip()
    if not sep or not key:
        raise DffError(f"--grid {option}: expected KEY=V1,V2,..., e.g. aggregate.params.sigma=1,2")
    parts = split_top_level(values)
    if any(not p for p in parts):
        raise DffError(f"--grid {option}: an empty value; give values separated by commas")
    if len(set(parts)) != len(parts):
        raise DffError(f"--grid {option}: a value is listed twice")
    return key, parts


def unique_name(name: str, used: set[str]) -> str:
    """``name``, or ``name-2``, ``name-3``, ... if taken; the result is added to ``used``.

    Parameters
    ----------
    name : str
        The wanted name.
    used : set of str
        The names taken so far (updated).

    Returns
    -------
    str
        The first of ``name``, ``name-2``, ``name-3``, ... not in ``used``.
    """
    out, k = name, 2
    while out in used:
        out, k = f"{name}-{k}", k + 1
    used.add(out)
    return out


def pipeline_variants(
    pipelines: Sequence[str | Path],
    overrides: Sequence[str] = (),
    grid: Sequence[str] = (),
) -> list[PipelineVariant]:
    """Validated variants of pipeline files or built-in names (before anything runs).

    Parameters
    ----------
    pipelines : sequence of str or Path
        Pipeline files or built-in names; a variant is named after the file's stem
        (``-2``, ``-3`` ... when two share a stem).
    overrides : sequence of str
        ``KEY=VALUE`` assignments (``--set``) applied to every pipeline.
    grid : sequence of str
        ``KEY=V1,V2,...`` options (``--grid``): the one pipeline given is expanded into one
        variant per combination (cartesian product), named ``name[KEY=V1,KEY2=W1]``.

    Returns
    -------
    list of PipelineVariant
        Raises :class:`DffError` (or :class:`~dffcore.core.errors.SpecError`) for an
        unknown pipeline, a bad assignment or a spec that does not validate.
    """
    if not pipelines:
        raise DffError("name at least one pipeline (a YAML file or a built-in name)")
    axes = [parse_grid(g) for g in grid]
    keys = [k for k, _ in axes]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise DffError(f"--grid {dup}: given twice; list all its values in one --grid")
    if axes and len(pipelines) != 1:
        raise DffError(
            f"--grid expands one pipeline into variants, but {len(pipelines)} are named "
            f"({', '.join(str(p) for p in pipelines)}); name exactly one"
        )
    variants: list[PipelineVariant] = []
    used: set[str] = set()
    for item in pipelines:
        path = find_pipeline(item)
        base = unique_name(Path(str(item)).stem, used)
        combos = itertools.product(*[[f"{k}={v}" for v in vals] for k, vals in axes])
        for combo in combos:
            sets = (*overrides, *combo)
            name = f"{base}[{','.join(combo)}]" if combo else base
            spec = load_spec(path, list(sets))
            variants.append(PipelineVariant(name, spec, str(path), tuple(sets)))
    return variants
