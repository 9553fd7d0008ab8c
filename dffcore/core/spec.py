"""Pipeline specs: YAML in, validated :class:`PipelineSpec` out.

Every problem is reported with its YAML path (``regularize[0].params.lambda``), what
is wrong and what would be valid; all problems of a file are reported at once.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import logging
import math
import re
import reprlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ByteSize, TypeAdapter, ValidationError

from dffcore.core.components import KIND_TITLES, KINDS, Component
from dffcore.core.errors import DffError, SpecError, did_you_mean
from dffcore.core.registry import Registry, Source, default_registry
from dffcore.core.safe_yaml import (
    MAX_YAML_DEPTH,
    YamlLimitError,
    load_yaml,
    yaml_problem,
)

logger = logging.getLogger(__name__)

TOP_KEYS = (*KINDS, "description", "memory")
STAGE_FIELDS = ("name", "params")
DEFAULTS: dict[str, Any] = {
    "align": {"name": "none"},
    "focus": {"name": "log"},
    "aggregate": {"name": "argmax"},
    "regularize": [],
    "composite": None,  # the aggregator's composite, else selection at the final depth
}


@dataclass
class StageSpec:
    kind: str
    name: str
    params: Any  # the component's validated Params instance
    path: str  # YAML path, e.g. "regularize[0]"
    cls: type[Component]
    #: the plugin that registered the component (for run.json)
    source: Source = field(default_factory=lambda: Source("?"))

    def build(self) -> Component:
        return self.cls(self.params)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "params": self.params.model_dump(mode="json")}


@dataclass
class PipelineSpec:
    align: StageSpec
    focus: StageSpec
    aggregate: StageSpec
    regularize: list[StageSpec] = field(default_factory=list)
    composite: StageSpec | None = None
    description: str = ""
    source: str = "<dict>"
    #: memory budget in bytes (``memory: 4GB`` in the YAML, ``--memory``); None = unbounded
    memory: int | None = None

    def stages(self) -> list[StageSpec]:
        """Every stage, in the order they run."""
        return [self.align, *self.after_alignment()]

    def after_alignment(self) -> list[StageSpec]:
        """The stages that work on aligned frames: focus, aggregate, regularisers, composite."""
        tail = [self.composite] if self.composite is not None else []
        return [self.focus, self.aggregate, *self.regularize, *tail]

    def spec_hash(self) -> str:
        """SHA-256 (16 hex digits) of the resolved spec (:func:`spec_hash`)."""
        return spec_hash(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        """The resolved spec, every default filled in (YAML/JSON ready)."""
        out: dict[str, Any] = {}
        if self.description:
            out["description"] = self.description
        out["align"] = self.align.to_dict()
        out["focus"] = self.focus.to_dict()
        out["aggregate"] = self.aggregate.to_dict()
        out["regularize"] = [s.to_dict() for s in self.regularize]
        out["composite"] = self.composite.to_dict() if self.composite is not None else None
        if self.memory is not None:
            out["memory"] = self.memory
        return out


def spec_hash(resolved: dict[str, Any]) -> str:
    """SHA-256 (16 hex digits) of a resolved spec dict, as ``run.json`` stores it."""
    text = json.dumps(resolved, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def builtin_pipelines() -> dict[str, Path]:
    """Name -> path of every pipeline shipped with dffcore.

    Installed, the repository's ``pipelines/`` folder is ``dffcore/pipelines/``; in a
    source checkout it sits next to the ``dffcore/`` folder.
    """
    package = Path(__file__).resolve().parents[1]
    for root in (package / "pipelines", package.parent / "pipelines"):
        if root.is_dir():
            return {p.stem: p for p in sorted(root.glob("*.yaml"))}
    return {}


def find_pipeline(name_or_path: str | Path) -> Path:
    """A pipeline file: an existing path, or the name of a built-in pipeline (``classic``)."""
    path = Path(name_or_path)
    if path.exists() or path.suffix in (".yaml", ".yml") or len(path.parts) > 1:
        return path
    known = builtin_pipelines()
    if str(name_or_path) in known:
        return known[str(name_or_path)]
    raise DffError(
        f"{name_or_path}: no such pipeline file or built-in pipeline "
        f"(built-in: {', '.join(sorted(known)) or 'none'})"
    )


# -- overrides -----------------------------------------------------------------
_PART = re.compile(r"([A-Za-z_][\w-]*)((?:\[\d+\])*)")


def _split_path(path: str) -> list[str | int]:
    parts: list[str | int] = []
    for chunk in path.split("."):
        m = _PART.fullmatch(chunk)
        if not m:
            raise DffError(f"--set {path}: '{chunk}' is not a valid key (use a.b[0].c=value)")
        parts.append(m.group(1))
        parts.extend(int(i) for i in re.findall(r"\[(\d+)\]", m.group(2)))
        if len(parts) > MAX_YAML_DEPTH:
            raise DffError(
                f"--set {_clip(path)}: the key is nested more than {MAX_YAML_DEPTH} levels deep"
            )
    return parts


def _join(parts: list[str | int]) -> str:
    """The YAML path of split parts, as problems name it: ``regularize[0].params.x``."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _clip(text: str, limit: int = 60) -> str:
    """``text`` cut to ``limit`` characters (a ``--set`` value can be huge)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Apply ``a.b[0].c=value`` to ``data`` in place; the value is parsed as YAML."""
    if "=" not in assignment:
        raise DffError(f"--set {assignment}: expected KEY=VALUE, e.g. focus.params.ksize=7")
    key, raw = assignment.split("=", 1)
    parts = _split_path(key.strip())
    try:
        value = load_yaml(raw) if raw.strip() else ""
    except YamlLimitError as exc:
        raise DffError(f"--set {_clip(assignment)}: {yaml_problem(exc)[1]}") from None
    except yaml.YAMLError:
        value = raw
    node: Any = data
    for i, part in enumerate(parts[:-1]):
        nxt = parts[i + 1]
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                raise DffError(f"--set {key}: index [{part}] does not exist")
            if isinstance(node[part], str) and parts[0] == "regularize":  # `- tv` shorthand
                node[part] = {"name": node[part]}
            node = node[part]
            continue
        if not isinstance(node, dict):
            raise DffError(f"--set {key}: '{part}' is not inside a mapping")
        if node.get(part) is None:
            node[part] = [] if isinstance(nxt, int) else {}
        if isinstance(node[part], str) and part in KINDS:  # `focus: log` shorthand
            node[part] = {"name": node[part]}
        node = node[part]
    last = parts[-1]
    if isinstance(last, int):
        if not isinstance(node, list) or last > len(node):
            raise DffError(f"--set {key}: index [{last}] does not exist")
        if last == len(node):
            node.append(value)
        else:
            node[last] = value
    elif isinstance(node, dict):
        if last == "name" and _is_stage(parts[:-1]) and node.get("name") not in (None, value):
            dropped = node.pop("params", None)
            if dropped:
                logger.warning(
                    "--set %s=%s: the parameters of %s (%s) do not apply to %s, which starts "
                    "from its defaults",
                    key,
                    value,
                    node.get("name"),
                    ", ".join(map(str, dropped)),
                    value,
                )
        node[last] = value
    else:
        raise DffError(f"--set {key}: '{last}' is not inside a mapping")


def _is_stage(parts: list[str | int]) -> bool:
    """Whether a --set path names a stage mapping: ``align``, ``regularize[0]``, ..."""
    if len(parts) == 1:
        return parts[0] in KINDS and parts[0] != "regularize"
    return len(parts) == 2 and parts[0] == "regularize" and isinstance(parts[1], int)


def _names_first(overrides: list[str] | tuple[str, ...]) -> list[str]:
    """Overrides that choose a component (``align.name=flow``) before the others, so that
    parameters given for the new component are set after the old ones are dropped."""
    naming = [a for a in overrides if a.split("=", 1)[0].strip().endswith(".name")]
    return naming + [a for a in overrides if a not in naming]


# -- loading -------------------------------------------------------------------
def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a pipeline YAML file into a dict; one-line errors for unreadable files."""
    path = Path(path)
    label = str(path)
    if not path.exists():
        raise DffError(f"{label}: no such pipeline file")
    if path.is_dir():
        raise DffError(f"{label}: is a folder, expected a pipeline YAML file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DffError(f"{label}: cannot read: {exc}") from None
    try:
        data = load_yaml(text)
    except YamlLimitError as exc:
        where, problem = yaml_problem(exc)
        raise DffError(f"{label}: {where or 'refused'}: {problem}") from None
    except yaml.YAMLError as exc:
        where, problem = yaml_problem(exc)
        where = f" at {where}" if where else ""
        raise DffError(f"{label}: YAML syntax error{where}: {problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise DffError(f"{label}: expected a mapping of stages ({', '.join(KINDS)})")
    return data


def load_spec(
    source: str | Path | dict[str, Any],
    overrides: list[str] | tuple[str, ...] = (),
    *,
    registry: Registry | None = None,
) -> PipelineSpec:
    """Load and validate a pipeline, applying ``--set`` overrides.

    ``source`` is a YAML file, the name of a built-in pipeline (``"best"``) or a dict.
    A problem in a value an override set is blamed on that ``--set KEY=VALUE``.
    """
    if isinstance(source, dict):
        data, label = copy.deepcopy(source), "<spec>"
    else:
        path = find_pipeline(source)
        data, label = read_yaml(path), str(path)
    for assignment in _names_first(overrides):
        apply_override(data, assignment)
    return validate(data, label=label, registry=registry, overrides=overrides)


def validate(
    data: dict[str, Any],
    *,
    label: str = "<spec>",
    registry: Registry | None = None,
    overrides: list[str] | tuple[str, ...] = (),
) -> PipelineSpec:
    """Validate a spec dict; raise :class:`SpecError` with every problem found.

    Parameters
    ----------
    data : dict
        The spec, as read from YAML.
    label : str
        What problems name as the spec's source (the file).
    registry : Registry, optional
        Where components are looked up (default: :func:`default_registry`).
    overrides : list of str
        The ``--set KEY=VALUE`` assignments applied to ``data``: a problem at, inside or
        around a key one of them set names that assignment instead of ``label``.
    """
    registry = registry or default_registry()
    problems: list[str] = []
    culprits = _culprits(overrides)

    def blame(path: str) -> str:
        for key, assignment in culprits:
            if (
                path == key
                or path.startswith((f"{key}.", f"{key}["))
                or key.startswith((f"{path}.", f"{path}["))
            ):
                return f"--set {_clip(assignment)}"
        return label

    def problem(path: str, message: str) -> None:
        problems.append(f"{blame(path)}: {path}: {message}")

    for key in data:
        if key not in TOP_KEYS:
            problem(
                str(key),
                f"unknown key.{did_you_mean(str(key), TOP_KEYS)} Valid keys: {', '.join(TOP_KEYS)}",
            )

    def stage(kind: str, raw: Any, path: str) -> StageSpec | None:
        if isinstance(raw, str):
            raw = {"name": raw}
        if not isinstance(raw, dict):
            problem(path, f"expected a mapping with 'name' and 'params', got {_show(raw)}")
            return None
        for key in raw:
            if key not in STAGE_FIELDS:
                problem(f"{path}.{key}", f"unknown key. Valid keys: {', '.join(STAGE_FIELDS)}")
        name = raw.get("name")
        if not isinstance(name, str) or not name:
            choices = ", ".join(registry.names(kind))
            problem(f"{path}.name", f"missing {KIND_TITLES[kind]} name. Available: {choices}")
            return None
        try:
            entry = registry.get(kind, name)
        except DffError as exc:
            problem(f"{path}.name", str(exc))
            return None
        params = raw.get("params") or {}
        if not isinstance(params, dict):
            problem(f"{path}.params", f"expected a mapping, got {_show(params)}")
            return None
        try:
            validated = entry.cls.Params(**params)
        except ValidationError as exc:
            for err in exc.errors():
                loc = ".".join(str(p) for p in err.get("loc", ()))
                where = f"{path}.params.{loc}" if loc else f"{path}.params"
                problems.append(_param_problem(blame(where), path, entry.cls, err))
            return None
        return StageSpec(kind, name, validated, path, entry.cls, entry.source)

    stages: dict[str, Any] = {}
    for kind in ("align", "focus", "aggregate"):
        stages[kind] = stage(kind, data.get(kind, DEFAULTS[kind]), kind)
    regs = data.get("regularize", [])
    if regs is None:
        regs = []
    if not isinstance(regs, list):
        regs = [regs] if isinstance(regs, (dict, str)) else regs
    if not isinstance(regs, list):
        problem("regularize", f"expected a list of stages, got {_show(regs)}")
        regs = []
    stages["regularize"] = [stage("regularize", r, f"regularize[{i}]") for i, r in enumerate(regs)]
    raw_composite = data.get("composite")
    stages["composite"] = (
        None if raw_composite is None else stage("composite", raw_composite, "composite")
    )
    description = data.get("description", "")
    if not isinstance(description, str):
        problem("description", f"expected text, got {_show(description)}")
    memory = None
    if data.get("memory") is not None:
        try:
            memory = parse_memory(data["memory"])
        except DffError as exc:
            problem("memory", str(exc))
    if problems:
        raise SpecError(problems)
    return PipelineSpec(
        align=stages["align"],
        focus=stages["focus"],
        aggregate=stages["aggregate"],
        regularize=stages["regularize"],
        composite=stages["composite"],
        description=description if isinstance(description, str) else "",
        source=label,
        memory=memory,
    )


def _culprits(overrides: list[str] | tuple[str, ...]) -> list[tuple[str, str]]:
    """(YAML path, assignment) of each well-formed override, the last one first."""
    out = []
    for assignment in reversed(list(overrides)):
        try:
            out.append((_join(_split_path(assignment.split("=", 1)[0].strip())), assignment))
        except DffError:
            continue
    return out


#: the smallest memory budget a run accepts: what a process needs before any image
#: (Python, NumPy, OpenCV, the plugins); a stack needs more (``dffcore.run.plan``)
MIN_MEMORY = 400 * 10**6
#: the largest memory budget accepted (1 PB)
MAX_MEMORY = 10**15


def format_memory(nbytes: float, *, up: bool = True) -> str:
    """``412MB`` or ``2.4GB``: ``nbytes`` rounded up (``up``) or down to the unit shown.

    Parameters
    ----------
    nbytes : float
        A size in bytes.
    up : bool
        Round up (a requirement: "give at least ...") or down (a budget given).

    Returns
    -------
    str
        Whole MB below 10 GB, else GB to one decimal, both in powers of 1000 as
        ``--memory`` reads them.
    """
    step, unit, digits = (1e6, "MB", 0) if nbytes < 10e9 else (1e8, "GB", 1)
    count = math.ceil(nbytes / step - 1e-9) if up else math.floor(nbytes / step + 1e-9)
    value = count * step / (1e6 if unit == "MB" else 1e9)
    return f"{value:.{digits}f}{unit}"


@functools.cache
def _byte_size() -> TypeAdapter[ByteSize]:
    """The validator of sizes, built on first use (building it takes ~20 ms)."""
    return TypeAdapter(ByteSize)


def parse_memory(value: Any) -> int:
    """Bytes from ``4GB``, ``512MB``, ``2.5GiB`` or a number of bytes, between
    :data:`MIN_MEMORY` and :data:`MAX_MEMORY`; units as :class:`pydantic.ByteSize` reads
    them (``k``/``kb`` = 1000, ``kib`` = 1024)."""
    expected = "expected a memory size such as 4GB, 512MB or 2GiB"
    if isinstance(value, bool) or (isinstance(value, float) and not math.isfinite(value)):
        raise DffError(f"{expected}, got {_show(value)}")
    try:
        size = int(_byte_size().validate_python(value))
    except (ValidationError, ValueError, OverflowError):
        raise DffError(f"{expected}, got {_show(value)}") from None
    if size < MIN_MEMORY:
        raise DffError(
            f"a memory budget of {_show(value)} is too small: give at least "
            f"{format_memory(MIN_MEMORY)}"
        )
    if size > MAX_MEMORY:
        raise DffError(
            f"a memory budget of {_show(value)} is too large: give at most {MAX_MEMORY // 10**15}PB"
        )
    return size


class _BoundedRepr(reprlib.Repr):
    """:mod:`reprlib` that never converts a huge integer to text."""

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 256:
            return f"<integer of about {int(x.bit_length() * math.log10(2)) + 1} digits>"
        return super().repr_int(x, level)


_REPR = _BoundedRepr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 3, 40, 40


def _show(value: Any) -> str:
    """A short repr of a user's value: bounded work and at most 40 characters."""
    text = _REPR.repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _param_problem(label: str, path: str, cls: type[Component], err: dict[str, Any]) -> str:
    """One line for a pydantic error ``err`` of ``cls``'s parameters at stage ``path``."""
    loc = ".".join(str(p) for p in err.get("loc", ()))
    where = f"{path}.params.{loc}" if loc else f"{path}.params"
    fields = list(cls.Params.model_fields)
    if err.get("type") == "extra_forbidden":
        key = str(err["loc"][0])
        hint = did_you_mean(key, fields)
        valid = ", ".join(fields) or "(none)"
        return f"{label}: {where}: unknown parameter of {cls.name}.{hint} Valid: {valid}"
    msg = err.get("msg", "invalid value")
    msg = msg[0].lower() + msg[1:] if msg else msg
    if msg.startswith("value error, "):
        msg = msg[len("value error, ") :]
    if not loc:  # a rule across parameters: the input is the whole mapping
        return f"{label}: {where}: {msg}"
    return f"{label}: {where}: {msg} (got {_show(err.get('input'))})"
