"""shoald's web page server (shoal.ui.server) over HTTP against a real store and ControlAPI:
the board's JSON, a service's page, the event stream (snapshot, then events and a new snapshot
after a scale), hostile names kept as data, refusals on a node that is no manager, GET only."""
from __future__ import annotations

import asyncio

import pytest
from aiohttp.test_utils import TestClient, TestServer

from proto import control_pb2, objects_pb2 as pb
from shoal.ui import server
from tests.support.webui import make_cluster, node, read_sse, task


@pytest.fixture
async def cluster():
    manager, service, feed = await make_cluster()
    yield manager, service
    feed.cancel()
    await asyncio.gather(feed, return_exceptions=True)


@pytest.fixture
async def client(cluster):
    manager, _ = cluster
    current = {"manager": manager}

    def manager_of():
        if current["manager"] is None:
            raise server.Unavailable(server.NOT_A_MANAGER)
        return current["manager"]
    async with TestClient(TestServer(server.make_app(manager_of))) as c:
        c.current = current
        yield c


async def test_board_json_has_nodes_with_their_current_tasks(client):
    response = await client.get("/api/cluster")
    assert response.status == 200
    body = await response.json()
    assert [(n["hostname"], n["role"], n["status"], n["availability"]) for n in body["nodes"]] == [
        ("manager1", "manager", "ready", "active"), ("worker1", "worker", "ready", "active")]
    assert body["nodes"][0]["leader"] is True
    assert [(t["name"], t["state"]) for t in body["nodes"][0]["tasks"]] == [("web.1", "running")]
    assert [(t["name"], t["state"]) for t in body["nodes"][1]["tasks"]] == [("web.2", "starting")]  # not t0
    assert [(s["name"], s["running"], s["desired"]) for s in body["services"]] == [("web", 1, 2)]


async def test_service_page_lists_history_and_events(client, cluster):
    _, service = cluster
    for ref in ("web", service.id, service.id[:6]):
        response = await client.get(f"/api/services/{ref}")
        assert response.status == 200, await response.text()
        body = await response.json()
        assert body["service"]["name"] == "web"
        assert [(t["id"], t["current"], t["node"]) for t in body["tasks"]] == [
            ("t1", True, "manager1"), ("t2", True, "worker1"), ("t0", False, "worker1")]
        assert ("service", "create") in [(e["Type"], e["Action"]) for e in body["events"]]
    missing = await client.get("/api/services/nope")
    assert missing.status == 404 and "nope" in (await missing.json())["message"]


async def test_event_stream_sends_a_snapshot_then_the_scale(client, cluster):
    manager, service = cluster
    response = await client.get("/api/events")
    assert response.headers["Content-Type"] == "text/event-stream"
    first = await read_sse(response, lambda m: len(m) >= 1)
    assert first[0][0] == "snapshot" and len(first[0][1]["nodes"]) == 2

    current = (await manager.control.services.get_service(control_pb2.GetServiceRequest(service_id="web"))).service
    spec = pb.ServiceSpec()
    spec.CopyFrom(current.spec)
    spec.replicas = 3
    await manager.control.services.update_service(control_pb2.UpdateServiceRequest(
        service_id=service.id, version=current.meta.version, spec=spec))
    await manager.store.update(lambda tx: tx.create(task("t3", service.id, 3, "w1")))
    messages = await read_sse(response, lambda m: any(
        kind == "snapshot" and sum(len(n["tasks"]) for n in data["nodes"]) == 3 for kind, data in m))
    events = [(d["Type"], d["Action"], d["Actor"]["Attributes"].get("replicas.new")) for k, d in messages
              if k == "event"]
    assert ("service", "update", "3") in events
    assert ("task", "create", None) in events
    response.close()


async def test_hostile_names_stay_data(client, cluster):
    manager, _ = cluster
    name = "x</script><img src=x onerror=alert(1)>\ny"
    await manager.store.update(lambda tx: tx.create(node("h1", name)))
    body = await (await client.get("/api/cluster")).json()
    assert name in [n["hostname"] for n in body["nodes"]]
    frame = server.sse("snapshot", body)
    assert frame.count(b"\n") == 3     # "event:", one "data:" line, the blank line: a newline cannot split it


async def test_page_and_static_files_come_from_the_package(client):
    page = await client.get("/")
    assert page.status == 200 and "text/html" in page.headers["Content-Type"]
    html = await page.text()
    assert "/static/app.js" in html and "http://" not in html and "https://" not in html   # nothing from elsewhere
    for name in ("app.js", "style.css"):
        assert (await client.get(f"/static/{name}")).status == 200
    assert (await client.get("/static/../server.py")).status == 404
    assert (await client.get("/static/nope.js")).status == 404


async def test_only_get_is_served(client):
    assert (await client.post("/api/cluster")).status == 405
    assert (await client.delete("/api/services/web")).status == 405


async def test_a_node_that_is_no_manager_says_so(client):
    client.current["manager"] = None
    for path in ("/api/cluster", "/api/events", "/api/services/web"):
        response = await client.get(path)
        assert response.status == 503
        assert "not a swarm manager" in (await response.json())["message"]
