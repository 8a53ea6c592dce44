"""Loading stack files: read, parse with line numbers, interpolate, merge, validate — all or nothing.

    load_stack(paths, env)                      files on disk, merged in order
    load_stack_sources([(name, text)], env)     the same from strings (tests, stdin)

Either returns a complete, validated StackSpec or raises StackFileError listing every problem as
`file:line: key path: message`. Relative paths in the files (bind mounts, env_file, secret files)
are relative to the project directory: the first file's directory, as in Compose.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from shoal.stack.checker import Checker, Declared, join
from shoal.stack.errors import Problem, StackError, StackFileError
from shoal.stack.interpolate import interpolate_tree
from shoal.stack.merge import merge_files
from shoal.stack.model import ServiceDef, StackSpec
from shoal.stack.order import deploy_waves, find_cycle
from shoal.stack.resources import read_networks, read_secrets, read_volumes
from shoal.stack.services import read_service
from shoal.stack.yamltree import Node, parse_yaml

log = logging.getLogger(__name__)

TOP_LEVEL_KEYS = {"version", "name", "services", "networks", "volumes", "secrets", "configs"}
UNSUPPORTED_TOP_LEVEL = {"include": "merge files with several -c options instead",
                         "models": "not supported"}


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def load_stack(paths: Sequence[str], env: Mapping[str, str] | None = None,
               stdin: Callable[[], str] | None = None) -> StackSpec:
    """Load and merge the stack files at `paths` (in order) with variables from `env` (default:
    none); a path "-" is the text `stdin()` returns (docker's `-c -`), with relative paths in it
    taken from the current directory. Raises StackFileError (unreadable file, or any problem in
    the files) or StackError."""
    if not paths:
        raise StackError("no stack file given (use -c FILE)")
    sources = []
    for path in paths:
        if path == "-":
            if stdin is None:
                raise StackError("-c - reads the stack file from standard input, which is not available here")
            sources.append(("<stdin>", stdin()))
            continue
        try:
            with open(path, encoding="utf-8") as handle:
                sources.append((path, handle.read()))
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise StackFileError([Problem(path, 0, "", f"cannot read the stack file: {reason}")]) from exc
    project_dir = "." if paths[0] == "-" else os.path.dirname(os.path.abspath(paths[0]))
    return load_stack_sources(sources, env, project_dir)


def _parse_files(sources: Sequence[tuple[str, str]], env: Mapping[str, str] | None,
                 problems: list[Problem], missing: list[str]) -> list[Node]:
    """Parse each (name, text) into a mapping tree, interpolated with `env` unless it is None;
    every problem is added to `problems` (files with one are left out), unset variables to `missing`."""
    roots: list[Node] = []
    for name, text in sources:
        try:
            root = parse_yaml(text, name)
        except StackFileError as exc:
            problems.extend(exc.problems)
            continue
        if not root.is_map:
            problems.append(Problem(name, root.line, "", "a stack file is a mapping with a services key"))
            continue
        roots.append(interpolate_tree(root, env, "", problems, missing) if env is not None else root)
    return roots


def merged_config(sources: Sequence[tuple[str, str]], env: Mapping[str, str] | None = None,
                  interpolate: bool = True) -> Any:
    """What `stack config` prints: the files merged in order (and interpolated unless asked not
    to), as plain data. Raises StackFileError for files that do not parse or interpolate."""
    problems: list[Problem] = []
    roots = _parse_files(sources, dict(env or {}) if interpolate else None, problems, [])
    if problems:
        raise StackFileError(problems)
    if not roots:
        raise StackError("no stack file given (use -c FILE)")
    return merge_files(roots).plain()


def load_stack_sources(sources: Sequence[tuple[str, str]], env: Mapping[str, str] | None = None,
                       project_dir: str = ".", read_bytes: Callable[[str], bytes] = _read_bytes) -> StackSpec:
    """Load stack files given as (file name, text) pairs; see the module docstring.

    `read_bytes` reads env files and secret/config files (relative to `project_dir`).
    """
    env = dict(env or {})
    project_dir = os.path.abspath(project_dir)
    problems: list[Problem] = []
    missing: list[str] = []
    roots = _parse_files(sources, env, problems, missing)
    if problems:
        raise StackFileError(problems)
    if not roots:
        raise StackError("no stack file given (use -c FILE)")
    stack = _validate(merge_files(roots), env, project_dir, read_bytes, tuple(missing))
    for name in missing:
        log.warning("variable %s is not set; substituted an empty string", name)
    return stack


def _validate(root: Node, env: Mapping[str, str], project_dir: str,
              read_bytes: Callable[[str], bytes], missing: tuple[str, ...]) -> StackSpec:
    ck = Checker()
    top = ck.mapping(root, "", TOP_LEVEL_KEYS, UNSUPPORTED_TOP_LEVEL) or {}
    if "version" in top:
        ck.string(top["version"], "version")
    if "name" in top:
        ck.string(top["name"], "name")
    networks = read_networks(ck, top.get("networks"))
    volumes = read_volumes(ck, top.get("volumes"))
    secrets = read_secrets(ck, top.get("secrets"), "secrets", env, project_dir, read_bytes)
    configs = read_secrets(ck, top.get("configs"), "configs", env, project_dir, read_bytes)
    services_node = top.get("services")
    service_entries = ck.mapping(services_node, "services", None, nullable=False) \
        if services_node is not None else {}
    if not service_entries and service_entries is not None:
        ck.error(services_node or root, "services", "a stack needs at least one service")
    declared = Declared(
        services=frozenset(service_entries or {}), networks=frozenset(_declared(top, "networks")),
        volumes=frozenset(_declared(top, "volumes")), secrets=frozenset(_declared(top, "secrets")),
        configs=frozenset(_declared(top, "configs")), env=env, project_dir=project_dir,
        read_text=lambda path: read_bytes(path).decode("utf-8", errors="replace"))
    services: dict[str, ServiceDef] = {}
    for name, node in (service_entries or {}).items():
        service = read_service(ck, name, node, services_node, declared)  # type: ignore[arg-type]
        if service is not None:
            services[name] = service
    _check_published_ports(ck, services, service_entries or {})
    waves: tuple[tuple[str, ...], ...] = ()
    if not ck.problems:
        try:
            waves = deploy_waves(services)
        except ValueError as exc:
            graph = {n: {d.service for d in s.depends_on} for n, s in services.items()}
            cycle_start = _cycle_start(graph)
            ck.key_error(service_entries[cycle_start], "depends_on",  # type: ignore[index]
                         join("services", cycle_start, "depends_on"), str(exc))
    if ck.problems:
        raise StackFileError(ck.problems)
    return StackSpec(services=services, networks=networks, volumes=volumes, secrets=secrets,
                     configs=configs, deploy_order=waves, missing_variables=missing)


def _declared(top: dict[str, Node], key: str) -> list[str]:
    node = top.get(key)
    return list(node.value) if node is not None and node.is_map else []


def _cycle_start(graph: dict[str, set[str]]) -> str:
    remaining = dict(graph)
    changed = True
    while changed:  # peel off services whose dependencies are all resolvable
        changed = False
        for name in sorted(remaining):
            if not remaining[name] & set(remaining):
                del remaining[name]
                changed = True
    return find_cycle(remaining)[0]


def _check_published_ports(ck: Checker, services: dict[str, ServiceDef], nodes: dict[str, Node]) -> None:
    """Two services of the stack may not publish the same ingress port."""
    owners: dict[tuple[int, str], str] = {}
    for name in services:  # file order: the later definition is the one reported
        for port in services[name].ports:
            if not port.published or port.mode != "ingress":
                continue
            key = (port.published, port.protocol)
            if key in owners:
                ck.error(nodes[name].value["ports"], join("services", name, "ports"),
                         f"published port {port.published}/{port.protocol} is also published by "
                         f"service {owners[key]}")
            else:
                owners[key] = name
