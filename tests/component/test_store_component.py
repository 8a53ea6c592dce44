"""Store + LocalProposer + watches, on an asyncio loop: what components built on the store rely on."""

from __future__ import annotations

import asyncio
import threading

import pytest

from manager.state import (ChangeCommitted, ChangeTooLarge, Kind, LocalProposer, MemoryStore,
                           ObjectCreated, ObjectDeleted, ObjectUpdated, Store, VersionConflict,
                           WatchOverflow, copy_of, wrap)
from proto import objects_pb2, store_pb2


def make_store(clock=lambda: 42.0) -> Store:
    memory = MemoryStore()
    return Store(memory, LocalProposer(memory), clock=clock)


async def next_events(watch, count: int, timeout: float = 5.0) -> list:
    return [await asyncio.wait_for(watch.get(), timeout) for _ in range(count)]


def create_change(obj) -> store_pb2.StoreChange:
    return store_pb2.StoreChange(actions=[store_pb2.StoreAction(kind=store_pb2.StoreAction.CREATE,
                                                                target=wrap(obj))])


async def test_update_returns_the_functions_value_and_the_write_is_visible_at_once():
    store = make_store()

    def create(tx):
        tx.create(objects_pb2.Service(id="s1"))
        return "made"

    assert await store.update(create) == "made"
    stored = store.view().get(Kind.SERVICE, "s1")
    assert stored.meta.version == 1 and stored.meta.created_at == 42.0


async def test_nothing_is_proposed_when_fn_raises_or_records_nothing():
    store = make_store()

    def boom(tx):
        tx.create(objects_pb2.Service(id="s1"))
        raise RuntimeError("validation failed")

    with pytest.raises(RuntimeError):
        await store.update(boom)
    assert await store.update(lambda tx: tx.get(Kind.SERVICE, "s1")) is None
    assert store.view().version == 0


class InterferingProposer(LocalProposer):
    """Lets a competing write commit just before each of the first ``times`` proposals."""

    def __init__(self, memory: MemoryStore, interfere, times: int) -> None:
        super().__init__(memory)
        self.memory = memory
        self.interfere = interfere
        self.times = times
        self.proposals = 0

    async def propose(self, change, timeout):
        self.proposals += 1
        if self.proposals <= self.times:
            self.interfere(self.memory)
        return await super().propose(change, timeout)


def bump_node(memory: MemoryStore) -> None:
    current = copy_of(memory.view().get(Kind.NODE, "n1"))
    current.spec.annotations.labels["bumped"] = str(current.meta.version)
    result = memory.apply(store_pb2.StoreChange(actions=[
        store_pb2.StoreAction(kind=store_pb2.StoreAction.UPDATE, target=wrap(current))]))
    assert result.ok


async def test_a_concurrent_write_makes_update_conflict_and_update_retry_rerun_fn():
    memory = MemoryStore()
    memory.apply(create_change(objects_pb2.Node(id="n1")))
    proposer = InterferingProposer(memory, bump_node, times=2)
    store = Store(memory, proposer)
    calls = []

    def drain(tx):
        calls.append(tx.view.version)
        node = copy_of(tx.get(Kind.NODE, "n1"))
        node.spec.availability = objects_pb2.NodeSpec.DRAIN
        tx.update(node)

    with pytest.raises(VersionConflict, match="cannot update node n1: expected version 1, store has 2"):
        await store.update(drain)
    await store.update_retry(drain, attempts=3)
    assert calls == [1, 2, 3]
    final = store.view().get(Kind.NODE, "n1")
    assert final.spec.availability == objects_pb2.NodeSpec.DRAIN
    assert final.spec.annotations.labels["bumped"] == "2"      # the competing write was kept


async def test_update_retry_gives_up_after_its_attempts():
    memory = MemoryStore()
    memory.apply(create_change(objects_pb2.Node(id="n1")))
    store = Store(memory, InterferingProposer(memory, bump_node, times=10))

    def touch(tx):
        tx.update(copy_of(tx.get(Kind.NODE, "n1")))

    with pytest.raises(VersionConflict):
        await store.update_retry(touch, attempts=3)


async def test_oversized_transactions_need_allow_split():
    store = make_store()

    def many(tx):
        for i in range(450):
            tx.create(objects_pb2.Task(id=f"t{i:03}"))

    with pytest.raises(ChangeTooLarge):
        await store.update(many)
    assert store.view().count(Kind.TASK) == 0
    await store.update(many, allow_split=True)
    assert store.view().count(Kind.TASK) == 450
    assert store.view().version == 3


async def test_watch_delivers_events_in_commit_order_only_after_commit():
    store = make_store()
    watch = store.watch()
    await store.update(lambda tx: tx.create(objects_pb2.Node(id="n1")))
    n1 = store.view().get(Kind.NODE, "n1")

    def rename(tx):
        node = copy_of(tx.get(Kind.NODE, "n1"))
        node.description.hostname = "h"
        tx.update(node)
        tx.create(objects_pb2.Task(id="t1", node_id="n1"))

    await store.update(rename)
    stale = store_pb2.StoreChange(actions=[store_pb2.StoreAction(kind=store_pb2.StoreAction.UPDATE,
                                                                 target=wrap(n1))])
    rejected = await store.proposer.propose(stale, 5.0)     # n1 is at version 2 now
    assert not rejected.ok                                   # a rejected batch sends no events
    await store.update(lambda tx: tx.delete(Kind.TASK, "t1"))
    events = await next_events(watch, 4)
    assert [type(e) for e in events] == [ObjectCreated, ObjectUpdated, ObjectCreated, ObjectDeleted]
    assert [e.obj.meta.version for e in events] == [1, 2, 2, 2]
    assert events[1].old.meta.version == 1 and events[1].obj.description.hostname == "h"
    assert events[3].kind is Kind.TASK and events[3].obj.id == "t1"
    assert watch.get_nowait() is None
    watch.close()


async def test_watch_filters_kinds_and_can_mark_commits():
    store = make_store()
    watch = store.watch([Kind.TASK], commits=True)
    await store.update(lambda tx: tx.create(objects_pb2.Node(id="n1")))
    await store.update(lambda tx: (tx.create(objects_pb2.Task(id="t1")), tx.create(objects_pb2.Task(id="t2"))))
    events = await next_events(watch, 4)
    assert events[0] == ChangeCommitted(1)
    assert [e.obj.id for e in events[1:3]] == ["t1", "t2"]
    assert events[3] == ChangeCommitted(2)


async def test_view_and_watch_misses_nothing_and_repeats_nothing():
    store = make_store()
    await store.update(lambda tx: tx.create(objects_pb2.Task(id="t0")))
    view, watch = store.view_and_watch([Kind.TASK])
    await store.update(lambda tx: tx.create(objects_pb2.Task(id="t1")))
    seen = set(view.ids(Kind.TASK))
    seen.add((await next_events(watch, 1))[0].obj.id)
    assert seen == {"t0", "t1"}
    assert watch.get_nowait() is None


async def test_commits_applied_on_another_thread_arrive_in_order_on_the_loop():
    memory = MemoryStore()
    watch = memory.watch()

    def tick_thread():
        for i in range(200):
            assert memory.apply(create_change(objects_pb2.Task(id=f"t{i:03}"))).ok

    thread = threading.Thread(target=tick_thread)
    thread.start()
    events = await next_events(watch, 200)
    thread.join()
    assert [e.obj.id for e in events] == [f"t{i:03}" for i in range(200)]
    assert [e.obj.meta.version for e in events] == list(range(1, 201))


async def test_a_watcher_that_falls_behind_is_closed_and_apply_never_blocks():
    store = make_store()
    slow = store.watch(maxsize=3)
    fast = store.watch()
    for i in range(6):
        await store.update(lambda tx, i=i: tx.create(objects_pb2.Task(id=f"t{i}")))
    assert len(await next_events(fast, 6)) == 6
    with pytest.raises(WatchOverflow, match="more than 3 commits"):
        async for _ in slow:
            pass
    # the store dropped it: later commits do not touch it
    await store.update(lambda tx: tx.create(objects_pb2.Task(id="t9")))
    assert slow not in store.memory_store._watches


async def test_close_ends_iteration():
    store = make_store()
    watch = store.watch()
    received = []

    async def consume():
        async for event in watch:
            received.append(event.obj.id)

    consumer = asyncio.create_task(consume())
    await store.update(lambda tx: tx.create(objects_pb2.Task(id="t1")))
    while not received:
        await asyncio.sleep(0)
    watch.close()
    await asyncio.wait_for(consumer, 5)
    await store.update(lambda tx: tx.create(objects_pb2.Task(id="t2")))
    assert received == ["t1"]


async def test_restore_tells_watchers_what_changed():
    source = make_store()
    await source.update(lambda tx: (tx.create(objects_pb2.Node(id="keep")), tx.create(objects_pb2.Node(id="new"))))
    target = make_store()
    await target.update(lambda tx: (tx.create(objects_pb2.Node(id="keep")), tx.create(objects_pb2.Node(id="gone"))))
    watch = target.watch()
    target.memory_store.restore(source.memory_store.snapshot())
    events = await next_events(watch, 2)
    assert {(type(e).__name__, e.obj.id) for e in events} == {("ObjectCreated", "new"), ("ObjectDeleted", "gone")}
    assert watch.get_nowait() is None      # "keep" is identical in both: no event
    assert target.view().version == source.view().version


async def test_one_commit_larger_than_the_watch_bound_is_delivered_whole():
    """The bound counts commits: a commit of many events (a snapshot install, a change of 200
    actions) reaches a watcher whose bound is smaller (it overflowed before, counting events)."""
    store = make_store()
    watch = store.watch(maxsize=3)

    def create(tx):
        for i in range(150):
            tx.create(objects_pb2.Task(id=f"t{i:03}"))
    await store.update(create)
    await store.update(lambda tx: tx.create(objects_pb2.Task(id="last")))
    events = await next_events(watch, 151)
    assert [e.obj.id for e in events] == [f"t{i:03}" for i in range(150)] + ["last"]
    assert watch.get_nowait() is None and not watch.closed
