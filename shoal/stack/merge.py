"""Merging several stack files in order, with Compose's rules (`docker stack deploy -c a -c b`).

- mappings merge key by key, later files winning;
- `environment`, `labels`, `deploy.labels`, `depends_on`, a service's `networks`, `sysctls` and
  `extra_hosts` merge by key whether written as a list or a mapping;
- `volumes` merge by container path, `secrets` and `configs` by target, `ports` by
  (published, target, protocol, mode): a later entry replaces an earlier one with the same key;
- `command`, `entrypoint` and `healthcheck.test` are replaced as a whole;
- other sequences (`cap_add`, `env_file`, placement constraints, ...) are concatenated, dropping
  repeated values;
- anything else (scalars, or values of different shapes) is replaced by the later file's value.

Works on Node trees and never mutates its inputs, so every merged value keeps its own file and line.
"""

from __future__ import annotations

from collections.abc import Callable

from shoal.stack.syntax import parse_port_short, split_assignment, split_volume_short
from shoal.stack.yamltree import Node

_TO_MAP_ASSIGNMENTS = {("environment",), ("labels",), ("deploy", "labels"), ("sysctls",)}
_TO_MAP_NAMES = {("depends_on",), ("networks",)}
_REPLACED = {("command",), ("entrypoint",), ("healthcheck", "test")}


def merge_files(roots: list[Node]) -> Node:
    """Merge file roots (mappings) in order; the first root gives the merged root its origin."""
    merged = roots[0]
    for root in roots[1:]:
        merged = _merge(merged, root, ())
    return merged


def _service_subpath(path: tuple[str, ...]) -> tuple[str, ...] | None:
    if len(path) >= 3 and path[0] == "services":
        return path[2:]
    return None


def _merge(base: Node, over: Node, path: tuple[str, ...]) -> Node:
    sub = _service_subpath(path)
    if sub in _REPLACED:
        return over
    if sub in _TO_MAP_ASSIGNMENTS or sub in _TO_MAP_NAMES:
        by_assignment = sub in _TO_MAP_ASSIGNMENTS
        base_map, over_map = _as_map(base, by_assignment), _as_map(over, by_assignment)
        if base_map is not None and over_map is not None:
            return _merge_maps(base_map, over_map, path)
        return over
    if sub is not None and len(sub) == 1 and sub[0] in _KEYED and base.is_seq and over.is_seq:
        return _merge_keyed(base, over, _KEYED[sub[0]])
    if base.is_map and over.is_map:
        return _merge_maps(base, over, path)
    if base.is_seq and over.is_seq:
        seen = [item.plain() for item in base.value]
        items = list(base.value)
        for item in over.value:
            if item.plain() not in seen:
                seen.append(item.plain())
                items.append(item)
        return Node(items, base.file, base.line)
    return over


def _merge_maps(base: Node, over: Node, path: tuple[str, ...]) -> Node:
    children = dict(base.value)
    key_lines = dict(base.key_lines)
    for key, value in over.value.items():
        if key in children:
            children[key] = _merge(children[key], value, path + (key,))
            if children[key] is value:
                key_lines[key] = over.key_lines.get(key, value.line)
        else:
            children[key] = value
            key_lines[key] = over.key_lines.get(key, value.line)
    return Node(children, base.file, base.line, key_lines)


def _as_map(node: Node, by_assignment: bool) -> Node | None:
    """A list of "KEY=VALUE" strings (or of names) as a mapping Node; mappings as they are;
    None when the node has neither shape (the validator will say so)."""
    if node.is_map:
        return node
    if not node.is_seq:
        return None
    children: dict[str, Node] = {}
    key_lines: dict[str, int] = {}
    for item in node.value:
        if not isinstance(item.value, str):
            return None
        if by_assignment:
            key, value = split_assignment(item.value)
        else:
            key, value = item.value, None
        children[key] = Node(value, item.file, item.line, raw=value)
        key_lines[key] = item.line
    return Node(children, node.file, node.line, key_lines)


def _volume_key(item: Node) -> object:
    if item.is_map:
        target = item.value.get("target")
        return ("target", target.value) if target is not None else None
    if isinstance(item.value, str):
        try:
            return ("target", split_volume_short(item.value)[1])
        except ValueError:
            return None
    return None


def _file_key(default_prefix: str) -> Callable[[Node], object]:
    def key(item: Node) -> object:
        if isinstance(item.value, str):
            return ("target", default_prefix + item.value)
        if item.is_map:
            target = item.value.get("target")
            if target is not None:
                return ("target", target.value)
            source = item.value.get("source")
            if source is not None:
                return ("target", default_prefix + str(source.value))
        return None
    return key


def _port_key(item: Node) -> object:
    if item.is_map:
        plain = item.plain()
        published = plain.get("published") or 0
        if isinstance(published, str) and published.isascii() and published.isdigit():
            published = int(published)
        return ("port", published, plain.get("target"), plain.get("protocol", "tcp"),
                plain.get("mode", "ingress"))
    try:
        ports = parse_port_short(item.value)
    except ValueError:
        return None
    return ("port",) + tuple(p.key() for p in ports) if len(ports) != 1 else \
        ("port", ports[0].published, ports[0].target, ports[0].protocol, ports[0].mode)


_KEYED: dict[str, Callable[[Node], object]] = {
    "volumes": _volume_key,
    "secrets": _file_key(""),
    "configs": _file_key("/"),
    "ports": _port_key,
}


def _merge_keyed(base: Node, over: Node, key_of: Callable[[Node], object]) -> Node:
    items = list(base.value)
    keys = [key_of(item) for item in items]
    for item in over.value:
        key = key_of(item)
        if key is not None and key in keys:
            items[keys.index(key)] = item
        elif item.plain() not in [i.plain() for i in items]:
            items.append(item)
            keys.append(key)
    return Node(items, base.file, base.line)
