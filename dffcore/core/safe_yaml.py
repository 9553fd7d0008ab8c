"""A safe YAML loader for pipeline files and ``--set`` values.

:class:`SpecLoader` is :class:`yaml.SafeLoader` that also refuses documents which are
valid YAML but no sensible pipeline: an alias bomb (a few lines that expand to billions
of values), nesting deep enough to exhaust Python's stack, a key given twice (which
YAML would let silently win) and an integer too long for Python to convert. Its limits
are checked while the document is composed, before anything is built, so refusing a
hostile document takes as little time and memory as reading it.
"""

from __future__ import annotations

from typing import Any

import yaml

#: the most values (scalars, lists, mappings) a pipeline file or a ``--set`` value may
#: hold, each alias counted as the whole value it stands for
MAX_YAML_VALUES = 10_000
#: the deepest nesting of lists and mappings (aliases expanded) a pipeline file may have
MAX_YAML_DEPTH = 50


class YamlLimitError(yaml.MarkedYAMLError):
    """A YAML document that is valid YAML but not a sensible pipeline: duplicate keys,
    too many values (an alias bomb), too deep nesting, an over-long integer."""


class SpecLoader(yaml.SafeLoader):
    """:class:`yaml.SafeLoader` that refuses hostile or ambiguous documents.

    While composing it tracks, per node, how many values it holds and how deep it
    nests with every alias expanded (memoised by node, so an alias costs nothing to
    count), and stops at :data:`MAX_YAML_VALUES` / :data:`MAX_YAML_DEPTH` before
    anything is built. Mappings with a key given twice and integers longer than
    Python converts are refused with the line they are on.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (values, depth)

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        """Compose one node, refusing it past the depth and size limits."""
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                mark = self.peek_event().start_mark
                raise YamlLimitError(
                    problem=f"nested more than {MAX_YAML_DEPTH} levels deep "
                    f"(at most {MAX_YAML_DEPTH})",
                    problem_mark=mark,
                )
            alias = self.check_event(yaml.AliasEvent)
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if not alias:
            self._measure(node)
        elif id(node) not in self._sizes:  # an alias of a node still being composed
            raise YamlLimitError(
                problem="an alias refers to the value that contains it (a cycle)",
                problem_mark=self.peek_event().start_mark,
            )
        return node

    def _measure(self, node: yaml.Node) -> None:
        """Record the values and depth of a node whose children are measured."""
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        else:
            children = []
        values, depth = 1, 1
        for child in children:
            known = self._sizes[id(child)]
            values += known[0]
            depth = max(depth, known[1] + 1)
            if values > MAX_YAML_VALUES:
                raise YamlLimitError(
                    problem=f"more than {MAX_YAML_VALUES} values once aliases are expanded "
                    f"(at most {MAX_YAML_VALUES})",
                    problem_mark=child.start_mark,
                )
        if depth > MAX_YAML_DEPTH:
            raise YamlLimitError(
                problem=f"nested more than {MAX_YAML_DEPTH} levels deep once aliases are "
                f"expanded (at most {MAX_YAML_DEPTH})",
                problem_mark=node.start_mark,
            )
        self._sizes[id(node)] = (values, depth)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        """Build a mapping, refusing a key given twice (merge keys ``<<`` excepted)."""
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, yaml.Node] = {}
            for key_node, _ in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                    continue
                key = self.construct_object(key_node)
                try:
                    first = seen.setdefault(key, key_node)
                except TypeError:
                    continue
                if first is not key_node:
                    raise YamlLimitError(
                        problem=f"key '{str(key)[:40]}' is given twice (first at line "
                        f"{first.start_mark.line + 1}); give each key once",
                        problem_mark=key_node.start_mark,
                    )
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        """An integer; one too long for Python to convert is refused."""
        try:
            return super().construct_yaml_int(node)
        except ValueError:
            raise YamlLimitError(
                problem=f"an integer of {len(str(node.value))} digits is too long to read",
                problem_mark=node.start_mark,
            ) from None


SpecLoader.add_constructor("tag:yaml.org,2002:int", SpecLoader.construct_yaml_int)


def load_yaml(text: str) -> Any:
    """Parse YAML text with :class:`SpecLoader` (pipeline files and ``--set`` values).

    Raises
    ------
    yaml.YAMLError
        For a syntax error or a document :class:`SpecLoader` refuses
        (:class:`YamlLimitError`).
    """
    loader = SpecLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def yaml_problem(exc: yaml.YAMLError) -> tuple[str, str]:
    """Where (``line 3, column 5``, or ``""``) and what of a YAML error."""
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return where, problem
