"""shoal-runtimed's event bus and the client's deadlines, without a runtimed (no root)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from agent_runtime.api import AsyncRuntimeClient, ContainerSpec, DeadlineExceeded, Unavailable
from agent_runtime.events import EventBus


def test_every_subscriber_gets_every_event_in_order():
    bus = EventBus()
    a, b = bus.subscribe(), bus.subscribe()
    for action in ("create", "start", "die"):
        bus.publish(action, "c1", {"name": "web"})
    for sub in (a, b):
        got = [sub.queue.get_nowait() for _ in range(3)]
        assert [e["Action"] for e in got] == ["create", "start", "die"]
        assert got[2]["Actor"] == {"ID": "c1", "Attributes": {"name": "web"}} and got[2]["Type"] == "container"


def test_a_subscriber_too_far_behind_is_cut_off_not_buffered_without_bound():
    bus = EventBus(max_backlog=10)
    slow, fast = bus.subscribe(), bus.subscribe()
    for i in range(10):
        bus.publish("start", f"c{i}", {})
        fast.queue.get_nowait()
    bus.publish("die", "c0", {})
    assert slow.overflowed and bus.subscribers == 1
    assert slow.queue.qsize() == 11 and list(slow.queue._queue)[-1] is None  # its stream ends there
    assert fast.queue.get_nowait()["Action"] == "die"


async def test_a_call_runtimed_does_not_answer_names_the_call(tmp_path):
    """A socket that accepts and never answers stands in for a SIGSTOPped runtimed."""
    path = str(tmp_path / "silent.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(16)
    try:
        async with AsyncRuntimeClient(path, deadline=0.3) as client:
            with pytest.raises(DeadlineExceeded, match=r"did not answer POST /containers/abc/start within 0.3 s"):
                await client.start("abc")
            with pytest.raises(DeadlineExceeded, match=r"GET /events"):
                await client.events_stream()
    finally:
        srv.close()


async def test_a_runtimed_that_is_not_there_is_unavailable(tmp_path):
    async with AsyncRuntimeClient(str(tmp_path / "none.sock"), deadline=5) as client:
        with pytest.raises(Unavailable, match="cannot connect to shoal-runtimed at"):
            await client.version()


async def test_a_runtimed_that_drops_the_connection_is_unavailable(tmp_path):
    path = str(tmp_path / "rude.sock")

    async def hang_up(reader, writer):
        await reader.readline()
        writer.close()

    server = await asyncio.start_unix_server(hang_up, path)
    try:
        async with AsyncRuntimeClient(path, deadline=5) as client:
            with pytest.raises(Unavailable, match="dropped the connection during POST /containers/create"):
                await client.create(ContainerSpec(image="x"))
    finally:
        server.close()
