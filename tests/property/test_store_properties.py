"""Hypothesis: random create/update/remove batches against MemoryStore, checked against a model.

Properties: a batch is accepted exactly when every compare-and-set check passes (sequentially
within the batch); the store version grows by one per accepted batch and never otherwise; object
versions only grow; replaying the accepted changes on a fresh store gives identical snapshot bytes;
snapshot then restore gives identical bytes.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from manager.state import Kind, MemoryStore
from proto import store_pb2

CREATE = store_pb2.StoreAction.CREATE
UPDATE = store_pb2.StoreAction.UPDATE
REMOVE = store_pb2.StoreAction.REMOVE

KINDS = [Kind.NODE, Kind.TASK, Kind.SERVICE, Kind.CLUSTER]
IDS = ["a", "b", "c"]

operation = st.tuples(
    st.sampled_from([CREATE, UPDATE, REMOVE]),
    st.sampled_from(KINDS),
    st.sampled_from(IDS),
    st.sampled_from(["current", "stale", "zero", "future"]),
    st.integers(min_value=0, max_value=1000),
)
batches = st.lists(operation, min_size=0, max_size=5)


class StoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.store = MemoryStore()
        self.model: dict[tuple[Kind, str], tuple[int, int]] = {}     # (kind, id) -> (version, payload)
        self.committed: list[bytes] = []
        self.highest_seen: dict[tuple[Kind, str], int] = {}

    @rule(ops=batches)
    def apply_batch(self, ops) -> None:
        change, accept = self._expected(ops)
        before_version = self.store.version
        before_bytes = self.store.snapshot()
        result = self.store.apply(store_pb2.StoreChange.FromString(change.SerializeToString()))
        assert result.ok == accept, (ops, result)
        if not result.ok:
            assert self.store.version == before_version == result.version
            assert self.store.snapshot() == before_bytes
            return
        if not change.actions:
            assert self.store.version == before_version
            return
        assert result.version == self.store.version == before_version + 1
        self.committed.append(change.SerializeToString())
        for action in change.actions:
            field = action.target.WhichOneof("object")
            kind = Kind.from_field(field)
            target = getattr(action.target, field)
            key = (kind, target.id)
            if action.kind == REMOVE:
                self.model.pop(key, None)
            else:
                self.model[key] = (result.version, int(target.meta.created_at))

    def _expected(self, ops):
        """The StoreChange for ``ops`` and whether the model says it must be accepted.

        Actions are checked in order against the state the batch's earlier actions left: an object
        written earlier in the batch already carries the new store version.
        """
        new_version = self.store.version + 1
        change = store_pb2.StoreChange()
        staged = dict(self.model)
        accept = True
        for op, kind, object_id, version_choice, payload in ops:
            key = (kind, object_id)
            current = staged.get(key)
            current_version = current[0] if current else 0
            version = {"current": current_version, "stale": max(0, current_version - 1), "zero": 0,
                       "future": current_version + 1}[version_choice]
            target = kind.cls(id=object_id)
            target.meta.version = version
            target.meta.created_at = float(payload)
            action = change.actions.add(kind=op)
            getattr(action.target, kind.field).CopyFrom(target)
            if op == CREATE:
                accept &= current is None
                staged[key] = (new_version, payload)
            elif current is None or current[0] != version:
                accept = False
            elif op == UPDATE:
                staged[key] = (new_version, payload)
            else:
                del staged[key]
        return change, accept

    @invariant()
    def store_matches_model(self) -> None:
        view = self.store.view()
        stored = {(kind, obj.id): (obj.meta.version, int(obj.meta.created_at))
                  for kind in KINDS for obj in view.list(kind)}
        assert stored == self.model
        assert view.version == len(self.committed)

    @invariant()
    def versions_only_grow(self) -> None:
        view = self.store.view()
        for kind in KINDS:
            for obj in view.list(kind):
                key = (kind, obj.id)
                assert obj.meta.version <= view.version
                assert obj.meta.version >= self.highest_seen.get(key, 0)
                self.highest_seen[key] = obj.meta.version

    def teardown(self) -> None:
        replica = MemoryStore()
        for data in self.committed:
            assert replica.apply(store_pb2.StoreChange.FromString(data)).ok
        assert replica.snapshot() == self.store.snapshot()
        restored = MemoryStore()
        restored.restore(self.store.snapshot())
        assert restored.snapshot() == self.store.snapshot()


TestStoreMachine = StoreMachine.TestCase
TestStoreMachine.settings = settings(max_examples=150, stateful_step_count=30, deadline=None,
                                     suppress_health_check=[HealthCheck.too_slow])


@settings(max_examples=100, deadline=None)
@given(history=st.lists(batches, max_size=25), cut=st.integers(min_value=0, max_value=25))
def test_a_replica_restored_midway_and_fed_the_rest_ends_identical(history, cut):
    """A follower that installs a snapshot at any point and applies the rest matches the leader."""
    leader = StoreMachine()
    changes = []
    for ops in history:
        change, _ = leader._expected(ops)
        changes.append(change)
        leader.store.apply(change)
    follower = MemoryStore()
    cut = min(cut, len(changes))
    snapshot_at_cut = MemoryStore()
    for change in changes[:cut]:
        snapshot_at_cut.apply(change)
    follower.restore(snapshot_at_cut.snapshot())
    for change in changes[cut:]:
        follower.apply(change)
    assert follower.snapshot() == leader.store.snapshot()
