"""`--rm` has one owner: runtimed's AutoRemove. A client attached before the start (docker run's
log stream and wait) gets the whole output and the exit status before the container goes, and a
container created through shoald's Docker API is removed by runtimed even when shoald is gone."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from agent_runtime.api import AsyncRuntimeClient, ContainerSpec
from agent_runtime.spec import RestartPolicy
from shoal.dockerapi.containers import ContainerRoutes
from shoal.dockerapi.server import DockerAPI
from tests.support.runtime import IMAGE, wait_until

pytestmark = [pytest.mark.privileged, pytest.mark.timeout(120)]


async def _until_destroyed(stream, cid: str) -> list[str]:
    seen = []
    async for ev in stream:
        if ev["Actor"]["ID"] == cid:
            seen.append(ev["Action"])
            if ev["Action"] == "destroy":
                return seen
    raise AssertionError(f"the event stream ended before {cid[:12]} was destroyed: {seen}")


def test_clients_attached_before_the_start_get_output_and_exit_before_auto_remove(runtimed):
    async def scenario():
        async with AsyncRuntimeClient(runtimed.socket) as client:
            events = await client.events_stream()
            for _ in range(5):      # a command that exits at once: the removal races the readers
                cid = await client.create(ContainerSpec(image=IMAGE, auto_remove=True,
                                                        command=["sh", "-c", "echo out; echo err >&2; exit 3"]))
                records = await client.logs_stream(cid, follow=True, attach=True)
                pending = await client.wait_stream(cid)
                await client.start(cid)
                lines = sorted([(r.stream, r.log) async for r in records])
                result = await pending.result()
                records.close()
                pending.close()
                assert lines == [("stderr", "err\n"), ("stdout", "out\n")]
                assert result.status_code == 3
                assert (await _until_destroyed(events, cid))[-2:] == ["die", "destroy"]
            events.close()
    asyncio.run(scenario())


class _Shoald:
    """What ContainerRoutes needs of shoald's DockerAPI: this node's runtime and body parsing."""

    def __init__(self, client: AsyncRuntimeClient) -> None:
        self.client = client
        self.body = DockerAPI.body

    def runtime(self) -> AsyncRuntimeClient:
        return self.client


def test_docker_run_rm_is_removed_by_runtimed_after_shoald_went_away(runtimed, tmp_path: Path):
    """Before, shoald removed --rm containers itself, from a task in its memory: a container still
    running when shoald restarted stayed behind, exited, for good."""
    sock = str(tmp_path / "docker.sock")

    async def shoald() -> str:
        """shoald's Docker API for one docker run -d --rm; its tasks end with this loop."""
        async with AsyncRuntimeClient(runtimed.socket) as client:
            app = web.Application()
            for method, path, handler in ContainerRoutes(_Shoald(client)).routes():
                app.router.add_route(method, path, handler)
            runner = web.AppRunner(app)
            await runner.setup()
            await web.UnixSite(runner, sock).start()
            async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=sock)) as http:
                async with http.post("http://shoald/containers/create?name=rm-after-restart", json={
                        "Image": IMAGE, "Cmd": ["sleep", "300"], "HostConfig": {"AutoRemove": True}}) as resp:
                    assert resp.status == 201, await resp.text()
                    cid = (await resp.json())["Id"]
                async with http.post(f"http://shoald/containers/{cid}/start") as resp:
                    assert resp.status == 204, await resp.text()
            await runner.cleanup()
            return cid

    async def after(cid: str) -> None:
        async with AsyncRuntimeClient(runtimed.socket) as client:
            events = await client.events_stream()
            # still there (it runs until killed): the removal below is runtimed's, not shoald's
            assert (await client.inspect(cid)).config.auto_remove
            await client.kill(cid)
            await asyncio.wait_for(_until_destroyed(events, cid), 30)
            events.close()
            assert cid not in [c.id for c in await client.list(all=True)]

    asyncio.run(after(asyncio.run(shoald())))      # shoald is gone while the container runs


def test_container_prune_removes_as_rm_does(runtimed):
    """Prune goes through runtimed's one removal (remove_container): an exited container that ran
    out of restarts goes, with its restart back-off; a running one stays."""
    client = runtimed.client()
    keep = client.run(ContainerSpec(image=IMAGE, command=["sleep", "60"], labels={"prune-test": "1"}))
    gone = client.create(ContainerSpec(image=IMAGE, command=["false"], labels={"prune-test": "1"},
                                       restart_policy=RestartPolicy("on-failure", 1)))
    client.start(gone)
    try:
        def done() -> bool:      # the exit, the one restart and its exit
            info = client.inspect(gone)
            return info.restart_count == 1 and info.state.status == "exited" and not info.state.restarting
        assert wait_until(done, 30)
        report = client.container_prune({"label": ["prune-test=1"]})
        assert report["ContainersDeleted"] == [gone]
        assert [c.id for c in client.list(all=True) if c.config.labels.get("prune-test")] == [keep.id]
    finally:
        client.remove(keep.id, force=True)
