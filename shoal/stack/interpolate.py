"""Compose variable interpolation over a Node tree, from an explicit environment mapping, by
docker stack deploy's rules (docker/cli's cli/compose/template):

`$VAR`, `${VAR}`, `${VAR:-default}` (unset or empty), `${VAR-default}` (unset), `${VAR:?message}` /
`${VAR?message}` (required) and `$$` for a literal `$`; names are case-insensitive in what they
match (`[_a-z][_a-z0-9]*`). A default or message is taken literally up to the first `}` (a `$` in
it stays a `$`; there is no nesting), and a bare `$VAR-x` reads `-x` as a default, both as Docker
does. Any other `$` is an error. Only string values are interpolated, never keys, and not `x-`
extension fields. An unset variable without a default becomes "" and is reported in `missing`.
No `.env` file is read: the caller passes the environment it wants.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from shoal.stack.errors import Problem
from shoal.stack.yamltree import Node

_SUBST = r"[_a-z][_a-z0-9]*(?::?[-?][^}]*)?"
_PATTERN = re.compile(rf"\$(?i:(?P<escaped>\$)|(?P<named>{_SUBST})|\{{(?P<braced>{_SUBST})\}}|(?P<invalid>))")


class InterpolationError(ValueError):
    """A template is malformed, or a required variable is missing."""


def interpolate(text: str, env: Mapping[str, str], missing: list[str] | None = None) -> str:
    """Substitute variables in `text` from `env`; raise InterpolationError on a bad template or a
    missing required variable. Names of unset variables used without default go to `missing`."""
    missing = missing if missing is not None else []

    def substitute(match: re.Match) -> str:
        if match.group("escaped"):
            return "$"
        substitution = match.group("named") or match.group("braced")
        if not substitution:
            raise InterpolationError(f"invalid interpolation format in {text!r}: you may need to escape "
                                     f"any $ with another $ ('$$' for a literal '$')")
        for sep in (":-", "-"):                      # softDefault, hardDefault
            if sep in substitution:
                name, _, default = substitution.partition(sep)
                value = env.get(name)
                if value is None or (sep == ":-" and value == ""):
                    return default
                return value
        for sep in (":?", "?"):                      # requiredNonEmpty, required
            if sep in substitution:
                name, _, message = substitution.partition(sep)
                value = env.get(name)
                if value is None or (sep == ":?" and value == ""):
                    raise InterpolationError(f"required variable {name} is missing a value: {message}")
                return value
        value = env.get(substitution)
        if value is None:
            if substitution not in missing:
                missing.append(substitution)
            return ""
        return value

    return _PATTERN.sub(substitute, text)


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
