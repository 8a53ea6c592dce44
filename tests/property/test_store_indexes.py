"""Hypothesis: the store's indexes (tasks by node and by service, names of the named kinds) stay
equal to indexes rebuilt from the tables, whatever batches are applied; and a create or rename to
a name another object of the kind holds (ignoring case) is refused whole, on every replica alike."""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from manager.state import Kind, MemoryStore, NameConflict
from manager.state.view import NAMED_KINDS, Indexes
from proto import objects_pb2, store_pb2

CREATE = store_pb2.StoreAction.CREATE
UPDATE = store_pb2.StoreAction.UPDATE
REMOVE = store_pb2.StoreAction.REMOVE

IDS = ["a", "b", "c", "d"]
NODES = ["", "n1", "n2"]
NAMES = ["web", "WEB", "db", ""]

task_op = st.tuples(st.just(Kind.TASK), st.sampled_from([CREATE, UPDATE, REMOVE]), st.sampled_from(IDS),
                    st.sampled_from(NODES), st.sampled_from(["s1", "s2", ""]))
named_op = st.tuples(st.sampled_from([Kind.SERVICE, Kind.SECRET]), st.sampled_from([CREATE, UPDATE, REMOVE]),
                     st.sampled_from(IDS), st.sampled_from(NAMES), st.just(""))
batches = st.lists(st.one_of(task_op, named_op), min_size=1, max_size=4)


def as_dict(indexes: Indexes) -> tuple:
    return ({k: dict(v) for k, v in indexes.by_node.items()},
            {k: dict(v) for k, v in indexes.by_service.items()},
            {kind: dict(indexes.names[kind]) for kind in NAMED_KINDS})


class IndexMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.store = MemoryStore()
        self.replica = MemoryStore()

    @rule(ops=batches)
    def apply(self, ops) -> None:
        view = self.store.view()
        change = store_pb2.StoreChange()
        staged_names = {kind: {o.id: o.spec.annotations.name.lower() for o in view.list(kind)}
                        for kind in (Kind.SERVICE, Kind.SECRET)}
        name_clash = False
        for kind, op, object_id, a, b in ops:
            current = view.get(kind, object_id)
            obj = kind.cls(id=object_id)
            obj.meta.version = current.meta.version if current is not None else 0
            if kind is Kind.TASK:
                obj.node_id, obj.service_id = a, b
            else:
                obj.spec.annotations.name = a
                names = staged_names[kind]
                if op == REMOVE:
                    names.pop(object_id, None)
                else:
                    renamed = a and (op == CREATE or names.get(object_id) != a.lower())
                    if renamed and any(n == a.lower() for i, n in names.items() if i != object_id):
                        name_clash = True
                    names[object_id] = a.lower()
            getattr(change.actions.add(kind=op).target, kind.field).CopyFrom(obj)
        result = self.store.apply(change)
        assert result.ok == self.replica.apply(change).ok, "replicas decide alike"
        if result.rejected is not None and result.rejected.reason == "name":
            assert isinstance(result.rejected.to_error(), NameConflict)
        if name_clash and result.ok:
            raise AssertionError(f"a batch that reuses a taken name was accepted: {ops}")

    @invariant()
    def indexes_match_the_tables(self) -> None:
        view = self.store.view()
        assert as_dict(view._indexes) == as_dict(Indexes.build(view._tables))
        for node in NODES:
            assert sorted(t.id for t in view.tasks(node_id=node)) == \
                sorted(t.id for t in view.list(Kind.TASK) if t.node_id == node)
        for kind in (Kind.SERVICE, Kind.SECRET):
            names = [o.spec.annotations.name.lower() for o in view.list(kind) if o.spec.annotations.name]
            assert len(names) == len(set(names)), "names stay unique"
            for obj in view.list(kind):
                if obj.spec.annotations.name:
                    assert view.find_by_name(kind, obj.spec.annotations.name).id == obj.id

    def teardown(self) -> None:
        restored = MemoryStore()
        restored.restore(self.store.snapshot())
        assert as_dict(restored.view()._indexes) == as_dict(self.store.view()._indexes)
        assert self.replica.snapshot() == self.store.snapshot()


TestIndexMachine = IndexMachine.TestCase
TestIndexMachine.settings = settings(max_examples=150, stateful_step_count=30, deadline=None,
                                     suppress_health_check=[HealthCheck.too_slow])


def test_a_store_restored_with_duplicate_names_keeps_both_and_refuses_a_third():
    """State written before names were checked at commit may hold duplicates: updates of either
    still apply, and a new create of that name is refused."""
    snap = store_pb2.StoreSnapshot(version=3)
    for object_id in ("x", "y"):
        service = objects_pb2.Service(id=object_id)
        service.spec.annotations.name = "web"
        service.meta.version = 1
        snap.objects.add().service.CopyFrom(service)
    store = MemoryStore()
    store.restore(snap.SerializeToString())
    update = store_pb2.StoreChange()
    target = update.actions.add(kind=UPDATE).target.service
    target.CopyFrom(store.view().get(Kind.SERVICE, "y"))
    target.spec.annotations.labels["k"] = "v"
    assert store.apply(update).ok
    create = store_pb2.StoreChange()
    third = create.actions.add(kind=CREATE).target.service
    third.id = "z"
    third.spec.annotations.name = "Web"
    result = store.apply(create)
    assert result.rejected is not None and result.rejected.reason == "name"
    assert result.rejected.actual_id in ("x", "y")
