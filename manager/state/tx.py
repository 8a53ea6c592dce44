"""Tx: the write side of one store transaction, built by ``Store.update``.

A Tx records creates, updates and deletes against the view it started from. Reads through the Tx
see its own pending writes. Nothing reaches the store until ``Store.update`` turns the recorded
actions into a StoreChange and Raft commits it; the compare-and-set checks are then made again,
deterministically, by ``MemoryStore.apply``.

Several writes to one object inside a Tx collapse into one action (create+update is a create with
the final content; update+delete is a delete checked against the version first read; create+delete
is nothing), so a Tx never conflicts with itself.

The Tx stamps ``meta.created_at``/``meta.updated_at`` from the injected clock here, before
proposing, so that apply stays free of time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from google.protobuf.message import Message

from proto import store_pb2

from .errors import InvalidChange, VersionConflict
from .kinds import Kind, copy_of, kind_of
from .view import ReadView

CREATE = store_pb2.StoreAction.CREATE
UPDATE = store_pb2.StoreAction.UPDATE
REMOVE = store_pb2.StoreAction.REMOVE


@dataclass(slots=True)
class _Pending:
    action: int                 # CREATE, UPDATE or REMOVE
    obj: Message                # the object to write (for REMOVE: the object as read)
    expected: int | None        # version the store must hold (None for CREATE)


class Tx:
    """One transaction's recorded writes. Use only inside the function given to ``Store.update``.

    ``tx.view`` is the view the transaction started from. Objects returned by ``get``/``list`` must
    not be mutated; copy them, edit the copy, pass it to ``update``.
    """

    def __init__(self, view: ReadView, now: Callable[[], float]) -> None:
        self.view = view
        self._now = now
        self._pending: dict[tuple[Kind, str], _Pending] = {}

    def __len__(self) -> int:
        """How many actions the transaction will propose."""
        return len(self._pending)

    # -- reads -----------------------------------------------------------------------------

    def get(self, kind: Kind, object_id: str) -> Message | None:
        """The object as this transaction sees it (its own writes included), or None."""
        pending = self._pending.get((kind, object_id))
        if pending is None:
            return self.view.get(kind, object_id)
        return None if pending.action == REMOVE else pending.obj

    def list(self, kind: Kind, predicate: Callable[[Message], bool] | None = None) -> list[Message]:
        """Every object of ``kind`` as this transaction sees it (matching ``predicate``)."""
        seen = {obj.id: obj for obj in self.view.list(kind)}
        for (pending_kind, object_id), pending in self._pending.items():
            if pending_kind is not kind:
                continue
            if pending.action == REMOVE:
                seen.pop(object_id, None)
            else:
                seen[object_id] = pending.obj
        objs = list(seen.values())
        return objs if predicate is None else [o for o in objs if predicate(o)]

    # -- writes ----------------------------------------------------------------------------

    def create(self, obj: Message) -> Message:
        """Record the creation of ``obj`` (a copy is taken); returns the copy that will be written.

        Raises InvalidChange without an id, VersionConflict if the id already exists.
        """
        kind = kind_of(obj)
        object_id = self._require_id(kind, obj, "create")
        key = (kind, object_id)
        pending = self._pending.get(key)
        now = self._now()
        stored = copy_of(obj)
        stored.meta.created_at = now
        stored.meta.updated_at = now
        if pending is not None and pending.action == REMOVE:
            # Deleted then re-created in one tx: replace the object as read.
            stored.meta.version = pending.expected
            self._pending[key] = _Pending(UPDATE, stored, pending.expected)
            return stored
        existing = self.get(kind, object_id)
        if existing is not None:
            raise VersionConflict(kind.field, object_id, "create", None, existing.meta.version)
        stored.meta.version = 0
        self._pending[key] = _Pending(CREATE, stored, None)
        return stored

    def update(self, obj: Message) -> Message:
        """Record a compare-and-set update: ``obj.meta.version`` must be the version that was read.

        A copy is taken and stamped with ``updated_at``; returns it. Raises VersionConflict at once
        if this transaction's view already shows another version or no such object.
        """
        kind = kind_of(obj)
        object_id = self._require_id(kind, obj, "update")
        key = (kind, object_id)
        pending = self._pending.get(key)
        current = self.get(kind, object_id)
        read_version = obj.meta.version
        if current is None:
            raise VersionConflict(kind.field, object_id, "update", read_version, None)
        if current.meta.version != read_version:
            raise VersionConflict(kind.field, object_id, "update", read_version, current.meta.version)
        stored = copy_of(obj)
        stored.meta.updated_at = self._now()
        if not stored.meta.created_at:
            stored.meta.created_at = current.meta.created_at
        if pending is not None and pending.action == CREATE:
            self._pending[key] = _Pending(CREATE, stored, None)
        else:
            self._pending[key] = _Pending(UPDATE, stored, read_version)
        return stored

    def delete(self, kind_or_obj: Kind | Message, object_id: str | None = None) -> None:
        """Record a removal: ``delete(obj)`` checks ``obj.meta.version``; ``delete(kind, id)`` checks
        the version this transaction sees. Raises VersionConflict if the object is absent or changed.
        """
        if isinstance(kind_or_obj, Kind):
            if not object_id:
                raise InvalidChange(f"cannot remove {kind_or_obj.field} without an id")
            kind = kind_or_obj
            current = self.get(kind, object_id)
            if current is None:
                raise VersionConflict(kind.field, object_id, "remove", None, None)
            read_version = current.meta.version
        else:
            kind = kind_of(kind_or_obj)
            object_id = self._require_id(kind, kind_or_obj, "remove")
            read_version = kind_or_obj.meta.version
            current = self.get(kind, object_id)
            if current is None:
                raise VersionConflict(kind.field, object_id, "remove", read_version, None)
            if current.meta.version != read_version:
                raise VersionConflict(kind.field, object_id, "remove", read_version, current.meta.version)
        key = (kind, object_id)
        pending = self._pending.get(key)
        if pending is not None and pending.action == CREATE:
            del self._pending[key]
            return
        expected = pending.expected if pending is not None else read_version
        self._pending[key] = _Pending(REMOVE, current, expected)

    # -- output ----------------------------------------------------------------------------

    def actions(self) -> list[store_pb2.StoreAction]:
        """The recorded writes as StoreActions, in the order their objects were first written."""
        out = []
        for (kind, _), pending in self._pending.items():
            action = store_pb2.StoreAction(kind=pending.action)
            target = getattr(action.target, kind.field)
            if pending.action == REMOVE:
                target.id = pending.obj.id        # a removal needs only the id and the version
            else:
                target.CopyFrom(pending.obj)
            if pending.action != CREATE:
                target.meta.version = pending.expected
            out.append(action)
        return out

    @staticmethod
    def _require_id(kind: Kind, obj: Message, operation: str) -> str:
        if not obj.id:
            raise InvalidChange(f"cannot {operation} {kind.field} without an id")
        return obj.id
