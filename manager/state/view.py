"""ReadView: an immutable snapshot of the store at one version.

The store publishes a new view on every commit. Tables are persistent maps (``immutables.Map``,
a HAMT): a commit derives new tables from the old ones in O(log n) per object it touches, sharing
everything else, so taking a view is O(1), committing does not grow with the store's size, and a
view never changes after it is published: any number of readers, on any thread, may hold and read one.

Indexes, kept the same way (persistent, updated per object a commit touches, never rebuilt):
task ids by node and by service (``tasks(node_id=...)``, ``tasks(service_id=...)`` cost what they
return, not the number of tasks), and names of the named kinds (services, networks, secrets,
configs; case-insensitive, as SwarmKit's name index) so ``find_by_name`` is O(1) and the store's
apply can refuse a create whose name is taken. ``Indexes`` is what MemoryStore maintains.

The task indexes hold ids, not tasks: a task update that keeps its node and service (every status
change a worker reports, the allocator's NEW -> PENDING) leaves them untouched, so the common
update costs the tasks table alone (see docs/leader-scale.md for the measurement).

Objects a view returns are the store's own messages. Callers must not mutate them; to edit one,
copy it first (``new = objects_pb2.Task(); new.CopyFrom(task)``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import immutables
from google.protobuf.message import Message

from proto import objects_pb2

from .kinds import Kind

Table = Mapping[str, Message]

_EMPTY: Table = immutables.Map()

# Kinds whose ``spec.annotations.name`` is unique (per kind) in a swarm.
NAMED_KINDS = (Kind.SERVICE, Kind.NETWORK, Kind.SECRET, Kind.CONFIG)


def name_key(obj: Message) -> str:
    """The name index key of a named object: its name, lower-cased ("" for none)."""
    return obj.spec.annotations.name.lower()


class _TaskSubset(Mapping):
    """Read-only map task id -> task over an index entry (ids) and the tasks table."""

    __slots__ = ("_ids", "_table")

    def __init__(self, ids: Mapping[str, bool], table: Table) -> None:
        self._ids = ids
        self._table = table

    def __getitem__(self, task_id: str) -> Message:
        if task_id not in self._ids:
            raise KeyError(task_id)
        return self._table[task_id]

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._ids

    def __iter__(self):
        return iter(self._ids)

    def __len__(self) -> int:
        return len(self._ids)


class Indexes:
    """The secondary indexes of one view (immutable maps; see the module docstring).

    ``by_node``/``by_service``: id -> Map(task id -> True). ``names``: kind -> Map(lower-cased
    name -> tuple of ids, sorted; more than one only in state written before names were checked
    at commit).
    """

    __slots__ = ("by_node", "by_service", "names")

    def __init__(self, by_node: immutables.Map, by_service: immutables.Map,
                 names: Mapping[Kind, immutables.Map]) -> None:
        self.by_node = by_node
        self.by_service = by_service
        self.names = names

    @classmethod
    def empty(cls) -> Indexes:
        return cls(immutables.Map(), immutables.Map(), {k: immutables.Map() for k in NAMED_KINDS})

    @classmethod
    def build(cls, tables: Mapping[Kind, Table]) -> Indexes:
        """Indexes for whole tables (a snapshot restore)."""
        staged = IndexStaging(cls.empty())
        for task in tables.get(Kind.TASK, _EMPTY).values():
            staged.task(None, task)
        for kind in NAMED_KINDS:
            for obj in tables.get(kind, _EMPTY).values():
                staged.name(kind, None, obj)
        return staged.finish()


class IndexStaging:
    """Index changes of one commit, applied in action order (``finish`` gives the new Indexes)."""

    __slots__ = ("_by_node", "_by_service", "_names", "_base", "_node_inner", "_service_inner")

    def __init__(self, base: Indexes) -> None:
        self._base = base
        self._by_node = base.by_node.mutate()
        self._by_service = base.by_service.mutate()
        self._names: dict[Kind, immutables.MapMutation] = {}
        # key -> the inner map being changed in place (a commit touches each one once)
        self._node_inner: dict[str, immutables.MapMutation] = {}
        self._service_inner: dict[str, immutables.MapMutation] = {}

    def _node(self, key: str) -> immutables.MapMutation:
        inner = self._node_inner.get(key)
        if inner is None:
            inner = self._node_inner[key] = self._by_node.get(key, _EMPTY).mutate()
        return inner

    def _service(self, key: str) -> immutables.MapMutation:
        inner = self._service_inner.get(key)
        if inner is None:
            inner = self._service_inner[key] = self._by_service.get(key, _EMPTY).mutate()
        return inner

    def task(self, old: Message | None, new: Message | None) -> None:
        """Task ``old`` became ``new`` (None: created / removed). Touches an index only when the
        task enters it, leaves it or moves between its keys."""
        if new is None:
            del self._node(old.node_id)[old.id]
            del self._service(old.service_id)[old.id]
            return
        node_id, service_id = new.node_id, new.service_id
        if old is None:
            self._node(node_id)[new.id] = True
            self._service(service_id)[new.id] = True
            return
        if old.node_id != node_id:
            del self._node(old.node_id)[old.id]
            self._node(node_id)[new.id] = True
        if old.service_id != service_id:
            del self._service(old.service_id)[old.id]
            self._service(service_id)[new.id] = True

    def name_holders(self, kind: Kind, key: str) -> tuple[str, ...]:
        """Ids holding the (lower-cased) name ``key`` as staged so far."""
        table = self._names.get(kind)
        if table is None:
            return self._base.names[kind].get(key, ())
        return table.get(key, ())

    def name(self, kind: Kind, old: Message | None, new: Message | None) -> None:
        """Named object ``old`` became ``new`` (None: created / removed)."""
        old_key = name_key(old) if old is not None else ""
        new_key = name_key(new) if new is not None else ""
        if old_key == new_key:
            return
        table = self._names.get(kind)
        if table is None:
            table = self._names[kind] = self._base.names[kind].mutate()
        if old_key:
            holders = tuple(i for i in table.get(old_key, ()) if i != old.id)
            if holders:
                table[old_key] = holders
            else:
                table.pop(old_key, None)
        if new_key:
            table[new_key] = tuple(sorted({*table.get(new_key, ()), new.id}))

    @staticmethod
    def _finish(base: immutables.Map, index: immutables.MapMutation,
                inners: dict[str, immutables.MapMutation]) -> immutables.Map:
        if not inners:
            return base     # untouched by this commit: the same map as before
        for key, inner in inners.items():
            done = inner.finish()
            if done:
                index[key] = done
            else:
                index.pop(key, None)
        return index.finish()

    def finish(self) -> Indexes:
        base = self._base
        if not (self._node_inner or self._service_inner or self._names):
            return base
        names = dict(base.names)
        for kind, table in self._names.items():
            names[kind] = table.finish()
        return Indexes(self._finish(base.by_node, self._by_node, self._node_inner),
                       self._finish(base.by_service, self._by_service, self._service_inner), names)


class ReadView:
    """The store's content at ``version``. Immutable; safe to share between threads."""

    __slots__ = ("version", "_tables", "_indexes")

    def __init__(self, version: int, tables: Mapping[Kind, Table], indexes: Indexes | None = None) -> None:
        self.version = version
        self._tables = tables
        self._indexes = indexes if indexes is not None else Indexes.build(tables)

    def __repr__(self) -> str:
        counts = ", ".join(f"{k.field}={len(t)}" for k, t in self._tables.items() if t)
        return f"ReadView(version={self.version}, {counts})"

    def get(self, kind: Kind, object_id: str) -> Message | None:
        """The object of ``kind`` with ``object_id``, or None."""
        return self._tables.get(kind, _EMPTY).get(object_id)

    def list(self, kind: Kind, predicate: Callable[[Message], bool] | None = None) -> list[Message]:
        """Every object of ``kind`` (for which ``predicate`` holds), in no particular order."""
        table = self._tables.get(kind, _EMPTY)
        if predicate is None:
            return list(table.values())
        return [obj for obj in table.values() if predicate(obj)]

    def table(self, kind: Kind) -> Table:
        """Every object of ``kind`` as a read-only map (id -> object); O(1). A commit that touches
        no object of ``kind`` keeps the same map, so ``is`` tells a reader nothing changed."""
        return self._tables.get(kind, _EMPTY)

    def count(self, kind: Kind) -> int:
        """How many objects of ``kind`` the view holds."""
        return len(self._tables.get(kind, _EMPTY))

    def ids(self, kind: Kind) -> frozenset[str]:
        """The ids of every object of ``kind``."""
        return frozenset(self._tables.get(kind, _EMPTY))

    def find_by_name(self, kind: Kind, name: str) -> Message | None:
        """The object of ``kind`` whose ``spec.annotations.name`` is ``name``, or None.

        O(1) for the named kinds (services, networks, secrets, configs); a scan for the others.
        """
        if kind in self._indexes.names:
            table = self._tables.get(kind, _EMPTY)
            for object_id in self._indexes.names[kind].get(name.lower(), ()):
                obj = table.get(object_id)
                if obj is not None and obj.spec.annotations.name == name:
                    return obj
            return None
        for obj in self._tables.get(kind, _EMPTY).values():
            if obj.spec.annotations.name == name:
                return obj
        return None

    def nodes(self) -> list[objects_pb2.Node]:
        """Every node."""
        return self.list(Kind.NODE)

    def services(self) -> list[objects_pb2.Service]:
        """Every service."""
        return self.list(Kind.SERVICE)

    def networks(self) -> list[objects_pb2.Network]:
        """Every network."""
        return self.list(Kind.NETWORK)

    def tasks(self, service_id: str | None = None, node_id: str | None = None) -> list[objects_pb2.Task]:
        """Tasks, optionally only those of ``service_id`` and/or assigned to ``node_id`` (from the
        indexes: the cost is what is returned). ``node_id=""`` gives the unplaced tasks."""
        table = self._tables.get(Kind.TASK, _EMPTY)
        if node_id is not None:
            found = [table[i] for i in self._indexes.by_node.get(node_id, _EMPTY)]
            if service_id is None:
                return found
            return [t for t in found if t.service_id == service_id]
        if service_id is not None:
            return [table[i] for i in self._indexes.by_service.get(service_id, _EMPTY)]
        return list(table.values())

    def task_map(self, *, service_id: str | None = None, node_id: str | None = None) -> Table:
        """The tasks of one service or one node as a read-only map (task id -> task); O(1)."""
        table = self._tables.get(Kind.TASK, _EMPTY)
        if node_id is not None:
            return _TaskSubset(self._indexes.by_node.get(node_id, _EMPTY), table)
        if service_id is not None:
            return _TaskSubset(self._indexes.by_service.get(service_id, _EMPTY), table)
        return table

    def task_service_ids(self) -> list[str]:
        """The service ids that have at least one task ("" for tasks of no service)."""
        return list(self._indexes.by_service.keys())

    def cluster(self) -> objects_pb2.Cluster | None:
        """The Cluster object, or None before ``swarm init`` wrote it.

        There is one; if several exist (a bug elsewhere), the one with the smallest id is returned.
        """
        table = self._tables.get(Kind.CLUSTER, _EMPTY)
        if not table:
            return None
        return table[min(table)]
