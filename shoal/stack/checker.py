"""Typed reading of Node values, recording every problem with its file, line and key path.

Each reader returns the typed value, or None after recording a problem, so validation goes on
and reports everything wrong in one pass. Numbers and booleans are also accepted as strings
("3", "true"), as Compose's schema allows, because interpolation always produces strings.
"""

from __future__ import annotations

import difflib
import re
import shlex
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from shoal.stack.errors import Problem
from shoal.stack.yamltree import Node

T = TypeVar("T")


@dataclass(frozen=True)
class Declared:
    """What the whole stack declares, for checking a service's references."""

    services: frozenset[str]
    networks: frozenset[str]
    volumes: frozenset[str]
    secrets: frozenset[str]
    configs: frozenset[str]
    env: Mapping[str, str]
    project_dir: str
    read_text: Callable[[str], str]


def describe(value: Any) -> str:
    """How a message shows a value it did not expect: 'three', 3, true, null, a mapping, a list."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return repr(value)
    return str(value)


def join(path: str, *keys: str | int) -> str:
    """Extend a key path: join("services.web", "ports", 0) -> "services.web.ports[0]"."""
    for key in keys:
        if isinstance(key, int):
            path = f"{path}[{key}]"
        else:
            path = f"{path}.{key}" if path else key
    return path


class Checker:
    """Collects problems while reading a merged Node tree."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    # ---- reporting ------------------------------------------------------------------------------

    def error(self, node: Node, path: str, message: str) -> None:
        self.problems.append(Problem(node.file, node.line, path, message))

    def key_error(self, parent: Node, key: str, path: str, message: str) -> None:
        """A problem with a key itself (unknown, unsupported): points at the key's line."""
        child = parent.value.get(key) if parent.is_map else None
        line = parent.key_lines.get(key) or (child.line if child is not None else parent.line)
        self.problems.append(Problem(child.file if child is not None else parent.file, line, path, message))

    def attempt(self, node: Node, path: str, parse: Callable[[Any], T]) -> T | None:
        """Run a parser on the node's value, turning its ValueError into a problem."""
        try:
            return parse(node.value)
        except ValueError as exc:
            self.error(node, path, str(exc))
            return None

    # ---- structure ------------------------------------------------------------------------------

    def mapping(self, node: Node | None, path: str, allowed: Iterable[str] | None,
                unsupported: dict[str, str] | None = None, *, nullable: bool = True) -> dict[str, Node] | None:
        """The node's entries when it is a mapping of allowed keys (plus `x-` extensions, which are
        dropped). Unknown keys get a "did you mean" hint; `unsupported` maps known-but-unsupported
        keys to the reason. `allowed=None` accepts every key (mappings keyed by user-chosen names).
        A null value reads as an empty mapping when `nullable`."""
        if node is None or (node.value is None and nullable):
            return {}
        if not node.is_map:
            self.error(node, path, f"expected a mapping, got {describe(node.value)}")
            return None
        if allowed is None:
            return dict(node.value)
        allowed = set(allowed)
        unsupported = unsupported or {}
        entries = {}
        for key, child in node.value.items():
            child_path = join(path, key)
            if key.startswith("x-"):
                continue
            if key in allowed:
                entries[key] = child
            elif key in unsupported:
                self.key_error(node, key, child_path, f"not supported by Shoal stacks: {unsupported[key]}")
            else:
                hint = difflib.get_close_matches(key, sorted(allowed), n=1)
                suffix = f" (did you mean {hint[0]!r}?)" if hint else ""
                self.key_error(node, key, child_path, f"unknown key{suffix}")
        return entries

    def sequence(self, node: Node, path: str) -> list[Node] | None:
        if node.value is None:
            return []
        if not node.is_seq:
            self.error(node, path, f"expected a list, got {describe(node.value)}")
            return None
        return node.value

    # ---- scalars --------------------------------------------------------------------------------

    def string(self, node: Node, path: str, *, numbers: bool = True, empty: bool = True) -> str | None:
        value = node.value
        if isinstance(value, str) or (numbers and isinstance(value, (int, float)) and not isinstance(value, bool)):
            text = str(value)
            if not empty and not text:
                self.error(node, path, "must not be empty")
                return None
            return text
        self.error(node, path, f"expected a string, got {describe(value)}")
        return None

    def integer(self, node: Node, path: str, *, minimum: int | None = 0,
                maximum: int = 2**31 - 1) -> int | None:
        value = node.value
        if isinstance(value, str) and re.fullmatch(r"\s*-?[0-9]+\s*", value):
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            self.error(node, path, f"expected an integer, got {describe(node.value)}")
            return None
        if minimum is not None and value < minimum:
            self.error(node, path, f"expected an integer of at least {minimum}, got {value}")
            return None
        if value > maximum:
            self.error(node, path, f"expected an integer of at most {maximum}, got {value}")
            return None
        return value

    def number(self, node: Node, path: str, *, minimum: float = 0.0, maximum: float | None = None) -> float | None:
        value = node.value
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                pass
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value != value:
            self.error(node, path, f"expected a number, got {describe(node.value)}")
            return None
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
            self.error(node, path, f"expected a number {bound}, got {value}")
            return None
        return float(value)

    def boolean(self, node: Node, path: str) -> bool | None:
        value = node.value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if not isinstance(value, bool):
            self.error(node, path, f"expected true or false, got {describe(value)}")
            return None
        return value

    def choice(self, node: Node, path: str, choices: Iterable[str]) -> str | None:
        choices = list(choices)
        if isinstance(node.value, str) and node.value in choices:
            return node.value
        self.error(node, path, f"expected one of {', '.join(choices)}, got {describe(node.value)}")
        return None

    # ---- composites -----------------------------------------------------------------------------

    def strings(self, node: Node, path: str, *, single: bool = False) -> list[str] | None:
        """A list of strings (or, with `single`, also one string as a one-item list)."""
        if single and isinstance(node.value, str):
            return [node.value]
        items = self.sequence(node, path)
        if items is None:
            return None
        result = []
        for index, item in enumerate(items):
            text = self.string(item, join(path, index))
            if text is not None:
                result.append(text)
        return result if len(result) == len(items) else None

    def command(self, node: Node, path: str) -> tuple[str, ...] | None:
        """A command as a list, or a string split the way a shell would (Compose's rule)."""
        if isinstance(node.value, str):
            try:
                return tuple(shlex.split(node.value))
            except ValueError as exc:
                self.error(node, path, f"cannot split command {node.value!r}: {exc}")
                return None
        if node.value is None:
            return ()
        words = self.strings(node, path)
        return tuple(words) if words is not None else None

    def assignments(self, node: Node, path: str) -> dict[str, tuple[Node, str | None]] | None:
        """`KEY: value` mappings or `KEY=value` lists, as {key: (node, value or None)}.

        Values may be strings, numbers or booleans (written as true/false); None means "no value"
        (a bare `KEY` in a list, or `KEY:` with nothing after it)."""
        if node.value is None:
            return {}
        result: dict[str, tuple[Node, str | None]] = {}
        if node.is_map:
            for key, child in node.value.items():
                value = child.value
                if isinstance(value, (dict, list)):
                    self.error(child, join(path, key), f"expected a string, number or boolean, got {describe(value)}")
                    continue
                if isinstance(value, bool):
                    value = "true" if value else "false"
                result[key] = (child, None if value is None else str(value))
            return result
        items = self.sequence(node, path)
        if items is None:
            return None
        for index, item in enumerate(items):
            if not isinstance(item.value, str):
                self.error(item, join(path, index), f"expected KEY=VALUE, got {describe(item.value)}")
                continue
            key, sep, value = item.value.partition("=")
            if not key:
                self.error(item, join(path, index), f"expected KEY=VALUE, got {item.value!r}")
                continue
            result[key] = (item, value if sep else None)
        return result

    def labels(self, node: Node, path: str) -> dict[str, str]:
        """Labels: every label needs a value ("" allowed)."""
        pairs = self.assignments(node, path) or {}
        return {key: value or "" for key, (_, value) in pairs.items()}
