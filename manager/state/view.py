"""ReadView: an immutable snapshot of the store at one version.

The store publishes a new view on every commit. Tables are persistent maps (``immutables.Map``,
a HAMT): a commit derives new tables from the old ones in O(log n) per object it touches, sharing
everything else, so taking a view is O(1), committing does not grow with the store's size, and a
view never changes after it is published: any number of readers, on any thread, may hold and read one.

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


class ReadView:
    """The store's content at ``version``. Immutable; safe to share between threads."""

    __slots__ = ("version", "_tables")

    def __init__(self, version: int, tables: Mapping[Kind, Table]) -> None:
        self.version = version
        self._tables = tables

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

    def count(self, kind: Kind) -> int:
        """How many objects of ``kind`` the view holds."""
        return len(self._tables.get(kind, _EMPTY))

    def ids(self, kind: Kind) -> frozenset[str]:
        """The ids of every object of ``kind``."""
        return frozenset(self._tables.get(kind, _EMPTY))

    def find_by_name(self, kind: Kind, name: str) -> Message | None:
        """The object of ``kind`` whose ``spec.annotations.name`` is ``name``, or None.

        Kinds without a spec (none today) never match.
        """
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
        """Tasks, optionally only those of ``service_id`` and/or assigned to ``node_id``."""
        table = self._tables.get(Kind.TASK, _EMPTY)
        return [t for t in table.values()
                if (service_id is None or t.service_id == service_id)
                and (node_id is None or t.node_id == node_id)]

    def cluster(self) -> objects_pb2.Cluster | None:
        """The Cluster object, or None before ``swarm init`` wrote it.

        There is one; if several exist (a bug elsewhere), the one with the smallest id is returned.
        """
        table = self._tables.get(Kind.CLUSTER, _EMPTY)
        if not table:
            return None
        return table[min(table)]
