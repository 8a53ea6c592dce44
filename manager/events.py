"""Cluster events: what the store's commits changed, in Docker's event JSON (`docker events`).

Every manager turns its own store watch into events (every manager applies every commit, so any
manager answers `shoal events`); nothing here is replicated or persisted. The shape is Docker's,
scope "swarm":

    {"Type": "service", "Action": "update", "scope": "swarm", "time": 1764748800,
     "timeNano": 1764748800123456789,
     "Actor": {"ID": "<service id>", "Attributes": {"name": "web", "replicas.old": "3", "replicas.new": "6"}}}

Types and actions: ``service``, ``node``, ``network``, ``secret``, ``config`` with ``create``,
``update``, ``remove`` (Docker's), and ``task`` (Shoal's addition: a task's life is what a user
watches a scale or a failure through) with ``create``, ``update`` when its observed or desired
state changed (``state.old``/``state.new``, ``desired.old``/``desired.new``, ``error`` when it has
one) and ``remove``. Updates carry Docker's ``.old``/``.new`` attribute pairs for what changed:
node ``state``, ``availability``, ``role``, ``leader``; service ``replicas``, ``image``,
``updatestate``. A task update that changes neither state is not an event (version bumps,
status timestamps), nor is any update of the cluster object.

``EventLog`` keeps the last ``capacity`` events for ``--since`` and fans new ones out to
subscribers; ``matches`` applies ``--filter`` with Docker's semantics (values of one key are ORed,
keys are ANDed; ``service``, ``node``, ``network``, ... match the actor's ID or name).
"""
from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

from manager.state.events import ObjectCreated, ObjectDeleted, ObjectUpdated
from manager.state.kinds import Kind
from proto import objects_pb2

TYPES: dict[Kind, str] = {Kind.SERVICE: "service", Kind.NODE: "node", Kind.TASK: "task",
                          Kind.NETWORK: "network", Kind.SECRET: "secret", Kind.CONFIG: "config"}
# What `--filter` accepts (Docker's keys; `task` is Shoal's). Anything else is refused by name.
FILTER_KEYS = frozenset({"type", "event", "scope", "service", "node", "task", "network", "secret", "config",
                         "container", "image", "label"})
EVENT_TYPES = frozenset({*TYPES.values(), "container"})
DEFAULT_CAPACITY = 4096
MAX_BACKLOG = 16384


class FilterError(ValueError):
    """A --filter Docker would refuse; the message is Docker's."""


def event(type_: str, action: str, actor_id: str, attributes: Mapping[str, str], when_ns: int | None = None,
          scope: str = "swarm") -> dict[str, Any]:
    ns = time.time_ns() if when_ns is None else when_ns
    return {"Type": type_, "Action": action, "scope": scope, "time": ns // 10**9, "timeNano": ns,
            "Actor": {"ID": actor_id, "Attributes": dict(attributes)}}


def _state_name(value: int) -> str:
    return objects_pb2.TaskState.Name(value).lower()


def _name(kind: Kind, obj) -> str:
    if kind is Kind.NODE:
        return obj.spec.annotations.name or obj.description.hostname
    if kind is Kind.TASK:
        return obj.annotations.name or obj.id
    return obj.spec.annotations.name


def _pair(attrs: dict[str, str], key: str, old: str, new: str) -> None:
    if old != new:
        attrs[f"{key}.old"], attrs[f"{key}.new"] = old, new


def _node_changes(old: objects_pb2.Node, new: objects_pb2.Node, attrs: dict[str, str]) -> None:
    status = objects_pb2.NodeStatus.State
    _pair(attrs, "state", status.Name(old.status.state).lower(), status.Name(new.status.state).lower())
    avail = objects_pb2.NodeSpec.Availability
    _pair(attrs, "availability", avail.Name(old.spec.availability).lower(), avail.Name(new.spec.availability).lower())
    _pair(attrs, "role", objects_pb2.NodeRole.Name(old.role).lower(), objects_pb2.NodeRole.Name(new.role).lower())


def _replicas(service: objects_pb2.Service) -> str:
    mode = service.spec.mode
    if mode in (objects_pb2.ServiceSpec.REPLICATED, objects_pb2.ServiceSpec.REPLICATED_JOB):
        return str(service.spec.replicas)
    return ""


def _service_changes(old: objects_pb2.Service, new: objects_pb2.Service, attrs: dict[str, str]) -> None:
    _pair(attrs, "replicas", _replicas(old), _replicas(new))
    _pair(attrs, "image", old.spec.task.container.image, new.spec.task.container.image)
    if old.HasField("update_status") or new.HasField("update_status"):
        names = objects_pb2.UpdateStatus.State
        _pair(attrs, "updatestate", names.Name(old.update_status.state).lower() if old.HasField("update_status") else "",
              names.Name(new.update_status.state).lower() if new.HasField("update_status") else "")


def _task_attrs(task: objects_pb2.Task) -> dict[str, str]:
    attrs = {"service": task.service_id, "node": task.node_id, "slot": str(task.slot),
             "state": _state_name(task.status.state), "desired": _state_name(task.desired_state)}
    if task.status.err:
        attrs["error"] = task.status.err
    return attrs


def from_store_event(ev, when_ns: int | None = None) -> dict[str, Any] | None:
    """The event a store change makes, or None when it is not one users see (see module doc)."""
    kind = getattr(ev, "kind", None)
    type_ = TYPES.get(kind) if kind is not None else None
    if type_ is None:
        return None
    obj = ev.obj
    attrs = {"name": _name(kind, obj)}
    if isinstance(ev, ObjectCreated):
        if kind is Kind.TASK:
            attrs.update(_task_attrs(obj))
        return event(type_, "create", obj.id, attrs, when_ns)
    if isinstance(ev, ObjectDeleted):
        return event(type_, "remove", obj.id, attrs, when_ns)
    if not isinstance(ev, ObjectUpdated):
        return None
    old = ev.old
    if kind is Kind.TASK:
        if old.status.state == obj.status.state and old.desired_state == obj.desired_state:
            return None
        attrs.update(_task_attrs(obj))
        del attrs["state"], attrs["desired"]
        _pair(attrs, "state", _state_name(old.status.state), _state_name(obj.status.state))
        _pair(attrs, "desired", _state_name(old.desired_state), _state_name(obj.desired_state))
    elif kind is Kind.NODE:
        _node_changes(old, obj, attrs)
    elif kind is Kind.SERVICE:
        _service_changes(old, obj, attrs)
    return event(type_, "update", obj.id, attrs, when_ns)


def leader_event(node_id: str, hostname: str, leading: bool, when_ns: int | None = None) -> dict[str, Any]:
    """A manager took (or lost) the leadership: a node update with Docker's leader.old/leader.new."""
    attrs = {"name": hostname, "leader.old": str(not leading).lower(), "leader.new": str(leading).lower()}
    return event("node", "update", node_id, attrs, when_ns)


# -- filters --------------------------------------------------------------------------------------

def parse_filters(pairs: Iterable[str]) -> dict[str, set[str]]:
    """`--filter key=value` arguments -> {key: {values}}; FilterError in Docker's words."""
    out: dict[str, set[str]] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise FilterError(f"bad format of filter (expected name=value): {pair}")
        key = key.strip().lower()
        if key not in FILTER_KEYS:
            raise FilterError(f"invalid filter '{key}'")
        if key == "type" and value not in EVENT_TYPES:
            raise FilterError(f"invalid filter 'type={value}': use one of {', '.join(sorted(EVENT_TYPES))}")
        out.setdefault(key, set()).add(value)
    return out


def matches(ev: Mapping[str, Any], filters: Mapping[str, set[str]]) -> bool:
    """Docker's event filter: every key must match; any value of a key may."""
    actor = ev.get("Actor", {})
    attrs = actor.get("Attributes", {})
    ident = {actor.get("ID", ""), attrs.get("name", "")}
    for key, values in filters.items():
        if key == "type":
            ok = ev.get("Type") in values
        elif key == "event":
            ok = ev.get("Action") in values or ev.get("Action", "").split(":")[0] in values
        elif key == "scope":
            ok = ev.get("scope") in values
        elif key == "label":
            ok = any(attrs.get(v.partition("=")[0]) == v.partition("=")[2] if "=" in v else v in attrs
                     for v in values)
        elif key == "image":
            ok = attrs.get("image") in values
        else:  # service, node, task, network, secret, config, container: the actor by ID or name
            if ev.get("Type") == key:
                ok = bool(ident & values) or any(actor.get("ID", "").startswith(v) for v in values if len(v) >= 4)
            elif ev.get("Type") == "task" and key in ("service", "node"):
                ok = attrs.get(key) in values
            else:
                ok = False
        if not ok:
            return False
    return True


# -- the log --------------------------------------------------------------------------------------

class EventLog:
    """The last ``capacity`` events, and live fan-out; use from one event loop."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY, max_backlog: int = MAX_BACKLOG) -> None:
        self._recent: deque[dict[str, Any]] = deque(maxlen=capacity)
        self._subscribers: set[asyncio.Queue[dict[str, Any] | None]] = set()
        self._max_backlog = max_backlog
        self.published = 0

    def publish(self, ev: dict[str, Any]) -> None:
        self._recent.append(ev)
        self.published += 1
        for queue in list(self._subscribers):
            if queue.qsize() >= self._max_backlog:   # a reader that stopped reading: end its stream
                self._subscribers.discard(queue)
                queue.put_nowait(None)
            else:
                queue.put_nowait(ev)

    def since(self, since_ns: int, until_ns: int | None = None) -> list[dict[str, Any]]:
        return [e for e in self._recent if e["timeNano"] >= since_ns and (until_ns is None or e["timeNano"] <= until_ns)]

    def subscribe(self) -> asyncio.Queue[dict[str, Any] | None]:
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue) -> None:
        self._subscribers.discard(queue)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)
