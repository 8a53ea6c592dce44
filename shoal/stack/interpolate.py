"""Compose variable interpolation over a Node tree, from an explicit environment mapping.

Supported, as in Compose: `$VAR`, `${VAR}`, `${VAR:-default}` (unset or empty), `${VAR-default}`
(unset), `${VAR:?message}` / `${VAR?message}` (required), `${VAR:+replacement}` /
`${VAR+replacement}`, nesting inside defaults (`${A:-${B:-x}}`) and `$$` for a literal `$`. Any other
`$` is an error. Only string values are interpolated, never keys, and not `x-` extension fields.
An unset variable without a default becomes "" and is reported in `missing` (Compose warns).
No `.env` file is read: the caller passes the environment it wants.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from shoal.stack.errors import Problem
from shoal.stack.yamltree import Node

_NAME = re.compile(r"[_a-zA-Z][_a-zA-Z0-9]*")


class InterpolationError(ValueError):
    """A template is malformed, or a required variable is missing."""


def interpolate(text: str, env: Mapping[str, str], missing: list[str] | None = None) -> str:
    """Substitute variables in `text` from `env`; raise InterpolationError on a bad template or a
    missing required variable. Names of unset variables used without default go to `missing`."""
    result, index = _Parser(text, env, missing if missing is not None else []).parse(0, True, False)
    assert index == len(text)
    return result


class _Parser:
    def __init__(self, text: str, env: Mapping[str, str], missing: list[str]) -> None:
        self.text = text
        self.env = env
        self.missing = missing

    def parse(self, index: int, active: bool, inside_braces: bool) -> tuple[str, int]:
        """Expand from `index` to the end (or, inside braces, to the closing '}')."""
        out: list[str] = []
        text = self.text
        while index < len(text):
            char = text[index]
            if char == "}" and inside_braces:
                return "".join(out), index
            if char != "$":
                out.append(char)
                index += 1
                continue
            nxt = text[index + 1] if index + 1 < len(text) else ""
            if nxt == "$":
                out.append("$")
                index += 2
            elif nxt == "{":
                value, index = self.braced(index + 2, active)
                out.append(value)
            else:
                match = _NAME.match(text, index + 1)
                if not match:
                    raise InterpolationError(
                        f"invalid interpolation format in {text!r}: '$' must be followed by a "
                        f"variable name or '{{' (write '$$' for a literal '$')")
                out.append(self.lookup(match.group(), active))
                index = match.end()
        if inside_braces:
            raise InterpolationError(f"invalid interpolation format in {text!r}: missing '}}'")
        return "".join(out), index

    def braced(self, index: int, active: bool) -> tuple[str, int]:
        text = self.text
        match = _NAME.match(text, index)
        if not match:
            raise InterpolationError(
                f"invalid interpolation format in {text!r}: expected a variable name after '${{'")
        name = match.group()
        index = match.end()
        if index >= len(text):
            raise InterpolationError(f"invalid interpolation format in {text!r}: missing '}}'")
        if text[index] == "}":
            return self.lookup(name, active), index + 1
        colon = text[index] == ":"
        operator = text[index + 1] if colon and index + 1 < len(text) else text[index]
        if operator not in "-?+":
            raise InterpolationError(
                f"invalid interpolation format in {text!r}: unexpected {text[index]!r} after "
                f"'${{{name}'")
        index += 2 if colon else 1
        value = self.env.get(name)
        is_set = value is not None and (value != "" or not colon)
        if operator == "-":
            word, index = self.parse(index, active and not is_set, True)
            result = value if is_set else word
        elif operator == "+":
            word, index = self.parse(index, active and is_set, True)
            result = word if is_set else ""
        else:
            word, index = self.parse(index, active and not is_set, True)
            if not is_set and active:
                detail = word or ("must be set and non-empty" if colon else "must be set")
                raise InterpolationError(f"required variable {name} is missing a value: {detail}")
            result = value or ""
        return result, index + 1  # past the '}'

    def lookup(self, name: str, active: bool) -> str:
        value = self.env.get(name)
        if value is None:
            if active and name not in self.missing:
                self.missing.append(name)
            return ""
        return value


def interpolate_tree(node: Node, env: Mapping[str, str], path: str, problems: list[Problem],
                     missing: list[str]) -> Node:
    """A copy of `node` with every string value interpolated; problems are appended, and the
    offending value is left as written."""
    if node.is_map:
        children = {}
        for key, child in node.value.items():
            child_path = f"{path}.{key}" if path else key
            children[key] = child if key.startswith("x-") else \
                interpolate_tree(child, env, child_path, problems, missing)
        return Node(children, node.file, node.line, dict(node.key_lines))
    if node.is_seq:
        return Node([interpolate_tree(c, env, f"{path}[{i}]", problems, missing)
                     for i, c in enumerate(node.value)], node.file, node.line)
    if isinstance(node.value, str) and "$" in node.value:
        try:
            value = interpolate(node.value, env, missing)
        except InterpolationError as exc:
            problems.append(Problem(node.file, node.line, path, str(exc)))
            return node
        return Node(value, node.file, node.line, raw=value)
    return node
