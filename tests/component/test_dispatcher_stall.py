"""A leader whose event loop stalls (a long pass, a starved process) does not mark nodes Down for
the heartbeats it could not read meanwhile: found by bench/scale.py, where every simulated node
went Down while the leader was busy and their queued heartbeats were read only after the check."""

from __future__ import annotations

import asyncio
import time

from manager import stats
from manager.dispatcher import Dispatcher
from manager.state import Kind, LocalProposer, MemoryStore, Store
from proto import cluster_pb2, objects_pb2
from tests.support.dispatcher import Context, Leader, authorize

PERIOD = 0.2        # heartbeat period: Down after 3 x 0.2 s without one


async def test_a_stalled_loop_does_not_count_against_the_nodes():
    memory = MemoryStore()
    store = Store(memory, LocalProposer(memory))
    cluster = objects_pb2.Cluster(id="c1")
    cluster.spec.dispatcher.heartbeat_period = PERIOD
    node = objects_pb2.Node(id="n1")
    node.status.state = objects_pb2.NodeStatus.READY
    await store.update(lambda tx: (tx.create(cluster), tx.create(node)))
    dispatcher = Dispatcher(store, Leader(), authorize)
    checks: list[float] = []
    expire = dispatcher._expire

    async def counted(period):
        await expire(period)
        checks.append(time.monotonic())
    dispatcher._expire = counted
    session = dispatcher.Session(cluster_pb2.SessionRequest(), Context())
    liveness = asyncio.create_task(dispatcher.run())
    try:
        session_id = (await anext(session)).session_id
        await dispatcher.Heartbeat(cluster_pb2.HeartbeatRequest(session_id=session_id), Context())
        while not checks:                       # the liveness loop is running
            await asyncio.sleep(0.01)
        stalls = stats.COUNTERS["dispatcher_stalls"]
        stalled_until = time.monotonic() + 5 * PERIOD
        time.sleep(5 * PERIOD)                  # the loop runs nothing: well past the node's grace
        while not any(t > stalled_until for t in checks):   # a liveness check after the stall
            await asyncio.sleep(0.01)
        assert store.view().get(Kind.NODE, "n1").status.state == objects_pb2.NodeStatus.READY
        assert stats.COUNTERS["dispatcher_stalls"] > stalls
        await dispatcher.Heartbeat(cluster_pb2.HeartbeatRequest(session_id=session_id), Context())
    finally:
        liveness.cancel()
        await asyncio.gather(liveness, return_exceptions=True)
        await session.aclose()
