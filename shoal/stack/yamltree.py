"""YAML text to a tree of `Node`s that remember their file and line.

Every later step (interpolation, merging files, validation) works on this tree, so any error can
name the file and line a value came from, even after several files were merged.

The YAML is read with PyYAML's safe composer and a YAML 1.2 core-schema resolver, as Compose's Go
YAML library reads it: only true/false are booleans (`yes`, `on` stay strings) and there are no
base-60 numbers (`22:22` is a string, not 1342). Duplicate keys are errors; `<<` merge keys and
anchors work; alias expansion is bounded (no "billion laughs") and recursive aliases are refused.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from shoal.stack.errors import Problem, StackFileError

# Upper bound on nodes after alias expansion, per file: generous for any real stack file.
MAX_NODES = 100_000

_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_MERGE = "tag:yaml.org,2002:merge"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"


class _Resolver(yaml.resolver.Resolver):
    """YAML 1.2 core schema implicit types."""

    yaml_implicit_resolvers: dict = {}


for _tag, _pattern, _first in [
    (_BOOL, r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    (_INT, r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    (_FLOAT, r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
             r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$", "-+0123456789."),
    (_NULL, r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    (_MERGE, r"^(?:<<)$", "<"),
]:
    _Resolver.add_implicit_resolver(_tag, re.compile(_pattern), list(_first))


class _Loader(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser,
              yaml.composer.Composer, _Resolver):
    def __init__(self, stream: str) -> None:
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        yaml.composer.Composer.__init__(self)
        _Resolver.__init__(self)


class Node:
    """A YAML value with its origin.

    `value` is a dict[str, Node] (mapping), a list[Node] (sequence) or a scalar: str, int,
    float, bool or None. `line` is 1-based. For mappings, `key_lines` gives each key's own line
    (the place to point at for an unknown key). For scalars, `raw` is the source text (to read
    `mode: 0440` as octal, say).
    """

    __slots__ = ("value", "file", "line", "key_lines", "raw")

    def __init__(self, value: Any, file: str, line: int, key_lines: dict[str, int] | None = None,
                 raw: str | None = None) -> None:
        self.value = value
        self.file = file
        self.line = line
        self.key_lines = key_lines if key_lines is not None else {}
        self.raw = raw

    @property
    def is_map(self) -> bool:
        return isinstance(self.value, dict)

    @property
    def is_seq(self) -> bool:
        return isinstance(self.value, list)

    def plain(self) -> Any:
        """The value as plain Python data (dicts, lists, scalars), origins dropped."""
        if isinstance(self.value, dict):
            return {k: v.plain() for k, v in self.value.items()}
        if isinstance(self.value, list):
            return [v.plain() for v in self.value]
        return self.value

    def __repr__(self) -> str:
        return f"Node({self.plain()!r} @ {self.file}:{self.line})"


def parse_yaml(text: str, file: str) -> Node:
    """Parse one YAML document into a Node tree; raise StackFileError with file and line on any
    syntax problem, duplicate key, unsupported tag, recursive alias or oversized expansion.

    An empty document gives an empty mapping.
    """
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        message = " ".join(p for p in (exc.context, exc.problem) if p) or "invalid YAML"
        raise StackFileError([Problem(file, line, "", f"invalid YAML: {message}")]) from None
    except yaml.YAMLError as exc:
        raise StackFileError([Problem(file, 0, "", f"invalid YAML: {exc}")]) from None
    except RecursionError:
        raise StackFileError([Problem(file, 0, "", "invalid YAML: nested too deeply")]) from None
    finally:
        loader.dispose()
    if root is None:
        return Node({}, file, 1)
    return _Builder(file).build(root, "")


class _Builder:
    def __init__(self, file: str) -> None:
        self.file = file
        self.count = 0
        self.active: set[int] = set()

    def fail(self, node: yaml.Node, path: str, message: str) -> StackFileError:
        return StackFileError([Problem(self.file, node.start_mark.line + 1, path, message)])

    def build(self, node: yaml.Node, path: str) -> Node:
        self.count += 1
        if self.count > MAX_NODES:
            raise self.fail(node, path, f"document has more than {MAX_NODES} values after "
                                        f"expanding aliases")
        if id(node) in self.active:
            raise self.fail(node, path, "recursive alias: a value contains itself")
        line = node.start_mark.line + 1
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, path, line)
            if isinstance(node, yaml.SequenceNode):
                if node.tag != _SEQ:
                    raise self.fail(node, path, f"unsupported YAML tag {node.tag}")
                return Node([self.build(item, f"{path}[{i}]") for i, item in enumerate(node.value)],
                            self.file, line)
            return Node(self._scalar(node, path), self.file, line, raw=node.value)
        finally:
            self.active.discard(id(node))

    def _scalar(self, node: yaml.ScalarNode, path: str) -> Any:
        text = node.value
        if node.tag == _STR:
            return text
        if node.tag == _NULL:
            return None
        if node.tag == _BOOL:
            return text.lower() == "true"
        if node.tag == _INT:
            if text.startswith("0o"):
                return int(text[2:], 8)
            if text.startswith("0x"):
                return int(text[2:], 16)
            return int(text)
        if node.tag == _FLOAT:
            lowered = text.lower().lstrip("+")
            if lowered in (".inf", "-.inf", ".nan"):
                return float(lowered.replace(".", ""))
            return float(text)
        raise self.fail(node, path, f"unsupported YAML tag {node.tag}")

    def _mapping(self, node: yaml.MappingNode, path: str, line: int) -> Node:
        if node.tag != _MAP:
            raise self.fail(node, path, f"unsupported YAML tag {node.tag}")
        result: dict[str, Node] = {}
        key_lines: dict[str, int] = {}
        merged: list[Node] = []
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag == _MERGE:
                merged.extend(self._merge_sources(value_node, path))
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                raise self.fail(key_node, path, "mapping keys must be plain strings")
            key = self._scalar(key_node, path)
            if isinstance(key, bool) or key is None:
                raise self.fail(key_node, path, f"mapping key {key_node.value!r} must be a string")
            key = str(key)
            child_path = f"{path}.{key}" if path else key
            if key in result:
                raise self.fail(key_node, child_path,
                                f"duplicate key (first defined on line {key_lines[key]})")
            key_lines[key] = key_node.start_mark.line + 1
            result[key] = self.build(value_node, child_path)
        for source in merged:  # explicit keys win over merged ones; earlier merges win over later
            for key, value in source.value.items():
                if key not in result:
                    result[key] = value
                    key_lines[key] = source.key_lines.get(key, value.line)
        return Node(result, self.file, line, key_lines)

    def _merge_sources(self, node: yaml.Node, path: str) -> list[Node]:
        items = node.value if isinstance(node, yaml.SequenceNode) else [node]
        sources = []
        for item in items:
            built = self.build(item, path)
            if not built.is_map:
                raise self.fail(item, path, "'<<' merges only mappings")
            sources.append(built)
        return sources
