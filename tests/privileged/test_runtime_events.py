"""shoal-runtimed's event stream and its client against the real daemon: Docker's event format,
a container's whole life in order, and no connection ceiling between a client and runtimed."""

from __future__ import annotations

import asyncio

import pytest

from agent_runtime.api import AsyncRuntimeClient, ContainerSpec
from tests.support.runtime import IMAGE

pytestmark = [pytest.mark.privileged, pytest.mark.timeout(120)]


async def test_a_containers_life_in_docker_event_form(runtimed):
    async with AsyncRuntimeClient(runtimed.socket) as client:
        stream = await client.events_stream()   # subscribed from here on
        cid = await client.create(ContainerSpec(image=IMAGE, command=["sh", "-c", "exit 3"],
                                                labels={"com.example.role": "events-test"}))
        await client.start(cid)
        await client.wait(cid)
        await client.remove(cid)
        seen = []
        async for ev in stream:
            if ev["Actor"]["ID"] == cid:
                seen.append(ev)
            if ev["Action"] == "destroy" and ev["Actor"]["ID"] == cid:
                break
        stream.close()
    assert [e["Action"] for e in seen if e["Action"] != "start"] == ["create", "die", "destroy"]
    assert "start" in [e["Action"] for e in seen] or seen[1]["Action"] == "die"
    die = next(e for e in seen if e["Action"] == "die")
    assert die["Type"] == "container" and die["scope"] == "local"
    assert die["Actor"]["Attributes"]["exitCode"] == "3"
    assert die["Actor"]["Attributes"]["com.example.role"] == "events-test"
    assert die["Actor"]["Attributes"]["image"] == IMAGE
    assert isinstance(die["time"], int) and die["timeNano"] // 10**9 == die["time"]


async def test_hundreds_of_open_calls_do_not_block_the_next_one(runtimed):
    """aiohttp's default pool (100 connections) made the 101st call wait forever (issue 10)."""
    async with AsyncRuntimeClient(runtimed.socket, deadline=20) as client:
        cid = await client.create(ContainerSpec(image=IMAGE, command=["sleep", "60"]))
        await client.start(cid)
        streams = [await client.events_stream() for _ in range(150)]   # 150 long-lived responses
        try:
            assert (await client.inspect(cid)).state.running   # the 151st connection answers
            await client.stop(cid, timeout=0)
            firsts = await asyncio.gather(*(s.__aiter__().__anext__() for s in streams[:3]))
            assert {e["Action"] for e in firsts} <= {"kill", "die", "stop"}
        finally:
            for s in streams:
                s.close()
            await client.remove(cid, force=True)


async def test_runtimed_runs_the_health_check_and_publishes_each_change(runtimed):
    from agent_runtime.api import Healthcheck
    hc = Healthcheck(test=["CMD-SHELL", "test -f /tmp/ok"], interval_s=0.2, timeout_s=5, retries=2)
    async with AsyncRuntimeClient(runtimed.socket) as client:
        stream = await client.events_stream()
        cid = await client.create(ContainerSpec(image=IMAGE, command=["sh", "-c", "touch /tmp/ok; sleep 60"],
                                                healthcheck=hc))
        try:
            info = await client.start(cid)
            assert info.state.health is not None and info.state.health.status in ("starting", "healthy")
            actions = []
            async for ev in stream:
                if ev["Actor"]["ID"] == cid and ev["Action"].startswith("health_status"):
                    actions.append(ev["Action"])
                    if ev["Action"] == "health_status: healthy":
                        await client.exec(cid, ["rm", "/tmp/ok"])
                    else:
                        break
            assert actions == ["health_status: healthy", "health_status: unhealthy"]
            state = (await client.inspect(cid)).state
            assert state.health.status == "unhealthy" and state.health.failing_streak >= 2
        finally:
            stream.close()
            await client.remove(cid, force=True)
