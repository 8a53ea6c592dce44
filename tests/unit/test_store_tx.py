"""Tx: reads see the transaction's own writes, writes collapse per object, CAS is checked early,
timestamps come from the injected clock; split_actions enforces one change's limits."""

from __future__ import annotations

import pytest

from manager.state import (MAX_ACTIONS_PER_CHANGE, ChangeTooLarge, InvalidChange, Kind, MemoryStore,
                           Tx, VersionConflict, copy_of, split_actions, wrap)
from proto import objects_pb2, store_pb2
from tests.support.clock import FakeClock

CREATE = store_pb2.StoreAction.CREATE
UPDATE = store_pb2.StoreAction.UPDATE
REMOVE = store_pb2.StoreAction.REMOVE


def seeded_store(*objs) -> MemoryStore:
    store = MemoryStore()
    if objs:
        result = store.apply(store_pb2.StoreChange(actions=[
            store_pb2.StoreAction(kind=CREATE, target=wrap(o)) for o in objs]))
        assert result.ok
    return store


def commit(store: MemoryStore, tx: Tx) -> None:
    result = store.apply(store_pb2.StoreChange(actions=tx.actions()))
    assert result.ok, result.rejected


def test_reads_see_own_creates_updates_and_deletes():
    store = seeded_store(objects_pb2.Task(id="t1"), objects_pb2.Task(id="t2"))
    tx = Tx(store.view(), FakeClock())
    tx.create(objects_pb2.Task(id="t3", service_id="s"))
    t1 = copy_of(tx.get(Kind.TASK, "t1"))
    t1.service_id = "s"
    tx.update(t1)
    tx.delete(Kind.TASK, "t2")
    assert tx.get(Kind.TASK, "t2") is None
    assert tx.get(Kind.TASK, "t1").service_id == "s"
    assert sorted(t.id for t in tx.list(Kind.TASK)) == ["t1", "t3"]
    assert sorted(t.id for t in tx.list(Kind.TASK, lambda t: t.service_id == "s")) == ["t1", "t3"]
    # the view the tx started from is untouched
    assert tx.view.get(Kind.TASK, "t2") is not None
    assert store.view().get(Kind.TASK, "t3") is None


def test_create_then_update_is_one_create_with_the_final_content():
    tx = Tx(MemoryStore().view(), FakeClock())
    created = tx.create(objects_pb2.Node(id="n1"))
    edited = copy_of(created)
    edited.description.hostname = "h"
    tx.update(edited)
    (only,) = tx.actions()
    assert only.kind == CREATE
    assert only.target.node.description.hostname == "h"


def test_update_twice_keeps_the_version_first_read():
    store = seeded_store(objects_pb2.Node(id="n1"))
    tx = Tx(store.view(), FakeClock())
    for name in ("a", "b"):
        n = copy_of(tx.get(Kind.NODE, "n1"))
        n.description.hostname = name
        tx.update(n)
    (only,) = tx.actions()
    assert (only.kind, only.target.node.meta.version, only.target.node.description.hostname) == (UPDATE, 1, "b")
    commit(store, tx)
    assert store.view().get(Kind.NODE, "n1").description.hostname == "b"


def test_create_then_delete_records_nothing_and_update_then_delete_is_one_checked_remove():
    store = seeded_store(objects_pb2.Node(id="n1"))
    tx = Tx(store.view(), FakeClock())
    tx.create(objects_pb2.Node(id="n2"))
    tx.delete(Kind.NODE, "n2")
    n1 = copy_of(tx.get(Kind.NODE, "n1"))
    n1.description.hostname = "x"
    tx.update(n1)
    tx.delete(Kind.NODE, "n1")
    (only,) = tx.actions()
    assert (only.kind, only.target.node.id, only.target.node.meta.version) == (REMOVE, "n1", 1)
    assert not only.target.node.HasField("description")       # removals carry id and version only
    commit(store, tx)
    assert store.view().count(Kind.NODE) == 0


def test_delete_then_create_replaces_the_object():
    store = seeded_store(objects_pb2.Node(id="n1"))
    tx = Tx(store.view(), FakeClock())
    tx.delete(Kind.NODE, "n1")
    replacement = objects_pb2.Node(id="n1")
    replacement.description.hostname = "new"
    tx.create(replacement)
    (only,) = tx.actions()
    assert only.kind == UPDATE
    commit(store, tx)
    assert store.view().get(Kind.NODE, "n1").description.hostname == "new"


def test_stale_writes_conflict_before_anything_is_proposed():
    store = seeded_store(objects_pb2.Node(id="n1"))
    stale = copy_of(store.view().get(Kind.NODE, "n1"))
    bump = Tx(store.view(), FakeClock())
    bump.update(copy_of(stale))
    commit(store, bump)
    tx = Tx(store.view(), FakeClock())
    with pytest.raises(VersionConflict, match="cannot update node n1: expected version 1, store has 2"):
        tx.update(stale)
    with pytest.raises(VersionConflict, match="cannot remove node n1"):
        tx.delete(stale)
    with pytest.raises(VersionConflict, match="cannot create node n1: it already exists"):
        tx.create(objects_pb2.Node(id="n1"))
    with pytest.raises(VersionConflict, match="cannot update node n9: it does not exist"):
        tx.update(objects_pb2.Node(id="n9"))
    with pytest.raises(VersionConflict, match="cannot remove task t9"):
        tx.delete(Kind.TASK, "t9")
    assert len(tx) == 0


def test_writes_without_an_id_are_invalid():
    tx = Tx(MemoryStore().view(), FakeClock())
    with pytest.raises(InvalidChange, match="cannot create service without an id"):
        tx.create(objects_pb2.Service())
    with pytest.raises(InvalidChange, match="cannot remove task without an id"):
        tx.delete(Kind.TASK, "")


def test_timestamps_come_from_the_clock_and_created_at_survives_updates():
    clock = FakeClock(100.0)
    store = MemoryStore()
    tx = Tx(store.view(), clock)
    tx.create(objects_pb2.Service(id="s1"))
    commit(store, tx)
    created = store.view().get(Kind.SERVICE, "s1")
    assert (created.meta.created_at, created.meta.updated_at) == (100.0, 100.0)
    clock.now = 250.5
    tx = Tx(store.view(), clock)
    edited = copy_of(created)
    edited.meta.created_at = 0          # a caller that rebuilt the object from scratch
    tx.update(edited)
    commit(store, tx)
    updated = store.view().get(Kind.SERVICE, "s1")
    assert (updated.meta.created_at, updated.meta.updated_at) == (100.0, 250.5)


def test_tx_copies_what_it_is_given():
    tx = Tx(MemoryStore().view(), FakeClock())
    obj = objects_pb2.Node(id="n1")
    tx.create(obj)
    obj.description.hostname = "changed after create"
    assert tx.actions()[0].target.node.description.hostname == ""


def _create(i: int, payload: int = 0) -> store_pb2.StoreAction:
    config = objects_pb2.Config(id=f"c{i}")
    config.spec.data = b"x" * payload
    return store_pb2.StoreAction(kind=CREATE, target=wrap(config))


def test_split_refuses_oversized_transactions_unless_allowed():
    actions = [_create(i) for i in range(MAX_ACTIONS_PER_CHANGE + 1)]
    with pytest.raises(ChangeTooLarge, match="201 actions"):
        split_actions(actions, allow_split=False)
    changes = split_actions(actions, allow_split=True)
    assert [len(c.actions) for c in changes] == [200, 1]
    assert [a.target.config.id for c in changes for a in c.actions] == [f"c{i}" for i in range(201)]


def test_split_by_bytes_and_refuses_a_single_huge_object():
    actions = [_create(i, 600 * 1024) for i in range(5)]
    changes = split_actions(actions, allow_split=True)
    assert [len(c.actions) for c in changes] == [2, 2, 1]
    assert all(c.ByteSize() <= 3 * 1024 * 1024 // 2 for c in changes)
    assert len(split_actions(actions[:2], allow_split=False)) == 1
    with pytest.raises(ChangeTooLarge, match="cannot write config c0"):
        split_actions([_create(0, 2 * 1024 * 1024)], allow_split=True)


def _config(i: int, payload: int = 0) -> objects_pb2.Config:
    config = objects_pb2.Config(id=f"c{i}")
    config.spec.data = b"x" * payload
    return config


def test_changes_are_the_recorded_actions_in_order_packed_by_count_and_bytes():
    store = seeded_store(*(_config(i) for i in range(3)))
    tx = Tx(store.view(), FakeClock())
    for i in range(3, MAX_ACTIONS_PER_CHANGE + 5):
        tx.create(_config(i))
    tx.delete(Kind.CONFIG, "c0")                        # a removal among the creates
    first = copy_of(tx.get(Kind.CONFIG, "c1"))
    first.spec.data = b"edited"
    tx.update(first)
    again = copy_of(tx.get(Kind.CONFIG, "c1"))          # a second write rewrites the same action
    again.spec.data = b"edited twice"
    tx.update(again)
    tx.delete(Kind.CONFIG, "c4")                        # created, then removed: gone from its change
    changes = tx.changes(allow_split=True)
    assert [len(c.actions) for c in changes] == [MAX_ACTIONS_PER_CHANGE - 1, 4]
    ids = [a.target.config.id for c in changes for a in c.actions]
    assert ids == [f"c{i}" for i in range(3, MAX_ACTIONS_PER_CHANGE + 5) if i != 4] + ["c0", "c1"]
    assert ids == [a.target.config.id for a in tx.actions()]
    with pytest.raises(ChangeTooLarge, match="pass allow_split=True"):
        tx.changes(allow_split=False)
    for change in changes:
        assert store.apply(change).ok
    assert store.view().get(Kind.CONFIG, "c0") is None and store.view().get(Kind.CONFIG, "c4") is None
    assert store.view().get(Kind.CONFIG, "c1").spec.data == b"edited twice"

    big = Tx(MemoryStore().view(), FakeClock())
    for i in range(5):
        big.create(_config(i, 600 * 1024))
    packed = big.changes(allow_split=True)
    assert [len(c.actions) for c in packed] == [2, 2, 1]
    with pytest.raises(ChangeTooLarge, match="cannot write config c0"):
        huge = Tx(MemoryStore().view(), FakeClock())
        huge.create(_config(0, 2 * 1024 * 1024))
        huge.changes(allow_split=True)


def test_the_object_a_write_returns_is_what_will_be_written():
    tx = Tx(seeded_store(objects_pb2.Node(id="n1")).view(), FakeClock())
    node = copy_of(tx.get(Kind.NODE, "n1"))
    written = tx.update(node)
    written.description.hostname = "set on the returned object"
    assert tx.actions()[0].target.node.description.hostname == "set on the returned object"
    assert tx.update(written) is written                # writing it back is the same action
    assert len(tx.actions()) == 1 and tx.actions()[0].kind == UPDATE
