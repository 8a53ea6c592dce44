"""shoald's event stream: replay then live without a gap, the runtime's events merged, --until."""
from __future__ import annotations

import asyncio

from manager.events import EventLog, parse_filters
from shoal.daemon.events import stream


def ev(ns, type_="service", action="update"):
    return {"Type": type_, "Action": action, "timeNano": ns, "time": ns // 10**9, "scope": "swarm",
            "Actor": {"ID": f"id{ns}", "Attributes": {"name": f"n{ns}"}}}


class Runtime:
    def __init__(self):
        self.queue: asyncio.Queue = asyncio.Queue()

    async def events(self):
        while True:
            item = await self.queue.get()
            if item is None:
                return
            yield item


async def collect(agen, count):
    out = []
    async for item in agen:
        out.append(item)
        if len(out) == count:
            break
    await agen.aclose()
    return out


async def test_replay_then_live_with_runtime_events_merged_and_filtered():
    log, runtime = EventLog(), Runtime()
    for ns in (10, 20, 30):
        log.publish(ev(ns))
    agen = stream(log, runtime, since_ns=15, until_ns=0, filters=parse_filters(["event=update", "event=die"]),
                  clock=lambda: 100)
    first = await agen.__anext__()             # the replay starts; the subscription is already open
    log.publish(ev(40))                        # committed while the replay is being read
    log.publish(ev(50, action="create"))       # filtered out
    await runtime.queue.put(ev(60, "container", "die"))
    rest = await collect(agen, 3)
    assert [e["timeNano"] for e in [first, *rest]] == [20, 30, 40, 60]


async def test_until_in_the_past_ends_after_the_replay():
    log = EventLog()
    for ns in (10, 20, 30):
        log.publish(ev(ns))
    got = [e async for e in stream(log, None, since_ns=1, until_ns=25, filters={}, clock=lambda: 1000)]
    assert [e["timeNano"] for e in got] == [10, 20]


async def test_until_in_the_future_ends_when_it_comes():
    import time
    log = EventLog()
    until = time.time_ns() + 1_500_000_000
    got = []

    async def read():
        async for e in stream(log, None, since_ns=0, until_ns=until, filters={}):
            got.append(e)

    reader = asyncio.ensure_future(read())
    await asyncio.sleep(0.01)
    log.publish(ev(time.time_ns()))            # before --until: shown
    await asyncio.wait_for(reader, 10)          # then the stream ends by itself
    assert len(got) == 1 and time.time_ns() >= until


async def test_a_runtime_that_goes_away_leaves_the_cluster_events():
    log, runtime = EventLog(), Runtime()
    agen = stream(log, runtime, since_ns=0, until_ns=0, filters={}, clock=lambda: 0)
    task = asyncio.ensure_future(collect(agen, 1))
    await asyncio.sleep(0)
    await runtime.queue.put(None)              # runtimed restarted: its stream ended
    await asyncio.sleep(0.01)
    log.publish(ev(7))
    assert [e["timeNano"] for e in await asyncio.wait_for(task, 2)] == [7]
