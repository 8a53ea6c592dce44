"""MemoryStore.apply, ReadView and snapshots: CAS conflicts, batch atomicity, growing versions."""

from __future__ import annotations

import pytest

from manager.state import (ApplyResult, InvalidChange, Kind, MemoryStore, VersionConflict, kind_of,
                           unwrap, wrap)
from proto import objects_pb2, store_pb2

CREATE = store_pb2.StoreAction.CREATE
UPDATE = store_pb2.StoreAction.UPDATE
REMOVE = store_pb2.StoreAction.REMOVE


def action(kind: int, obj, version: int | None = None) -> store_pb2.StoreAction:
    act = store_pb2.StoreAction(kind=kind, target=wrap(obj))
    if version is not None:
        getattr(act.target, act.target.WhichOneof("object")).meta.version = version
    return act


def change(*actions: store_pb2.StoreAction) -> store_pb2.StoreChange:
    return store_pb2.StoreChange(actions=list(actions))


def node(node_id: str, hostname: str = "") -> objects_pb2.Node:
    n = objects_pb2.Node(id=node_id)
    n.description.hostname = hostname or node_id
    return n


def service(service_id: str, name: str) -> objects_pb2.Service:
    s = objects_pb2.Service(id=service_id)
    s.spec.annotations.name = name
    return s


def task(task_id: str, service_id: str = "", node_id: str = "") -> objects_pb2.Task:
    return objects_pb2.Task(id=task_id, service_id=service_id, node_id=node_id)


def applied(store: MemoryStore, *actions) -> ApplyResult:
    result = store.apply(change(*actions))
    assert result.ok, result.rejected
    return result


def test_create_stamps_the_new_store_version_on_every_written_object():
    store = MemoryStore()
    result = applied(store, action(CREATE, node("n1")), action(CREATE, task("t1")))
    assert result.version == 1 == store.version
    assert store.view().get(Kind.NODE, "n1").meta.version == 1
    assert store.view().get(Kind.TASK, "t1").meta.version == 1
    applied(store, action(UPDATE, node("n1", "renamed"), version=1))
    updated = store.view().get(Kind.NODE, "n1")
    assert (updated.meta.version, updated.description.hostname) == (2, "renamed")
    assert store.view().get(Kind.TASK, "t1").meta.version == 1


def test_create_of_an_existing_id_rejects_the_whole_batch():
    store = MemoryStore()
    applied(store, action(CREATE, node("n1")))
    before = store.snapshot()
    result = store.apply(change(action(CREATE, node("n2")), action(CREATE, node("n1", "again"))))
    assert not result.ok
    assert result.version == 1
    assert (result.rejected.reason, result.rejected.kind, result.rejected.object_id) == ("exists", "node", "n1")
    assert store.view().get(Kind.NODE, "n2") is None
    assert store.snapshot() == before
    with pytest.raises(VersionConflict, match="cannot create node n1: it already exists at version 1"):
        result.raise_for_rejection()


def test_update_with_a_stale_version_conflicts_and_names_both_versions():
    store = MemoryStore()
    applied(store, action(CREATE, node("n1")))
    applied(store, action(UPDATE, node("n1", "b"), version=1))
    result = store.apply(change(action(UPDATE, node("n1", "c"), version=1)))
    assert result.rejected.reason == "version"
    assert (result.rejected.expected, result.rejected.actual) == (1, 2)
    error = result.rejected.to_error()
    assert isinstance(error, VersionConflict)
    assert (error.kind, error.object_id, error.operation, error.expected, error.actual) == ("node", "n1", "update", 1, 2)
    assert "cannot update node n1: expected version 1, store has 2" == str(error)
    assert store.view().get(Kind.NODE, "n1").description.hostname == "b"


@pytest.mark.parametrize("kind", [UPDATE, REMOVE])
def test_update_or_remove_of_a_missing_id_conflicts(kind):
    store = MemoryStore()
    result = store.apply(change(action(kind, task("ghost"), version=1)))
    assert result.rejected.reason == "missing"
    assert result.rejected.actual is None
    assert store.version == 0
    with pytest.raises(VersionConflict, match="task ghost: it does not exist"):
        result.raise_for_rejection()


def test_remove_checks_the_version_then_deletes():
    store = MemoryStore()
    applied(store, action(CREATE, task("t1")))
    assert store.apply(change(action(REMOVE, task("t1"), version=7))).rejected.reason == "version"
    applied(store, action(REMOVE, task("t1"), version=1))
    assert store.view().get(Kind.TASK, "t1") is None
    assert store.version == 2


def test_a_batch_sees_its_own_earlier_actions():
    store = MemoryStore()
    # create then remove in one batch: the remove sees the staged create (version 0 in the target
    # is compared with the staged object's new version, so it must name version 1).
    result = store.apply(change(action(CREATE, task("t1")), action(REMOVE, task("t1"), version=1)))
    assert result.ok
    assert store.view().get(Kind.TASK, "t1") is None
    assert store.version == 1


def test_rejected_batches_never_move_the_version_and_successes_add_exactly_one():
    store = MemoryStore()
    versions = [store.version]
    for i in range(5):
        store.apply(change(action(CREATE, node(f"n{i}"))))
        versions.append(store.version)
        store.apply(change(action(CREATE, node(f"n{i}"))))       # always a conflict
        versions.append(store.version)
    assert versions == [0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]


def test_an_empty_change_is_a_no_op_barrier():
    store = MemoryStore()
    applied(store, action(CREATE, node("n1")))
    result = store.apply(store_pb2.StoreChange())
    assert result.ok and result.version == 1 == store.version


@pytest.mark.parametrize("bad", [
    store_pb2.StoreAction(kind=CREATE),                                   # no object
    store_pb2.StoreAction(kind=CREATE, target=wrap(objects_pb2.Node())),  # no id
    store_pb2.StoreAction(kind=9, target=wrap(node("n9"))),               # unknown action kind
])
def test_malformed_actions_reject_the_batch_as_invalid(bad):
    store = MemoryStore()
    result = store.apply(change(action(CREATE, node("n1")), bad))
    assert result.rejected.reason == "invalid"
    assert store.version == 0 and store.view().get(Kind.NODE, "n1") is None
    with pytest.raises(InvalidChange):
        result.raise_for_rejection()


def test_old_views_never_change_after_later_commits():
    store = MemoryStore()
    applied(store, action(CREATE, node("n1", "first")), action(CREATE, task("t1")))
    old = store.view()
    applied(store, action(UPDATE, node("n1", "second"), version=1), action(REMOVE, task("t1"), version=1))
    applied(store, action(CREATE, node("n2")))
    assert old.version == 1
    assert old.get(Kind.NODE, "n1").description.hostname == "first"
    assert old.get(Kind.TASK, "t1") is not None
    assert [n.id for n in old.nodes()] == ["n1"]
    new = store.view()
    assert new.get(Kind.NODE, "n1").description.hostname == "second"
    assert new.get(Kind.TASK, "t1") is None and new.count(Kind.NODE) == 2


def test_a_commit_copies_only_the_tables_it_touches():
    store = MemoryStore()
    applied(store, action(CREATE, node("n1")), action(CREATE, service("s1", "web")))
    before = store.view()
    applied(store, action(CREATE, task("t1")))
    after = store.view()
    assert after._tables[Kind.NODE] is before._tables[Kind.NODE]
    assert after._tables[Kind.TASK] is not before._tables[Kind.TASK]
    assert store.view() is after        # taking a view is a reference read


def test_stored_objects_are_copies_of_what_was_proposed():
    store = MemoryStore()
    proposed = change(action(CREATE, node("n1", "orig")))
    applied(store, *proposed.actions)
    proposed.actions[0].target.node.description.hostname = "mutated later"
    assert store.view().get(Kind.NODE, "n1").description.hostname == "orig"


def test_view_queries():
    store = MemoryStore()
    cluster = objects_pb2.Cluster(id="c1")
    applied(store, action(CREATE, service("s1", "web")), action(CREATE, service("s2", "db")),
            action(CREATE, task("t1", "s1", "n1")), action(CREATE, task("t2", "s1", "n2")),
            action(CREATE, task("t3", "s2", "n1")), action(CREATE, cluster))
    view = store.view()
    assert sorted(t.id for t in view.tasks(service_id="s1")) == ["t1", "t2"]
    assert sorted(t.id for t in view.tasks(node_id="n1")) == ["t1", "t3"]
    assert [t.id for t in view.tasks(service_id="s1", node_id="n1")] == ["t1"]
    assert len(view.tasks()) == 3
    assert view.find_by_name(Kind.SERVICE, "db").id == "s2"
    assert view.find_by_name(Kind.SERVICE, "nope") is None
    assert view.cluster().id == "c1"
    assert MemoryStore().view().cluster() is None
    assert sorted(s.id for s in view.list(Kind.SERVICE, lambda s: s.spec.annotations.name != "db")) == ["s1"]
    assert view.ids(Kind.TASK) == {"t1", "t2", "t3"}


def test_snapshot_restore_gives_identical_bytes_and_state():
    store = MemoryStore()
    applied(store, action(CREATE, node("n2")), action(CREATE, node("n1")), action(CREATE, task("t1")))
    applied(store, action(UPDATE, node("n1", "x"), version=1))
    data = store.snapshot()
    copy = MemoryStore()
    copy.restore(data)
    assert copy.snapshot() == data
    assert copy.version == 2
    assert copy.view().get(Kind.NODE, "n1") == store.view().get(Kind.NODE, "n1")
    # a restored store goes on applying the same way
    for s in (store, copy):
        applied(s, action(REMOVE, task("t1"), version=1))
    assert copy.snapshot() == store.snapshot()


def test_restore_rejects_garbage():
    with pytest.raises(InvalidChange, match="does not decode"):
        MemoryStore().restore(b"\xff\xff\xff not a snapshot")


def test_kinds_wrap_and_unwrap():
    assert [k.field for k in Kind] == [f.name for f in store_pb2.StoreObject.DESCRIPTOR.oneofs_by_name["object"].fields]
    for kind in Kind:
        obj = kind.cls(id="x")
        assert kind_of(obj) is kind
        unwrapped_kind, unwrapped = unwrap(wrap(obj))
        assert unwrapped_kind is kind and unwrapped == obj
    with pytest.raises(InvalidChange, match="not a store object kind"):
        kind_of(objects_pb2.Meta())
    with pytest.raises(InvalidChange, match="holds no object"):
        unwrap(store_pb2.StoreObject())
    assert Kind.from_field("task") is Kind.TASK
    with pytest.raises(InvalidChange, match="unknown object kind"):
        Kind.from_field("pod")


def test_a_task_update_that_keeps_node_and_service_leaves_the_task_indexes_alone_and_reads_see_it():
    store = MemoryStore()
    applied(store, action(CREATE, task("t1", "s1", "n1")), action(CREATE, task("t2", "s1", "")))
    before = store.view()
    running = task("t1", "s1", "n1")
    running.status.state = objects_pb2.RUNNING
    applied(store, action(UPDATE, running, before.get(Kind.TASK, "t1").meta.version))
    after = store.view()
    assert after._indexes.by_node is before._indexes.by_node
    assert after._indexes.by_service is before._indexes.by_service
    # the indexes hold ids: every read through them returns the task as now stored
    assert [t.status.state for t in after.tasks(node_id="n1")] == [objects_pb2.RUNNING]
    assert {t.id: t.status.state for t in after.tasks(service_id="s1")}["t1"] == objects_pb2.RUNNING
    on_n1 = after.task_map(node_id="n1")
    assert on_n1["t1"].status.state == objects_pb2.RUNNING and len(on_n1) == 1 and "t2" not in on_n1
    with pytest.raises(KeyError):
        on_n1["t2"]
    assert before.tasks(node_id="n1")[0].status.state != objects_pb2.RUNNING   # old views unchanged
    placed = task("t2", "s1", "n1")
    applied(store, action(UPDATE, placed, before.get(Kind.TASK, "t2").meta.version))
    assert sorted(store.view().task_map(node_id="n1")) == ["t1", "t2"]
    assert store.view().tasks(node_id="") == []
