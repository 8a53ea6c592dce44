"""The dispatcher's Assignments stream carries the node's network state, only when it changed."""

from __future__ import annotations

import asyncio
import json

from manager.dispatcher import Dispatcher
from manager.state import Kind, LocalProposer, MemoryStore, Store
from proto import cluster_pb2, objects_pb2
from tests.support.dispatcher import Context, Leader, authorize


def objects():
    node = objects_pb2.Node(id="n1")
    node.attachments.add(network_id="front", addresses=["198.18.1.241/24"])
    network = objects_pb2.Network(id="front", vni=4097)
    network.spec.annotations.name = "front"
    network.ipam.add(subnet="198.18.1.0/24", gateway="198.18.1.1")
    service = objects_pb2.Service(id="web")
    service.spec.annotations.name = "web"
    service.endpoint.virtual_ips.add(network_id="front", addr="198.18.1.2/24")
    task = objects_pb2.Task(id="t1", node_id="n1", service_id="web", desired_state=objects_pb2.RUNNING)
    task.status.state = objects_pb2.ASSIGNED
    task.spec.container.image = "shoal/busybox:latest"
    task.networks.add(network_id="front", addresses=["198.18.1.11/24"])
    return node, network, service, task


async def edit(store: Store, kind: Kind, object_id: str, change) -> None:
    def fn(tx):
        obj = type(tx.get(kind, object_id))()
        obj.CopyFrom(tx.get(kind, object_id))
        change(obj)
        tx.update(obj)
    await store.update(fn)


async def test_assignments_send_the_network_state_when_it_changes():
    memory = MemoryStore()
    store = Store(memory, LocalProposer(memory))

    def fill(tx):
        for obj in objects():
            tx.create(obj)
    await store.update(fill)
    dispatcher = Dispatcher(store, Leader(), authorize)
    session = dispatcher.Session(cluster_pb2.SessionRequest(), Context())
    stream = None
    try:
        session_id = (await anext(session)).session_id
        stream = dispatcher.Assignments(cluster_pb2.AssignmentsRequest(session_id=session_id), Context())
        first = await asyncio.wait_for(anext(stream), 5)
        assert first.type == cluster_pb2.AssignmentsMessage.COMPLETE
        state = json.loads(first.network_state)
        assert state["UnderlayIP"] == "192.0.2.11" and [n["ID"] for n in state["Networks"]] == ["front"]
        assert state["Services"][0]["Backends"] == []

        # the task runs: a backend now, and nothing else changed for the node but its status
        await edit(store, Kind.TASK, "t1", lambda t: setattr(t.status, "state", objects_pb2.RUNNING))
        second = await asyncio.wait_for(anext(stream), 5)
        assert second.type == cluster_pb2.AssignmentsMessage.INCREMENTAL
        assert list(second.changes) == []       # the node's own report is not sent back to it
        assert [b["TaskID"] for b in json.loads(second.network_state)["Services"][0]["Backends"]] == ["t1"]

        # a change that leaves the network state as it was: the field stays empty
        await edit(store, Kind.TASK, "t1", lambda t: t.annotations.labels.update({"note": "x"}))
        third = await asyncio.wait_for(anext(stream), 5)
        assert [c.assignment.task.id for c in third.changes] == ["t1"] and third.network_state == b""

        # a network state change alone (a service's VIP moved) comes without assignment changes
        await edit(store, Kind.SERVICE, "web", lambda s: setattr(s.endpoint.virtual_ips[0], "addr", "198.18.1.3/24"))
        fourth = await asyncio.wait_for(anext(stream), 5)
        assert list(fourth.changes) == []
        assert json.loads(fourth.network_state)["Services"][0]["VirtualIPs"][0]["Addr"] == "198.18.1.3/24"
    finally:
        if stream is not None:
            await stream.aclose()
        await session.aclose()
