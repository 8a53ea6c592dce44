"""FakeRuntime: shoal-runtimed's client calls, in memory, for tests and benchmarks without root.

It implements the calls the worker makes (``AsyncRuntimeClient``'s names and results) and
publishes the same events (``agent_runtime.events``: create, start, kill, die, stop, destroy) on
``events_stream()``. Containers "run" until stopped, killed or told to exit (``exit(cid, code)``).
Faults, to test what the worker does when the runtime misbehaves:

    rt.down()                 # every call and stream: Unavailable (runtimed killed); up() again
    rt.hang("start")          # calls of that name never answer until release("start")
    rt.fail("remove", Conflict("busy"), times=2)   # the next 2 removes raise
    rt.lose_answer("create")  # the next create takes effect, then raises Unavailable
    rt.set_health(cid, "unhealthy")  # what runtimed's health check found (an event, as runtimed's)

``calls`` counts calls by name and ``history`` lists the ones that change something, in order
(``("create", name, network_ids)``, ``("start", id)``, ``("stop", id)``, ``("remove", id)``,
``("network_sync", network_ids, backend_task_ids)``); ``deadline`` (like the real client's) turns a
hung call into ``DeadlineExceeded`` naming it. Like runtimed, ``create`` refuses a container on a
network that the last accepted ``network_sync`` did not name; ``fail_syncs`` fails that many syncs.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import builtins
from collections import Counter
from dataclasses import replace

from agent_runtime.api import (Conflict, ContainerInfo, ContainerSpec, ContainerState, DeadlineExceeded, ExecResult,
                               Health, InvalidArgument, NotFound, ShoalRuntimeError, Unavailable)
from agent_runtime.api import container_event as event


class _Stream:
    def __init__(self, runtime: "FakeRuntime") -> None:
        self.queue: asyncio.Queue = asyncio.Queue()
        self._runtime = runtime

    def __aiter__(self):
        return self

    async def __anext__(self) -> dict:
        item = await self.queue.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self._runtime._streams.discard(self)


class FakeRuntime:
    def __init__(self, images: tuple[str, ...] = ("busybox",), deadline: float = 30.0) -> None:
        self.images = set(images)
        self.image_health: dict[str, dict] = {}  # image -> Docker's Config.Healthcheck
        self.containers: dict[str, ContainerInfo] = {}
        self.deadline = deadline
        self.calls: Counter[str] = Counter()
        self.exec_results: dict[str, int] = {}  # container id -> exit code of exec (health checks)
        self._streams: set[_Stream] = set()
        self._down = False
        self._hung: dict[str, asyncio.Event] = {}
        self._faults: dict[str, list[BaseException]] = {}
        self._lost: Counter[str] = Counter()
        self.history: list[tuple] = []
        self.networks: set[str] = set()
        self.fail_syncs = 0
        self._serial = 0

    def new_id(self) -> str:
        """The ID of the next container (64 hex digits)."""
        return secrets.token_hex(32)

    def named(self, name: str) -> list[tuple]:
        return [h for h in self.history if h[0] == name]

    def index(self, entry: tuple) -> int:
        return self.history.index(entry)

    # -- faults ---------------------------------------------------------------------------
    def down(self) -> None:
        """runtimed is gone: calls raise Unavailable, open event streams are cut."""
        self._down = True
        for stream in list(self._streams):
            stream.queue.put_nowait(Unavailable("shoal-runtimed dropped the connection during GET /events"))
        self._streams.clear()

    def up(self) -> None:
        self._down = False

    def hang(self, name: str) -> None:
        self._hung[name] = asyncio.Event()

    def release(self, name: str) -> None:
        gate = self._hung.pop(name, None)
        if gate is not None:
            gate.set()

    def fail(self, name: str, error: BaseException, times: int = 1) -> None:
        self._faults.setdefault(name, []).extend([error] * times)

    def lose_answer(self, name: str, times: int = 1) -> None:
        self._lost[name] += times

    async def _enter(self, name: str, what: str) -> None:
        self.calls[name] += 1
        await asyncio.sleep(0)
        if self._down:
            raise Unavailable("cannot connect to shoal-runtimed at /fake/runtimed.sock: Connection refused")
        gate = self._hung.get(name)
        if gate is not None:
            try:
                await asyncio.wait_for(gate.wait(), self.deadline)
            except asyncio.TimeoutError:
                raise DeadlineExceeded(f"shoal-runtimed did not answer {what} within {self.deadline:g} s") from None
        faults = self._faults.get(name)
        if faults:
            raise faults.pop(0)

    def _answer(self, name: str) -> None:
        if self._lost[name] > 0:
            self._lost[name] -= 1
            raise Unavailable(f"shoal-runtimed dropped the connection during {name}")

    def _publish(self, action: str, info: ContainerInfo, **extra: str) -> None:
        attrs = dict(info.config.labels)
        attrs.update(name=info.name, image=info.image, **extra)
        ev = event(action, info.id, attrs)
        for stream in self._streams:
            stream.queue.put_nowait(ev)

    def _get(self, ref: str) -> ContainerInfo:
        info = self.containers.get(ref)
        if info is None:
            raise NotFound(f"No such container: {ref}")
        return info

    # -- the client's calls (names as AsyncRuntimeClient's; ``list`` shadows the builtin below) --------------------------------------------------------------
    async def version(self) -> dict:
        await self._enter("version", "GET /version")
        return {"Version": "fake"}

    async def events_stream(self) -> _Stream:
        await self._enter("events", "GET /events")
        stream = _Stream(self)
        self._streams.add(stream)
        return stream

    async def image_inspect(self, ref: str) -> dict:
        await self._enter("image_inspect", "GET /images/inspect")
        if ref not in self.images:
            raise NotFound(f"No such image: {ref}")
        return {"Id": ref, "Config": {"Healthcheck": self.image_health[ref]} if ref in self.image_health else {}}

    async def image_pull(self, ref: str, insecure_registries: tuple[str, ...] = ()) -> dict:
        await self._enter("image_pull", "POST /images/pull")
        if ref.startswith("missing"):
            raise NotFound(f"pull {ref}: manifest unknown")
        self.images.add(ref)
        return {"Id": ref, "Config": {}}

    async def create(self, spec: ContainerSpec) -> str:
        await self._enter("create", "POST /containers/create")
        if spec.image not in self.images:
            raise NotFound(f"No such image: {spec.image}")
        wanted = [n.network_id for n in spec.networks]
        self.history.append(("create", spec.name, tuple(wanted)))
        missing = set(wanted) - self.networks
        if missing:
            raise InvalidArgument(f"container {spec.name}: network {sorted(missing)[0]} is not in this host's "
                                  "network state (network_sync it first)")
        if spec.name and any(c.name == spec.name for c in self.containers.values()):
            raise Conflict(f"container name {spec.name!r} is already in use")
        cid = self.new_id()
        info = ContainerInfo(id=cid, name=spec.name or cid[:12], created=str(time.time()), image=spec.image,
                             image_id=spec.image, state=ContainerState(), config=spec)
        self.containers[cid] = info
        self._publish("create", info)
        self._answer("create")
        return cid

    async def start(self, ref: str) -> ContainerInfo:
        await self._enter("start", f"POST /containers/{ref}/start")
        info = self._get(ref)
        self.history.append(("start", ref))
        if info.state.status not in ("created", "exited"):
            return info
        hc = info.config.healthcheck
        checked = hc.test[0] != "NONE" if hc is not None and hc.test else info.image in self.image_health
        info.state = ContainerState(status="running", running=True, pid=10000 + len(self.containers),
                                    health=Health() if checked else None)
        self._publish("start", info)
        self._answer("start")
        return info

    def set_health(self, ref: str, status: str) -> None:
        """The container's health check result changed (runtimed publishes it)."""
        info = self._get(ref)
        if info.state.health is None or info.state.health.status == status:
            return
        info.state.health.status = status
        self._publish(f"health_status: {status}", info)

    def exit(self, ref: str, code: int = 0, oom: bool = False) -> None:
        """The container's process exits (not a call: what the workload does)."""
        info = self._get(ref)
        if info.state.status != "running":
            return
        info.state = ContainerState(status="exited", exit_code=code, oom_killed=oom)
        if oom:
            self._publish("oom", info)
        self._publish("die", info, exitCode=str(code), oomKilled=str(oom).lower())

    async def stop(self, ref: str, timeout: float | None = None) -> ContainerInfo:
        await self._enter("stop", f"POST /containers/{ref}/stop")
        info = self._get(ref)
        self.history.append(("stop", ref))
        if info.state.status == "running":
            self.exit(ref, 143)
            self._publish("stop", info)
        self._answer("stop")
        return info

    async def kill(self, ref: str, signal: str | int = "SIGKILL") -> None:
        await self._enter("kill", f"POST /containers/{ref}/kill")
        info = self._get(ref)
        if info.state.status != "running":
            raise Conflict(f"cannot kill container {info.name}: container is not running")
        self._publish("kill", info, signal=str(signal))
        self.exit(ref, 137)

    async def remove(self, ref: str, force: bool = False) -> None:
        await self._enter("remove", f"DELETE /containers/{ref}")
        info = self._get(ref)
        self.history.append(("remove", ref))
        if info.state.status == "running":
            if not force:
                raise Conflict(f"cannot remove container {info.name}: container is running")
            self.exit(ref, 137)
        del self.containers[ref]
        self._publish("destroy", info)
        self._answer("remove")

    async def list(self, all: bool = False) -> list[ContainerInfo]:
        await self._enter("list", "GET /containers/json")
        return [replace(c, state=replace(c.state)) for c in self.containers.values()
                if all or c.state.status == "running"]

    async def inspect(self, ref: str) -> ContainerInfo:
        await self._enter("inspect", f"GET /containers/{ref}/json")
        return self._get(ref)

    async def exec(self, ref: str, cmd: builtins.list[str], env=None, user: str = "", workdir: str = "",
                   timeout: float | None = None) -> ExecResult:
        await self._enter("exec", f"POST /containers/{ref}/exec")
        info = self._get(ref)
        if info.state.status != "running":
            raise Conflict(f"cannot exec in container {info.name}: container is not running")
        return ExecResult(exit_code=self.exec_results.get(ref, 0))

    async def network_sync(self, state) -> dict:
        await self._enter("network_sync", "POST /network/sync")
        ids = tuple(sorted(n.id for n in state.networks))
        backends = tuple(sorted(b.task_id for s in state.services for b in s.backends))
        self.history.append(("network_sync", ids, backends))
        if self.fail_syncs:
            self.fail_syncs -= 1
            raise ShoalRuntimeError("network sync: nft refused the ruleset")
        self.networks = set(ids)
        return {"Networks": [], "Containers": [], "Errors": []}

    async def network_inspect(self) -> dict:
        await self._enter("network_inspect", "GET /network")
        return {}

    async def close(self) -> None:
        pass

    # -- for assertions -------------------------------------------------------------------------
    def running(self) -> builtins.list[ContainerInfo]:
        return [c for c in self.containers.values() if c.state.status == "running"]


__all__ = ["FakeRuntime", "ShoalRuntimeError"]
