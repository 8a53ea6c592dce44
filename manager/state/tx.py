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

from .errors import ChangeTooLarge, InvalidChange, VersionConflict
from .kinds import Kind, copy_of, kind_of, unwrap
from .view import ReadView

CREATE = store_pb2.StoreAction.CREATE
UPDATE = store_pb2.StoreAction.UPDATE
REMOVE = store_pb2.StoreAction.REMOVE

MAX_ACTIONS_PER_CHANGE = 200
MAX_CHANGE_BYTES = 3 * 1024 * 1024 // 2     # 1.5 MiB, SwarmKit's cap on one Raft entry


@dataclass(slots=True)
class _Pending:
    action: int                         # CREATE, UPDATE or REMOVE
    obj: Message                        # the object to write: the action's own target (REMOVE: as read)
    expected: int | None                # version the store must hold (None for CREATE)
    slot: store_pb2.StoreAction         # the action, inside its change
    change: store_pb2.StoreChange       # the change holding it


class Tx:
    """One transaction's recorded writes. Use only inside the function given to ``Store.update``.

    ``tx.view`` is the view the transaction started from. Objects returned by ``get``/``list`` must
    not be mutated; copy them, edit the copy, pass it to ``update``.

    Each write is copied once, straight into its StoreAction inside the StoreChange that will be
    proposed (changes of at most MAX_ACTIONS_PER_CHANGE actions, filled in order): proposing
    copies nothing more (see docs/leader-scale.md, "Copies per task change").
    """

    def __init__(self, view: ReadView, now: Callable[[], float]) -> None:
        self.view = view
        self._now = now
        self._pending: dict[tuple[Kind, str], _Pending] = {}
        self._changes: list[store_pb2.StoreChange] = []

    def __len__(self) -> int:
        """How many actions the transaction will propose."""
        return len(self._pending)

    def _record(self, action: int, kind: Kind, obj: Message | None, object_id: str,
                expected: int | None) -> tuple[store_pb2.StoreAction, Message, store_pb2.StoreChange]:
        """A new action at the end of the last change (a new change when it is full), with ``obj``
        copied in (REMOVE: only ``object_id``); returns the action, its target and its change."""
        changes = self._changes
        if not changes or len(changes[-1].actions) >= MAX_ACTIONS_PER_CHANGE:
            changes.append(store_pb2.StoreChange())
        change = changes[-1]
        slot = change.actions.add(kind=action)
        target = getattr(slot.target, kind.field)
        if obj is None:
            target.id = object_id
        else:
            target.CopyFrom(obj)
        return slot, target, change

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
        if pending is not None and pending.action == REMOVE:
            # Deleted then re-created in one tx: replace the object as read.
            slot, stored = pending.slot, getattr(pending.slot.target, kind.field)
            slot.kind = UPDATE
            stored.CopyFrom(obj)
            stored.meta.created_at = now
            stored.meta.updated_at = now
            stored.meta.version = pending.expected
            self._pending[key] = _Pending(UPDATE, stored, pending.expected, slot, pending.change)
            return stored
        existing = self.get(kind, object_id)
        if existing is not None:
            raise VersionConflict(kind.field, object_id, "create", None, existing.meta.version)
        slot, stored, change = self._record(CREATE, kind, obj, object_id, None)
        stored.meta.created_at = now
        stored.meta.updated_at = now
        stored.meta.version = 0
        self._pending[key] = _Pending(CREATE, stored, None, slot, change)
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
        if pending is None:
            slot, stored, change = self._record(UPDATE, kind, obj, object_id, read_version)
            self._pending[key] = _Pending(UPDATE, stored, read_version, slot, change)
        else:       # written before in this tx (current is pending.obj): rewrite that action in place
            stored = pending.obj
            if obj is not stored:
                stored.CopyFrom(obj)
            if pending.action != CREATE:
                stored.meta.version = pending.expected
        stored.meta.updated_at = self._now()
        if not stored.meta.created_at:
            stored.meta.created_at = current.meta.created_at
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
        if pending is None:
            slot, target, change = self._record(REMOVE, kind, None, object_id, read_version)
            target.meta.version = read_version      # a removal needs only the id and the version
            self._pending[key] = _Pending(REMOVE, current, read_version, slot, change)
            return
        if pending.action == CREATE:        # created and removed in this tx: nothing to propose
            del self._pending[key]
            actions = pending.change.actions
            for position in range(len(actions) - 1, -1, -1):
                if actions[position] is pending.slot:
                    del actions[position]
                    break
            return
        # updated, then removed: the action becomes a removal of the version first read
        as_read = copy_of(current)
        pending.slot.kind = REMOVE
        target = getattr(pending.slot.target, kind.field)
        target.Clear()
        target.id = object_id
        target.meta.version = pending.expected
        self._pending[key] = _Pending(REMOVE, as_read, pending.expected, pending.slot, pending.change)

    # -- output ----------------------------------------------------------------------------

    def actions(self) -> list[store_pb2.StoreAction]:
        """The recorded writes as StoreActions, in the order their objects were first written."""
        return [action for change in self._changes for action in change.actions]

    def changes(self, allow_split: bool) -> list[store_pb2.StoreChange]:
        """The recorded writes as StoreChanges to propose in order, each within one change's limits
        (MAX_ACTIONS_PER_CHANGE actions, MAX_CHANGE_BYTES bytes). Raises ChangeTooLarge when more
        than one is needed and ``allow_split`` is false, or when one action alone is over the bytes."""
        out: list[store_pb2.StoreChange] = []
        for change in self._changes:
            if not change.actions:
                continue
            if change.ByteSize() > MAX_CHANGE_BYTES:    # rare: big objects; re-pack by size (copies)
                out.extend(split_actions(list(change.actions), True))
            else:
                out.append(change)
        if len(out) > 1 and not allow_split:
            total = sum(c.ByteSize() for c in out)
            raise ChangeTooLarge(f"transaction of {len(self._pending)} actions ({total} bytes) exceeds one "
                                 f"change ({MAX_ACTIONS_PER_CHANGE} actions, {MAX_CHANGE_BYTES} bytes); "
                                 "pass allow_split=True to commit it in parts")
        return out

    @staticmethod
    def _require_id(kind: Kind, obj: Message, operation: str) -> str:
        if not obj.id:
            raise InvalidChange(f"cannot {operation} {kind.field} without an id")
        return obj.id


def split_actions(actions: list[store_pb2.StoreAction],
                  allow_split: bool) -> list[store_pb2.StoreChange]:
    """Pack actions, in order, into changes of at most 200 actions and 1.5 MiB.

    Raises ChangeTooLarge when more than one change is needed and ``allow_split`` is false, or
    when a single action alone exceeds the byte limit.
    """
    changes: list[store_pb2.StoreChange] = []
    current = store_pb2.StoreChange()
    size = 0
    for action in actions:
        action_size = action.ByteSize() + 6     # field tag and length prefix
        if action_size > MAX_CHANGE_BYTES:
            kind, obj = unwrap(action.target)
            raise ChangeTooLarge(f"cannot write {kind.field} {obj.id}: it encodes to {action_size} "
                                 f"bytes, over the {MAX_CHANGE_BYTES}-byte limit of one change")
        if current.actions and (len(current.actions) >= MAX_ACTIONS_PER_CHANGE
                                or size + action_size > MAX_CHANGE_BYTES):
            changes.append(current)
            current = store_pb2.StoreChange()
            size = 0
        current.actions.append(action)
        size += action_size
    if current.actions:
        changes.append(current)
    if len(changes) > 1 and not allow_split:
        total = sum(a.ByteSize() for a in actions)
        raise ChangeTooLarge(f"transaction of {len(actions)} actions ({total} bytes) exceeds one change "
                             f"({MAX_ACTIONS_PER_CHANGE} actions, {MAX_CHANGE_BYTES} bytes); "
                             "pass allow_split=True to commit it in parts")
    return changes
