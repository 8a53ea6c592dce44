"""Validation of a service's mounts: `volumes` (short and long syntax: bind, named volume, tmpfs)
and `tmpfs`.

Bind sources are made absolute against the project directory; named volumes must be declared
under the top-level volumes key; every target is an absolute path mounted once.
"""

from __future__ import annotations

import os

from shoal.stack.checker import Checker, Declared, describe, join
from shoal.stack.model import MountSpec
from common.syntax import parse_bytes, parse_file_mode
from shoal.stack.syntax import is_bind_source, split_volume_short
from shoal.stack.yamltree import Node


def read_mounts(ck: Checker, entries: dict[str, Node], path: str, declared: Declared) -> tuple[MountSpec, ...] | None:
    """The mounts from a service's `volumes` and `tmpfs` entries; problems are recorded on `ck`."""
    mounts: list[MountSpec] = []
    targets: dict[str, str] = {}
    items: list[tuple[Node, str, MountSpec | None]] = []
    if "volumes" in entries:
        for index, item in enumerate(ck.sequence(entries["volumes"], join(path, "volumes")) or []):
            item_path = join(join(path, "volumes"), index)
            mount = _volume_long(ck, item, item_path, declared) if item.is_map else \
                _volume_short(ck, item, item_path, declared)
            items.append((item, item_path, mount))
    if "tmpfs" in entries:
        tmpfs_path = join(path, "tmpfs")
        node = entries["tmpfs"]
        listed = [node] if isinstance(node.value, str) else (ck.sequence(node, tmpfs_path) or [])
        for index, item in enumerate(listed):
            item_path = tmpfs_path if item is node else join(tmpfs_path, index)
            items.append((item, item_path, ck.attempt(item, item_path, _tmpfs_short)))
    for item, item_path, mount in items:
        if mount is None:
            continue
        if not mount.target.startswith("/"):
            ck.error(item, item_path, f"mount target {mount.target!r} must be an absolute path")
            continue
        if mount.target in targets:
            ck.error(item, item_path, f"{mount.target} is already mounted by {targets[mount.target]}")
            continue
        targets[mount.target] = item_path
        mounts.append(mount)
    return tuple(mounts)


def _volume_source(ck: Checker, node: Node, path: str, source: str, declared: Declared,
                   kind: str | None) -> MountSpec | None:
    if kind == "bind" or (kind is None and is_bind_source(source)):
        full = os.path.normpath(os.path.join(declared.project_dir, os.path.expanduser(source)))
        return MountSpec(type="bind", target="", source=full)
    if source and source not in declared.volumes:
        ck.error(node, path, f"volume {source!r} is not declared under the top-level volumes key")
        return None
    return MountSpec(type="volume", target="", source=source)


def _volume_short(ck: Checker, node: Node, path: str, declared: Declared) -> MountSpec | None:
    text = ck.string(node, path, numbers=False, empty=False)
    if text is None:
        return None
    try:
        source, target, mode = split_volume_short(text)
    except ValueError as exc:
        ck.error(node, path, str(exc))
        return None
    if mode not in ("", "ro", "rw"):
        ck.error(node, path, f"volume mode {mode!r} is not supported (use ro or rw)")
        return None
    base = MountSpec(type="volume", target=target) if source is None else \
        _volume_source(ck, node, path, source, declared, None)
    if base is None:
        return None
    return MountSpec(type=base.type, target=target, source=base.source, read_only=mode == "ro")


def _volume_long(ck: Checker, node: Node, path: str, declared: Declared) -> MountSpec | None:
    entries = ck.mapping(node, path, {"type", "source", "target", "read_only", "bind", "volume", "tmpfs"},
                         {"consistency": "not supported", "image": "not supported"})
    if entries is None:
        return None
    if "type" not in entries or "target" not in entries:
        ck.error(node, join(path, "type" if "type" not in entries else "target"), "required")
        return None
    kind = ck.choice(entries["type"], join(path, "type"), ("bind", "volume", "tmpfs"))
    target = ck.string(entries["target"], join(path, "target"), numbers=False, empty=False)
    source = ck.string(entries["source"], join(path, "source"), numbers=False) if "source" in entries else ""
    read_only = ck.boolean(entries["read_only"], join(path, "read_only")) if "read_only" in entries else False
    if None in (kind, target, source, read_only):
        return None
    size = mode = 0
    propagation, nocopy = "", False
    for option in ("bind", "volume", "tmpfs"):
        if option in entries and option != kind:
            ck.key_error(node, option, join(path, option), f"only valid with type: {option}")
            return None
    if "bind" in entries:
        options = ck.mapping(entries["bind"], join(path, "bind"), {"create_host_path", "propagation"},
                             {"selinux": "not supported", "recursive": "not supported"})
        if options and "propagation" in options:
            propagation = ck.choice(options["propagation"], join(path, "bind", "propagation"),
                                    ("private", "rprivate", "shared", "rshared", "slave", "rslave")) or ""
    if "volume" in entries:
        options = ck.mapping(entries["volume"], join(path, "volume"), {"nocopy"}, {"subpath": "not supported"})
        if options and "nocopy" in options:
            nocopy = bool(ck.boolean(options["nocopy"], join(path, "volume", "nocopy")))
    if "tmpfs" in entries:
        options = ck.mapping(entries["tmpfs"], join(path, "tmpfs"), {"size", "mode"})
        if options and "size" in options:
            size = ck.attempt(options["size"], join(path, "tmpfs", "size"), parse_bytes) or 0
        if options and "mode" in options:
            node_mode = options["mode"]       # 0700 is octal, as docker's YAML 1.1 loader reads it
            raw = node_mode.raw if node_mode.raw is not None else str(node_mode.value)
            mode = ck.attempt(Node(raw, node_mode.file, node_mode.line), join(path, "tmpfs", "mode"),
                              parse_file_mode) or 0
    if kind == "tmpfs":
        if source:
            ck.error(entries["source"], join(path, "source"), "a tmpfs mount has no source")
            return None
        return MountSpec(type="tmpfs", target=target, read_only=bool(read_only), tmpfs_size=size,  # type: ignore[arg-type]
                         tmpfs_mode=mode)
    if kind == "bind" and not source:
        ck.error(node, join(path, "source"), "required for a bind mount")
        return None
    base = _volume_source(ck, entries.get("source", node), join(path, "source"), source, declared, kind) \
        if source else MountSpec(type="volume", target="")
    if base is None:
        return None
    return MountSpec(type=base.type, target=target, source=base.source, read_only=bool(read_only),  # type: ignore[arg-type]
                     propagation=propagation, nocopy=nocopy)


def _tmpfs_short(value: object) -> MountSpec:
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a path like /run or /run:size=64m, got {describe(value)}")
    target, _, options = value.partition(":")
    size = 0
    for option in filter(None, options.split(",")):
        key, _, amount = option.partition("=")
        if key != "size":
            raise ValueError(f"tmpfs option {option!r} is not supported (only size=)")
        size = parse_bytes(amount)
    return MountSpec(type="tmpfs", target=target, tmpfs_size=size)
