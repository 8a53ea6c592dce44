"""MemoryStore: the replicated state machine every manager holds.

``apply(change)`` is the one deterministic transition: it reads nothing but the store and the
change (no clock, no randomness, no I/O), so every manager that applies the same committed changes
in the same order holds byte-identical state (``snapshot()`` proves it). A batch is atomic: either
every action passes its compare-and-set check and the store version grows by exactly one, or the
batch is rejected whole and nothing changes.

Thread model: ``apply``, ``restore``, ``snapshot`` and ``watch`` serialise on one lock and may be
called from any thread (PySyncObj applies on its tick thread). ``view()`` takes no lock.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass

import immutables
from google.protobuf.message import Message

from proto import store_pb2

from .errors import InvalidChange, NameConflict, VersionConflict
from .events import ObjectCreated, ObjectDeleted, ObjectUpdated, StoreEvent
from .kinds import Kind, copy_of, unwrap
from .view import NAMED_KINDS, Indexes, IndexStaging, ReadView, name_key
from .watch import DEFAULT_WATCH_QUEUE, Watch

log = logging.getLogger(__name__)

CREATE = store_pb2.StoreAction.CREATE
UPDATE = store_pb2.StoreAction.UPDATE
REMOVE = store_pb2.StoreAction.REMOVE
_OPERATION = {CREATE: "create", UPDATE: "update", REMOVE: "remove"}


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a batch was rejected: the first action that failed.

    ``reason`` is "exists" (create of an existing id), "missing" (update/remove of an absent id),
    "version" (expected version differs), "name" (a create, or a rename, to a name another object
    of the kind holds; ``actual_id`` is that object, ``message`` the name) or "invalid"
    (malformed action; ``message`` says how).
    """

    reason: str
    kind: str
    object_id: str
    operation: str
    expected: int | None
    actual: int | None
    message: str = ""
    actual_id: str = ""

    def to_error(self) -> VersionConflict | InvalidChange | NameConflict:
        """The exception a proposer raises for this rejection."""
        if self.reason == "invalid":
            return InvalidChange(self.message)
        if self.reason == "name":
            return NameConflict(self.kind, self.object_id, self.message, self.actual_id)
        return VersionConflict(self.kind, self.object_id, self.operation, self.expected, self.actual)


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """The outcome of applying one StoreChange: the store version after it, and the rejection if any.

    A rejected batch leaves ``version`` at the unchanged store version.
    """

    version: int
    rejected: Rejection | None = None

    @property
    def ok(self) -> bool:
        return self.rejected is None

    def raise_for_rejection(self) -> None:
        """Raise VersionConflict / InvalidChange if the batch was rejected."""
        if self.rejected is not None:
            raise self.rejected.to_error()


class _Invalid(Exception):
    def __init__(self, rejection: Rejection) -> None:
        self.rejection = rejection


def _empty_tables() -> dict[Kind, immutables.Map]:
    return {kind: immutables.Map() for kind in Kind}


class MemoryStore:
    """The store's state: objects by kind and id, a version, and the watches to notify."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._view = ReadView(0, _empty_tables(), Indexes.empty())
        self._watches: list[Watch] = []

    @property
    def version(self) -> int:
        """The store version: how many batches have committed (0 when empty)."""
        return self._view.version

    def view(self) -> ReadView:
        """The current immutable view (O(1)). It never changes; call again for newer state."""
        return self._view

    # -- the state transition --------------------------------------------------------------

    def apply(self, change: store_pb2.StoreChange, *, owned: bool = False) -> ApplyResult:
        """Apply one committed batch atomically and notify watches; deterministic.

        Every action is checked against the state left by the actions before it in the batch:
        CREATE needs the id absent; UPDATE and REMOVE need it present with ``meta.version`` equal
        to the target's. On success the store version becomes version+1 and every created or
        updated object is stored as a copy of its target with ``meta.version`` = the new version.
        An empty batch changes nothing (a read barrier) and succeeds at the current version.
        ``owned``: the caller hands ``change`` over (it was just decoded and nothing else holds
        it), so its objects are stored as they are instead of copied.
        A CREATE of a service, network, secret or config, or an UPDATE that renames one, is
        rejected when another object of that kind holds the name (ignoring case): so concurrent
        creates of one name through several managers leave exactly one, decided by log order.
        """
        with self._lock:
            current = self._view
            if not change.actions:
                return ApplyResult(current.version)
            new_version = current.version + 1
            try:
                staged, indexes, events = self._stage(current, change.actions, new_version, owned)
            except _Invalid as invalid:
                return ApplyResult(current.version, invalid.rejection)
            tables = dict(current._tables)
            for kind, table in staged.items():
                tables[kind] = table.finish()
            self._view = ReadView(new_version, tables, indexes.finish())
            self._notify(events, new_version, frozenset(staged))
            return ApplyResult(new_version)

    @staticmethod
    def _stage(current: ReadView, actions: Iterable[store_pb2.StoreAction], new_version: int,
               owned: bool = False) -> tuple[dict[Kind, immutables.MapMutation], IndexStaging, list[StoreEvent]]:
        staged: dict[Kind, immutables.MapMutation] = {}
        indexes = IndexStaging(current._indexes)
        events: list[StoreEvent] = []
        for position, action in enumerate(actions):
            operation = _OPERATION.get(action.kind)
            field = action.target.WhichOneof("object")
            if operation is None or field is None:
                raise _Invalid(Rejection("invalid", field or "", "", operation or str(action.kind),
                                         None, None,
                                         f"action {position} of the change has no object or an "
                                         f"unknown action kind {action.kind}"))
            kind, target = unwrap(action.target)
            object_id = target.id
            if not object_id:
                raise _Invalid(Rejection("invalid", kind.field, "", operation, None, None,
                                         f"cannot {operation} {kind.field} without an id "
                                         f"(action {position} of the change)"))
            table = staged.get(kind)
            if table is None:
                table = staged[kind] = current._tables[kind].mutate()
            existing = table.get(object_id)
            actual = existing.meta.version if existing is not None else None
            if action.kind == CREATE:
                if existing is not None:
                    raise _Invalid(Rejection("exists", kind.field, object_id, operation, None, actual))
            else:
                expected = target.meta.version
                if existing is None:
                    raise _Invalid(Rejection("missing", kind.field, object_id, operation, expected, None))
                if expected != actual:
                    raise _Invalid(Rejection("version", kind.field, object_id, operation, expected, actual))
            if action.kind == REMOVE:
                del table[object_id]
                if kind is Kind.TASK:
                    indexes.task(existing, None)
                elif kind in NAMED_KINDS:
                    indexes.name(kind, existing, None)
                events.append(ObjectDeleted(kind, existing))
                continue
            if kind in NAMED_KINDS:
                key = name_key(target)
                if key and (existing is None or name_key(existing) != key):
                    holders = [i for i in indexes.name_holders(kind, key) if i != object_id]
                    if holders:
                        raise _Invalid(Rejection("name", kind.field, object_id, operation, None, None,
                                                 target.spec.annotations.name, holders[0]))
            stored = target if owned else copy_of(target)
            stored.meta.version = new_version
            table[object_id] = stored
            if kind is Kind.TASK:
                indexes.task(existing, stored)
            elif kind in NAMED_KINDS:
                indexes.name(kind, existing, stored)
            if existing is None:
                events.append(ObjectCreated(kind, stored))
            else:
                events.append(ObjectUpdated(kind, stored, existing))
        return staged, indexes, events

    # -- snapshots -------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        """The whole state as StoreSnapshot bytes, deterministic: equal states give equal bytes."""
        return snapshot_of(self._view)

    def restore(self, data: bytes) -> None:
        """Replace the whole state with a snapshot taken by ``snapshot()``.

        Watches receive the difference as events (created, updated, deleted objects), so a watcher
        stays consistent across a snapshot install. Raises InvalidChange for undecodable data.
        """
        try:
            snap = store_pb2.StoreSnapshot.FromString(data)
        except Exception as exc:  # protobuf raises DecodeError, a bare Exception subclass
            raise InvalidChange(f"cannot restore store: snapshot does not decode: {exc}") from exc
        tables: dict[Kind, dict[str, Message]] = {kind: {} for kind in Kind}
        for envelope in snap.objects:
            kind, obj = unwrap(envelope)
            tables[kind][obj.id] = copy_of(obj)
        with self._lock:
            old = self._view
            events: list[StoreEvent] = []
            for kind in Kind:
                before, after = old._tables[kind], tables[kind]
                for object_id, obj in after.items():
                    previous = before.get(object_id)
                    if previous is None:
                        events.append(ObjectCreated(kind, obj))
                    elif previous != obj:
                        events.append(ObjectUpdated(kind, obj, previous))
                for object_id, previous in before.items():
                    if object_id not in after:
                        events.append(ObjectDeleted(kind, previous))
            maps = {kind: immutables.Map(t) for kind, t in tables.items()}
            self._view = ReadView(snap.version, maps, Indexes.build(maps))
            log.info("store restored from snapshot at version %d (%d objects, %d changed)",
                     snap.version, len(snap.objects), len(events))
            self._notify(events, snap.version)

    # -- watches ---------------------------------------------------------------------------

    def watch(self, kinds: Iterable[Kind] | None = None, *, maxsize: int = DEFAULT_WATCH_QUEUE,
              commits: bool = False) -> Watch:
        """A Watch of every commit after this call, for ``kinds`` (all if None).

        Call from the loop that will consume it. With ``commits=True`` a ChangeCommitted(version)
        follows each commit's object events.
        """
        return self.view_and_watch(kinds, maxsize=maxsize, commits=commits)[1]

    def view_and_watch(self, kinds: Iterable[Kind] | None = None, *, maxsize: int = DEFAULT_WATCH_QUEUE,
                       commits: bool = False) -> tuple[ReadView, Watch]:
        """The current view and a Watch that starts exactly after it: no commit is missed or seen twice."""
        loop = asyncio.get_running_loop()
        with self._lock:
            watch = Watch(kinds, maxsize=maxsize, commits=commits, loop=loop, on_close=self._forget)
            self._watches.append(watch)
            return self._view, watch

    def _forget(self, watch: Watch) -> None:
        with self._lock:
            try:
                self._watches.remove(watch)
            except ValueError:
                pass

    def _notify(self, events: list[StoreEvent], version: int, kinds: frozenset[Kind] | None = None) -> None:
        """Post a commit's events to every watch; ``kinds``: the kinds among them, if known (the
        tables a change touched)."""
        if not self._watches:
            return
        if kinds is None:
            kinds = frozenset(e.kind for e in events)
        self._watches = [w for w in self._watches if w._post(events, version, kinds)]


def snapshot_of(view: ReadView) -> bytes:
    """StoreSnapshot bytes for a view: objects in Kind order, then by id; deterministic encoding."""
    snap = store_pb2.StoreSnapshot(version=view.version)
    for kind in Kind:
        table = view._tables[kind]
        for object_id in sorted(table):
            getattr(snap.objects.add(), kind.field).CopyFrom(table[object_id])
    return snap.SerializeToString(deterministic=True)
