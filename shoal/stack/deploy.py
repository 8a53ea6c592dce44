"""Validation of a service's `deploy` section into a DeploySpec.

Covers mode, replicas, resources (limits/reservations: cpus "0.5", memory "64M", pids),
restart_policy, update_config, rollback_config (durations like "10s"), placement (constraints,
preferences, max_replicas_per_node), labels and endpoint_mode.
"""

from __future__ import annotations

import re

from shoal.stack.checker import Checker, describe, join
from shoal.stack.model import (
    DeploySpec, PlacementSpec, ResourcesSpec, RestartPolicySpec, UpdateConfigSpec,
)
from common.limits import MAX_REPLICAS
from common.syntax import parse_bytes, parse_cpus, parse_duration
from shoal.stack.yamltree import Node

MODES = ("replicated", "global", "replicated-job", "global-job")
_CONSTRAINT = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*(==|!=)\s*(\S.*?)\s*$")
_CONSTRAINT_KEYS = ("node.id", "node.hostname", "node.role", "node.platform.os", "node.platform.arch")
_CONSTRAINT_PREFIXES = ("node.labels.", "engine.labels.")


def read_deploy(ck: Checker, node: Node, path: str) -> DeploySpec | None:
    """Validate services.<name>.deploy; record problems on `ck`; None if there were any."""
    before = len(ck.problems)
    entries = ck.mapping(node, path, {
        "mode", "replicas", "resources", "restart_policy", "update_config", "rollback_config",
        "placement", "labels", "endpoint_mode"})
    if entries is None:
        return None
    values: dict[str, object] = {}
    mode = ck.choice(entries["mode"], join(path, "mode"), MODES) if "mode" in entries else "replicated"
    values["mode"] = mode
    if "replicas" in entries:
        values["replicas"] = ck.integer(entries["replicas"], join(path, "replicas"), maximum=MAX_REPLICAS)
        if mode in ("global", "global-job"):
            ck.key_error(node, "replicas", join(path, "replicas"), f"cannot be used with mode {mode}")
    if "resources" in entries:
        resources = ck.mapping(entries["resources"], join(path, "resources"), {"limits", "reservations"})
        for key in ("limits", "reservations"):
            if resources and key in resources:
                values[key] = _resources(ck, resources[key], join(path, "resources", key), key)
    if "restart_policy" in entries:
        values["restart_policy"] = _restart_policy(ck, entries["restart_policy"], join(path, "restart_policy"))
    for key in ("update_config", "rollback_config"):
        if key in entries:
            values[key] = _update_config(ck, entries[key], join(path, key), rollback=key == "rollback_config")
    if "placement" in entries:
        values["placement"] = _placement(ck, entries["placement"], join(path, "placement"))
    if "labels" in entries:
        values["labels"] = ck.labels(entries["labels"], join(path, "labels"))
    if "endpoint_mode" in entries:
        values["endpoint_mode"] = ck.choice(entries["endpoint_mode"], join(path, "endpoint_mode"), ("vip", "dnsrr"))
    if len(ck.problems) > before:
        return None
    return DeploySpec(**values)  # type: ignore[arg-type]


def _duration(ck: Checker, node: Node, path: str) -> float | None:
    if not isinstance(node.value, str):
        ck.error(node, path, f"expected a duration like '10s', got {describe(node.value)}")
        return None
    return ck.attempt(node, path, parse_duration)


def _resources(ck: Checker, node: Node, path: str, kind: str) -> ResourcesSpec | None:
    allowed = {"cpus", "memory", "pids"} if kind == "limits" else {"cpus", "memory", "generic_resources"}
    entries = ck.mapping(node, path, allowed, {
        "generic_resources": "only reservations hold generic resources", "devices": "not supported",
        "pids": "only limits can cap pids"})
    if entries is None:
        return None
    generic: list[tuple[str, int]] = []
    for index, item in enumerate(ck.sequence(entries["generic_resources"], join(path, "generic_resources")) or []
                                 if "generic_resources" in entries else []):
        where = join(path, "generic_resources", index)
        spec = ck.mapping(item, where, {"discrete_resource_spec"},
                          {"named_resource_spec": "a service reserves a count (discrete_resource_spec); "
                                                  "named resources are what nodes offer"}, nullable=False)
        if not spec:
            continue
        if "discrete_resource_spec" not in spec:
            ck.error(item, join(where, "discrete_resource_spec"), "required")
            continue
        fields = ck.mapping(spec["discrete_resource_spec"], join(where, "discrete_resource_spec"),
                            {"kind", "value"}, nullable=False) or {}
        if set(fields) != {"kind", "value"}:
            ck.error(item, join(where, "discrete_resource_spec"), "give kind and value")
            continue
        res_kind = ck.string(fields["kind"], join(where, "discrete_resource_spec", "kind"), empty=False)
        value = ck.integer(fields["value"], join(where, "discrete_resource_spec", "value"), minimum=1)
        if res_kind is not None and value is not None:
            generic.append((res_kind, value))
    cpus = ck.attempt(entries["cpus"], join(path, "cpus"), parse_cpus) if "cpus" in entries else 0
    memory = ck.attempt(entries["memory"], join(path, "memory"), parse_bytes) if "memory" in entries else 0
    pids = ck.integer(entries["pids"], join(path, "pids")) if "pids" in entries else 0
    if None in (cpus, memory, pids):
        return None
    return ResourcesSpec(nano_cpus=cpus, memory_bytes=memory, pids=pids, generic=tuple(generic))  # type: ignore[arg-type]


def _restart_policy(ck: Checker, node: Node, path: str) -> RestartPolicySpec | None:
    entries = ck.mapping(node, path, {"condition", "delay", "max_attempts", "window"})
    if entries is None:
        return None
    values: dict[str, object] = {}
    if "condition" in entries:
        values["condition"] = ck.choice(entries["condition"], join(path, "condition"), ("none", "on-failure", "any"))
    for key in ("delay", "window"):
        if key in entries:
            values[key] = _duration(ck, entries[key], join(path, key))
    if "max_attempts" in entries:
        values["max_attempts"] = ck.integer(entries["max_attempts"], join(path, "max_attempts"))
    if None in values.values():
        return None
    return RestartPolicySpec(**values)  # type: ignore[arg-type]


def _update_config(ck: Checker, node: Node, path: str, rollback: bool) -> UpdateConfigSpec | None:
    entries = ck.mapping(node, path, {"parallelism", "delay", "failure_action", "monitor",
                                      "max_failure_ratio", "order"})
    if entries is None:
        return None
    values: dict[str, object] = {}
    if "parallelism" in entries:
        values["parallelism"] = ck.integer(entries["parallelism"], join(path, "parallelism"))
    for key in ("delay", "monitor"):
        if key in entries:
            values[key] = _duration(ck, entries[key], join(path, key))
    if "failure_action" in entries:
        actions = ("continue", "pause") if rollback else ("continue", "pause", "rollback")
        values["failure_action"] = ck.choice(entries["failure_action"], join(path, "failure_action"), actions)
    if "max_failure_ratio" in entries:
        values["max_failure_ratio"] = ck.number(entries["max_failure_ratio"], join(path, "max_failure_ratio"),
                                                maximum=1.0)
    if "order" in entries:
        values["order"] = ck.choice(entries["order"], join(path, "order"), ("stop-first", "start-first"))
    if None in values.values():
        return None
    return UpdateConfigSpec(**values)  # type: ignore[arg-type]


def _placement(ck: Checker, node: Node, path: str) -> PlacementSpec | None:
    entries = ck.mapping(node, path, {"constraints", "preferences", "max_replicas_per_node"})
    if entries is None:
        return None
    constraints: list[str] = []
    if "constraints" in entries:
        for index, text in enumerate(ck.strings(entries["constraints"], join(path, "constraints")) or []):
            problem = check_constraint(text)
            if problem:
                ck.error(entries["constraints"].value[index], join(path, "constraints", index), problem)
            constraints.append(text.strip())
    preferences: list[str] = []
    if "preferences" in entries:
        pref_path = join(path, "preferences")
        for index, item in enumerate(ck.sequence(entries["preferences"], pref_path) or []):
            spread = ck.mapping(item, join(pref_path, index), {"spread"}, nullable=False)
            if spread is None:
                continue
            if "spread" not in spread:
                ck.error(item, join(pref_path, index, "spread"), "required")
                continue
            descriptor = ck.string(spread["spread"], join(pref_path, index, "spread"), empty=False)
            if descriptor is not None:
                preferences.append(descriptor)
    max_replicas = 0
    if "max_replicas_per_node" in entries:
        max_replicas = ck.integer(entries["max_replicas_per_node"], join(path, "max_replicas_per_node"),
                                  maximum=MAX_REPLICAS) or 0
    return PlacementSpec(tuple(constraints), tuple(preferences), max_replicas)


def check_constraint(text: str) -> str | None:
    """Why a placement constraint is malformed ("node.role==manager" is fine), or None."""
    match = _CONSTRAINT.match(text)
    if not match:
        return f"expected a constraint like 'node.role==manager', got {text!r}"
    key = match.group(1)
    if key.lower() in _CONSTRAINT_KEYS or any(
            key.startswith(prefix) and len(key) > len(prefix) for prefix in _CONSTRAINT_PREFIXES):
        return None
    return (f"unknown constraint attribute {key!r} (use node.id, node.hostname, node.role, "
            f"node.platform.os, node.platform.arch, node.labels.<label> or engine.labels.<label>)")
