"""`shoal ui`'s bridge between a browser's loopback connection and shoald's page socket: the page,
the JSON and the event stream come through; foreign Host headers and writes do not; a gone
shoald is a 502 naming its socket."""
from __future__ import annotations

import asyncio
import os
import stat

import aiohttp
import pytest

from proto import objects_pb2 as pb
from shoal.ui import bridge, server
from tests.support.webui import make_cluster, read_sse


@pytest.fixture
async def cluster():
    manager, service, feed = await make_cluster()
    yield manager, service
    feed.cancel()
    await asyncio.gather(feed, return_exceptions=True)


@pytest.fixture
async def page_socket(cluster, tmp_path):
    manager, _ = cluster
    path = tmp_path / "run" / "ui.sock"
    runner = await server.start(lambda: manager, path)
    yield path
    await server.stop(runner, path)


@pytest.fixture
async def url(page_socket):
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(bridge.serve(page_socket, "127.0.0.1", 0, ready.set_result))
    try:
        yield await asyncio.wait_for(ready, 10)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_the_socket_is_root_only(page_socket):
    mode = os.stat(page_socket).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    bridge.check_socket(page_socket)   # connectable


async def test_page_json_and_events_come_through(url, cluster):
    manager, service = cluster
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as page:
            assert page.status == 200 and "<title>Shoal</title>" in await page.text()
        async with session.get(url + "api/cluster") as board:
            assert [n["hostname"] for n in (await board.json())["nodes"]] == ["manager1", "worker1"]
        async with session.get(url + "api/events") as events:
            assert events.headers["Content-Type"] == "text/event-stream"
            await read_sse(events, lambda m: len(m) >= 1)
            await manager.store.update(lambda tx: tx.create(
                pb.Task(id="t9", service_id=service.id, slot=9, node_id="w1", desired_state=pb.RUNNING)))
            messages = await read_sse(events, lambda m: any(k == "event" and d["Actor"]["ID"] == "t9" for k, d in m))
            assert messages


async def test_foreign_hosts_and_writes_are_refused(url):
    async with aiohttp.ClientSession() as session:
        async with session.get(url + "api/cluster", headers={"Host": "attacker.example:8080"}) as r:
            assert r.status == 403
        async with session.post(url + "api/cluster") as r:
            assert r.status == 405
        port = url.rsplit(":", 1)[1].strip("/")
        async with session.get(f"http://localhost:{port}/api/cluster") as r:
            assert r.status == 200


async def test_a_gone_shoald_is_a_bad_gateway_naming_the_socket(url, page_socket):
    page_socket.unlink()
    async with aiohttp.ClientSession() as session:
        async with session.get(url + "api/cluster") as r:
            assert r.status == 502
            assert str(page_socket) in await r.text()




async def test_a_socket_that_cannot_be_made_is_named(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OSError, match=f"cannot serve the web page on {blocker}/ui.sock"):
        await server.start(lambda: None, blocker / "ui.sock")


async def test_the_directory_made_for_the_socket_stays_traversable(tmp_path):
    path = tmp_path / "run" / "shoal" / "ui.sock"
    runner = await server.start(lambda: None, path)
    try:
        assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o755
    finally:
        await server.stop(runner, path)
    assert not path.exists()
