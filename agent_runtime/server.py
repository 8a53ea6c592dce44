"""shoal-runtimed: JSON over HTTP on a root-only unix socket, one asyncio loop, one thread.

``main()`` is the console script: ``shoal-runtimed --root DIR --socket PATH [--cgroup-parent NAME]
[--log-level LEVEL] [--busybox PATH]``. Routes follow Docker's Engine API where one exists
(``/containers/create``, ``/containers/{id}/start``...), plus ``POST /network/sync`` (body: a
``NetworkState``) and ``GET /network`` for the overlay data plane, and ``GET /events``: container events
as JSON lines (``agent_runtime.events``), one long response per subscriber; bodies are the dataclasses of
``agent_runtime.spec`` in their JSON form. Errors are ``{"message": ...}`` with the status of the
error class (400/404/409/500). Image pulls and loads run in a worker thread; everything else runs
on the loop. Stopping runtimed (SIGTERM/SIGINT) leaves containers running, to be re-adopted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import platform
import shutil
import signal
import sys
from dataclasses import replace
from pathlib import Path

from aiohttp import web

from agent_runtime.network.container_manager import NetworkedContainerManager
from agent_runtime.network.dataplane import NetworkDataplane
from agent_runtime.network.rules import parse_fence
from agent_runtime.network.model import NetworkState
from agent_runtime.container_record import CREATED
from agent_runtime.errors import Forbidden, InvalidArgument, NotFound, ShoalRuntimeError
from agent_runtime.httpbody import json_body, query_flag
from agent_runtime.images import errors as image_errors
from agent_runtime.image_api import ImageAPI, open_store
from agent_runtime.attach import AttachAPI
from agent_runtime.prune import PruneAPI
from agent_runtime.restart import Restarter
from agent_runtime import daemonconfig, logformat, sdnotify
from agent_runtime import metrics as runtime_metrics
from agent_runtime.logs import LogFollower, parse_time, read_logs
from agent_runtime.network.plan import free_interface
from agent_runtime.spec import (ATTACHMENT_LABEL, TASK_LABEL, ContainerSpec, LogConfig, NetworkAttachment,
                                from_json, interface_names, to_json)
from agent_runtime.volumes import VolumeStore

log = logging.getLogger(__name__)

API_VERSION = "1.0"
ATTACH_DRAIN = 60.0   # how long AutoRemove waits for a client still reading a container's output or exit
IMAGE_STATUS = [(image_errors.ImageNotFound, 404), (image_errors.ManifestUnknown, 404),
                (image_errors.InvalidReference, 400), (image_errors.ImageInUse, 409),
                (image_errors.LayerError, 400), (image_errors.ArchiveError, 400),
                (image_errors.DigestMismatch, 400), (image_errors.ImageError, 500)]


@web.middleware
async def errors_middleware(request: web.Request, handler):
    try:
        return await handler(request)
    except ShoalRuntimeError as exc:
        return web.json_response({"message": str(exc)}, status=exc.status)
    except image_errors.ImageError as exc:
        status = next(code for cls, code in IMAGE_STATUS if isinstance(exc, cls))
        return web.json_response({"message": str(exc)}, status=status)
    except web.HTTPException:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        return web.json_response({"message": f"bad request: {exc}"}, status=400)
    except Exception as exc:  # the edge: log it and answer, never crash the daemon
        log.exception("%s %s failed", request.method, request.path)
        return web.json_response({"message": f"internal error: {exc}"}, status=500)


def _exit(c) -> dict:
    return {"StatusCode": c.state.exit_code, "OOMKilled": c.state.oom_killed,
            "Error": {"Message": c.state.error} if c.state.error else None}


class Runtimed:
    """Holds the stores and the container manager; its methods are the HTTP handlers."""

    def __init__(self, root: Path, cgroup_parent: str, busybox: str, fence: tuple[str, ...] = ()) -> None:
        self.root = root
        self.volumes = VolumeStore(root / "volumes")
        self.images = open_store(root / "images", in_use=self._image_users, running=self._image_runners)
        self.image_api = ImageAPI(self)
        self.network = NetworkDataplane(root, fence)
        self.manager = NetworkedContainerManager(root / "containers", self.images, self.volumes, cgroup_parent,
                                                 busybox, sys.executable, network=self.network)
        # From the configuration file (agent_runtime.daemonconfig); SIGHUP replaces the registries.
        self.insecure_registries: tuple[str, ...] = ()
        self.registry_mirrors: tuple[str, ...] = ()
        self.metrics = runtime_metrics.RuntimeMetrics(self.manager)
        self.default_log_config: LogConfig | None = None    # daemon.json log-opts
        self.restarter = Restarter(self)
        self.network_changes = asyncio.Lock()   # one connect or disconnect at a time
        self._readers: dict[str, set[asyncio.Event]] = {}   # container -> its open log follows and waits
        self._removals: dict[str, asyncio.Task] = {}        # AutoRemove containers being removed

    def _image_users(self, image_id: str) -> list[str]:
        return [c.name for c in self.manager.containers.values() if c.image_id == image_id]

    def _image_runners(self, image_id: str) -> list[str]:
        return [c.name for c in list(self.manager.containers.values())
                if c.image_id == image_id and c.state.running]

    def app(self) -> web.Application:
        app = web.Application(middlewares=[runtime_metrics.middleware(self.metrics), errors_middleware],
                              client_max_size=64 * 1024 * 1024)
        r = app.router
        r.add_get("/metrics", self.metrics_text)
        r.add_get("/version", self.version)
        r.add_get("/info", self.info)
        self.image_api.add_routes(r)
        PruneAPI(self).add_routes(r)
        AttachAPI(self.manager).add_routes(r)
        r.add_post("/containers/create", self.create)
        r.add_get("/containers/json", self.list)
        r.add_get("/containers/{id}/json", self.inspect)
        r.add_post("/containers/{id}/start", self.start)
        r.add_post("/containers/{id}/stop", self.stop)
        r.add_post("/containers/{id}/kill", self.kill)
        r.add_post("/containers/{id}/wait", self.wait)
        r.add_delete("/containers/{id}", self.remove)
        r.add_get("/containers/{id}/logs", self.logs)
        r.add_post("/containers/{id}/exec", self.exec)
        r.add_get("/containers/{id}/stats", self.stats)
        r.add_post("/containers/{id}/networks/connect", self.network_connect)
        r.add_post("/containers/{id}/networks/disconnect", self.network_disconnect)
        r.add_post("/volumes/create", self.volume_create)
        r.add_get("/volumes", self.volume_list)
        r.add_get("/volumes/{name}", self.volume_inspect)
        r.add_delete("/volumes/{name}", self.volume_remove)
        r.add_get("/events", self.events)
        r.add_post("/network/sync", self.network_sync)
        r.add_get("/network", self.network_inspect)
        return app

    # system ------------------------------------------------------------------------------
    async def version(self, request: web.Request) -> web.Response:
        return web.json_response({"Version": "0.1.0", "ApiVersion": API_VERSION, "Os": "linux",
                                  "Arch": platform.machine(), "KernelVersion": platform.release()})

    async def info(self, request: web.Request) -> web.Response:
        cs = self.manager.containers.values()
        return web.json_response({
            "NCPU": os.cpu_count(), "MemTotal": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
            "CgroupVersion": str(self.manager.cgroup_version), "KernelVersion": platform.release(),
            "CgroupParent": self.manager.cgroup_parent, "RuntimeRoot": str(self.root),
            "Containers": len(cs), "ContainersRunning": sum(c.state.running for c in cs),
            "Images": len(self.images.list())})

    async def metrics_text(self, request: web.Request) -> web.Response:
        """Prometheus text exposition of agent_runtime.metrics (shoald appends it to its /metrics)."""
        body = await asyncio.to_thread(self.metrics.text)
        return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})

    # containers --------------------------------------------------------------------------
    async def create(self, request: web.Request) -> web.Response:
        body = await json_body(request)
        spec = ContainerSpec.from_json(body)
        spec.log_config = spec.log_config.merged(self.default_log_config)
        c = self.manager.create(spec)
        if c.on_overlay():
            try:
                await self.network.attach(c)
            except BaseException:
                await self.manager.remove(c.id, force=True)
                raise
        return web.json_response({"Id": c.id, "Name": c.name}, status=201)

    async def list(self, request: web.Request) -> web.Response:
        return web.json_response([to_json(c.info()) for c in self.manager.list(all=query_flag(request, "all"))])

    async def inspect(self, request: web.Request) -> web.Response:
        return web.json_response(to_json(self.manager.get(request.match_info["id"]).info()))

    async def start(self, request: web.Request) -> web.Response:
        c = self.manager.get(request.match_info["id"])
        self._by_user(c, stopped=False)
        if c.on_overlay():
            await self.network.ensure(c)
        c = await self.manager.start(c.id)
        return web.json_response(to_json(c.info()))

    def _by_user(self, c, stopped: bool) -> None:
        """A start, stop or kill through the API: the restart policy leaves a stopped container
        stopped, and a start begins its restart count afresh (agent_runtime/restart.py)."""
        self.restarter.forget(c.id)
        before = (c.runtime.manually_stopped, c.runtime.restart_count)
        if stopped:
            c.runtime.manually_stopped = True
        else:
            c.runtime.manually_stopped, c.runtime.restart_count = False, 0
        if (c.runtime.manually_stopped, c.runtime.restart_count) != before:
            c.save_state()      # unchanged (a first start): no write on the way of every run

    async def stop(self, request: web.Request) -> web.Response:
        t = request.query.get("t")
        self._by_user(self.manager.get(request.match_info["id"]), stopped=True)
        c = await self.manager.stop(request.match_info["id"], float(t) if t not in (None, "") else None)
        return web.json_response(to_json(c.info()))

    async def kill(self, request: web.Request) -> web.Response:
        self._by_user(self.manager.get(request.match_info["id"]), stopped=True)
        self.manager.kill(request.match_info["id"], request.query.get("signal", "SIGKILL"))
        return web.json_response({})

    @contextlib.contextmanager
    def _reading(self, cid: str):
        """A client reading the container's output or exit: AutoRemove waits for it to finish."""
        done = asyncio.Event()
        self._readers.setdefault(cid, set()).add(done)
        try:
            yield
        finally:
            done.set()
            readers = self._readers.get(cid, set())
            readers.discard(done)
            if not readers:
                self._readers.pop(cid, None)

    async def _until_started(self, c) -> None:
        """``attach=1``: a container not started yet is waited for (docker run attaches and waits
        before it starts the container), until it starts or is removed."""
        while c.state.status == CREATED and self.manager.containers.get(c.id) is c:
            await asyncio.sleep(0.05)

    async def wait(self, request: web.Request) -> web.StreamResponse:
        """The container's exit. ``attach=1`` (docker run waits before it starts the container): the
        headers go at once, a container not started yet is waited for, and AutoRemove keeps the
        container until the answer is sent; a failure after the headers is the body's Error."""
        c = self.manager.get(request.match_info["id"])
        if not query_flag(request, "attach"):
            return web.json_response(_exit(await self.manager.wait(c.id)))
        with self._reading(c.id):
            resp = web.StreamResponse(headers={"Content-Type": "application/json"})
            await resp.prepare(request)
            try:
                await self._until_started(c)
                body = _exit(await self.manager.wait(c.id))
            except ShoalRuntimeError as exc:
                body = {"StatusCode": -1, "OOMKilled": False, "Error": {"Message": str(exc)}}
            await resp.write(json.dumps(body).encode())
            await resp.write_eof()
            return resp

    async def remove(self, request: web.Request) -> web.Response:
        c = self.manager.get(request.match_info["id"])
        await self.remove_container(c, force=query_flag(request, "force"))
        return web.json_response({})

    async def remove_container(self, c, force: bool) -> None:
        """Every removal (the API's, AutoRemove's, prune's): its pending restart, the container, its
        overlay endpoint."""
        self.restarter.forget(c.id)
        await self.manager.remove(c.id, force=force)
        if c.on_overlay():
            await self.network.detach(c.id)

    async def auto_remove(self) -> None:
        """Remove AutoRemove containers once they have exited (Docker's `run --rm`; the one owner of
        it, whoever created the container): those that exited while runtimed was down at start (and
        after a cut-off subscription), then each as its `die` event comes, once the clients reading
        its output or waiting for its exit have their answer. Runs until cancelled."""
        try:
            while True:
                sub = self.manager.events.subscribe()
                try:
                    for c in list(self.manager.containers.values()):
                        if c.spec.auto_remove and c.state.status == "exited":
                            self._start_removal(c.id)
                    while (ev := await sub.queue.get()) is not None:
                        if ev.get("Action") == "die":
                            self._start_removal((ev.get("Actor") or {}).get("ID", ""))
                finally:
                    self.manager.events.unsubscribe(sub)
        finally:
            for task in list(self._removals.values()):
                task.cancel()

    def _start_removal(self, cid: str) -> None:
        c = self.manager.containers.get(cid)
        if c is None or not c.spec.auto_remove or cid in self._removals:
            return
        task = asyncio.get_running_loop().create_task(self._auto_remove(cid), name=f"auto-remove-{cid[:12]}")
        self._removals[cid] = task
        task.add_done_callback(lambda _: self._removals.pop(cid, None))

    async def _auto_remove(self, cid: str) -> None:
        for done in list(self._readers.get(cid, ())):
            try:    # an attached `run` reads the last output and the exit status first
                await asyncio.wait_for(done.wait(), ATTACH_DRAIN)
            except TimeoutError:
                log.warning("container %s: removed on exit while a client still reads it", cid[:12])
        c = self.manager.containers.get(cid)
        if c is None or not c.spec.auto_remove or c.state.status != "exited":
            return
        try:
            await self.remove_container(c, force=False)
            log.info("container %s removed on exit (AutoRemove)", c.name)
        except ShoalRuntimeError as exc:   # removed meanwhile, or restarted: nothing to do
            log.info("container %s: not removed on exit: %s", c.name, exc)
        except Exception:  # the loop must outlive one bad removal; the next start retries it
            log.exception("container %s: removing it on exit (AutoRemove) failed", c.name)

    async def network_connect(self, request: web.Request) -> web.Response:
        """Give a container on the overlay data plane one more network (``docker network connect``):
        the body is its NetworkAttachment (address allocated by shoald). The new interface is the
        lowest free ``eth<N>``; the others keep theirs. Docker's refusals for the other network modes."""
        attachment = from_json(NetworkAttachment, await json_body(request), "NetworkAttachment")
        async with self.network_changes:
            c = self.manager.get(request.match_info["id"])
            _connectable(c)
            if any(a.network_id == attachment.network_id for a in c.spec.networks):
                raise Forbidden(f"endpoint with name {c.name} already exists in network "
                                f"{self._network_name(attachment.network_id)}")
            attachment.interface = free_interface(self.network.interfaces(c.id)
                                                  | set(interface_names(c.spec.networks)))
            await self._change_networks(c, [*_pinned(c), attachment])
        return web.json_response({"Interface": attachment.interface})

    async def network_disconnect(self, request: web.Request) -> web.Response:
        """Take a container off one network (``docker network disconnect``); the body names it
        (``Network``: ID, name or ID prefix). Answers the attachment that went, for shoald to
        release its address; with ``Force`` a container not on that network is not an error."""
        body = await json_body(request)
        ref, force = str(body.get("Network") or ""), bool(body.get("Force"))
        async with self.network_changes:
            c = self.manager.get(request.match_info["id"])
            network_id = self.network.network_of(ref)
            gone = [a for a in c.spec.networks if a.network_id == network_id or a.network_id.startswith(ref)]
            if not ref or len(gone) != 1 or not c.on_overlay():
                if force and not gone:
                    return web.json_response({"NetworkID": "", "AttachmentID": ""})
                raise NotFound(f"container {c.id} is not connected to network {ref}")
            pinned = _pinned(c)
            attachment = pinned[c.spec.networks.index(gone[0])]
            await self._change_networks(c, [a for a in pinned if a is not attachment])
        return web.json_response({"NetworkID": attachment.network_id, "AttachmentID": attachment.attachment_id})

    def _network_name(self, network_id: str) -> str:
        net = self.network.state.network(network_id) if self.network.state else None
        return net.name if net is not None else network_id

    async def _change_networks(self, c, networks: list) -> None:
        """Make ``networks`` the container's, on the data plane and in its config.json; the
        attachment label lists the attachments it still holds."""
        before, labels_before = c.spec.networks, dict(c.spec.labels)
        c.spec.networks = networks
        ids = [a.attachment_id for a in networks if a.attachment_id]
        if ids:
            c.spec.labels[ATTACHMENT_LABEL] = ",".join(ids)
        else:
            c.spec.labels.pop(ATTACHMENT_LABEL, None)
        try:
            await self.network.update(c)
        except BaseException:
            c.spec.networks, c.spec.labels = before, labels_before
            raise
        c.runtime.overlay = True
        c.save_config()
        c.save_state()
        log.info("container %s: networks now %s", c.name,
                 ", ".join(f"{a.interface}={a.network_id[:12]}" for a in networks) or "none")

    async def exec(self, request: web.Request) -> web.Response:
        body = await json_body(request)
        result = await self.manager.exec(request.match_info["id"], list(body.get("Cmd") or []),
                                         env=list(body.get("Env") or []), user=body.get("User", ""),
                                         workdir=body.get("WorkingDir", ""), timeout=body.get("Timeout"))
        return web.json_response(to_json(result))

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response(to_json(self.manager.stats(request.match_info["id"])))

    async def logs(self, request: web.Request) -> web.StreamResponse:
        """NDJSON records ({"stream","log","time"}); with follow=1 until the container exits, and
        with attach=1 as well a container not started yet is followed from its start."""
        c = self.manager.get(request.match_info["id"])
        q = request.query
        streams = tuple(s for s in ("stdout", "stderr") if q.get(s, "1").lower() in ("1", "true"))
        since = q.get("since", "")
        since_ns = 0
        if since:
            try:
                since_ns = int(float(since) * 1e9)
            except ValueError:
                since_ns = parse_time(since)
        tail = q.get("tail", "all")
        tail_n = -1 if tail in ("", "all") else int(tail)
        records = read_logs(c.log_path, tail_n, since_ns, streams)
        follower = LogFollower(c.log_path) if query_flag(request, "follow") else None  # same loop step: no gap
        with self._reading(c.id) if follower is not None else contextlib.nullcontext():
            return await self._stream_logs(request, c, records, follower, streams)

    async def _stream_logs(self, request: web.Request, c, records, follower, streams) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await resp.prepare(request)
        try:
            if follower is not None and query_flag(request, "attach"):
                await self._until_started(c)
            for r in records:
                await resp.write((json.dumps(r.to_json()) + "\n").encode())
            while follower is not None:
                running = c.state.status == "running" and c.id in self.manager.containers
                new = [r for r in follower.poll() if r.stream in streams]
                for r in new:
                    await resp.write((json.dumps(r.to_json()) + "\n").encode())
                if not running and not new:
                    break
                try:
                    await asyncio.wait_for(asyncio.shield(c.exited_event.wait()), 0.1)
                except asyncio.TimeoutError:
                    pass
            await resp.write_eof()
        except ConnectionResetError:  # the reader went away (`service logs -f` ended): normal
            log.debug("logs of container %s: the client closed the stream", c.name)
        return resp

    async def events(self, request: web.Request) -> web.StreamResponse:
        """Container events as JSON lines, from the moment the response headers are sent (the
        subscription exists before that, so a client that lists containers after receiving them
        misses nothing) until the client leaves or falls too far behind (agent_runtime.events)."""
        bus = self.manager.events
        sub = bus.subscribe()
        try:
            resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
            await resp.prepare(request)
            ended = False
            while not ended:
                lines = [await sub.queue.get()]
                while not sub.queue.empty() and len(lines) < 256:  # a burst goes out in one write
                    lines.append(sub.queue.get_nowait())
                if None in lines:  # cut off: too far behind
                    ended = True
                    lines = lines[:lines.index(None)]
                if lines:
                    await resp.write("".join(json.dumps(e, separators=(",", ":")) + "\n" for e in lines).encode())
            await resp.write_eof()
        except ConnectionResetError:
            log.debug("an event subscriber went away")  # a client leaving is not an error
        finally:
            bus.unsubscribe(sub)
        return resp

    # overlay networks --------------------------------------------------------------------
    async def network_sync(self, request: web.Request) -> web.Response:
        """Converge to the posted NetworkState (the whole desired state of this host)."""
        state = NetworkState.from_json(await json_body(request))
        return web.json_response(await self.network.sync(state))

    async def network_inspect(self, request: web.Request) -> web.Response:
        return web.json_response(self.network.inspect())

    # volumes -----------------------------------------------------------------------------
    async def volume_create(self, request: web.Request) -> web.Response:
        body = await json_body(request)
        driver = body.get("Driver") or "local"
        if driver != "local":
            raise InvalidArgument(f"volume driver {driver!r} is not available on this node (it has local)")
        return web.json_response(to_json(self.volumes.create(body["Name"], body.get("Labels"), body.get("DriverOpts"))),
                                 status=201)

    async def volume_list(self, request: web.Request) -> web.Response:
        return web.json_response({"Volumes": [to_json(v) for v in self.volumes.list()]})

    async def volume_inspect(self, request: web.Request) -> web.Response:
        return web.json_response(to_json(self.volumes.inspect(request.match_info["name"])))

    async def volume_remove(self, request: web.Request) -> web.Response:
        self.volumes.remove(request.match_info["name"], force=query_flag(request, "force"))
        return web.json_response({})


def _pinned(c) -> list:
    """The container's attachments with their interface names fixed (eth<position> where none was
    given) and, for a container made before attachments named their attachment, the one of the
    attachment label."""
    networks = c.spec.networks
    label = c.spec.labels.get(ATTACHMENT_LABEL, "")
    out = [replace(a, interface=name) for a, name in zip(networks, interface_names(networks))]
    if len(out) == 1 and not out[0].attachment_id and label and "," not in label:
        out[0].attachment_id = label
    return out


def _connectable(c) -> None:
    """Docker's refusals of `network connect` for a container not on swarm networks."""
    if c.spec.labels.get(TASK_LABEL):
        raise Forbidden(f"container {c.name} is a task of a swarm service: its networks are the service's "
                        "(use service update --network-add)")
    if c.on_overlay():
        return
    if c.spec.network == "host":
        raise InvalidArgument("container cannot be disconnected from host network or connected to host network")
    if c.spec.network not in ("none", ""):
        raise InvalidArgument("container sharing network namespace with another container or host cannot be "
                              "connected to any other network")
    raise InvalidArgument("container cannot be connected to multiple networks with one of the networks in "
                          "private (none) mode")


def apply_config(daemon: Runtimed, config: dict, from_flags: dict) -> None:
    """The configuration file's settings for the runtime (at start and on SIGHUP)."""
    daemon.insecure_registries = tuple(from_flags.get("insecure-registries") or config.get("insecure-registries", ()))
    daemon.registry_mirrors = tuple(from_flags.get("registry-mirrors") or config.get("registry-mirrors", ()))
    opts = config.get("log-opts")
    if opts:
        daemon.default_log_config = LogConfig(
            max_size_bytes=daemonconfig.size_bytes(opts["max-size"]) if "max-size" in opts else 0,
            max_files=int(opts.get("max-file", 0)))
    else:
        daemon.default_log_config = None
    logformat.configure(from_flags.get("log-level") or config.get("log-level", "warning"),
                        from_flags.get("log-format") or config.get("log-format", "text"))


async def serve(root: Path, socket_path: Path, cgroup_parent: str, busybox: str,
                config: dict | None = None, flags: dict | None = None, reload=None,
                fence: tuple[str, ...] = ()) -> None:
    """Run until SIGTERM/SIGINT; containers are left running. `config` is the configuration file's
    content, `flags` the log settings given on the command line (they win); SIGHUP calls
    `reload(daemon)`; `fence` is --fence (agent_runtime.network.rules.parse_fence)."""
    daemon = Runtimed(root, cgroup_parent, busybox, fence)
    apply_config(daemon, config or {}, flags or {})
    daemon.manager.load()
    await daemon.network.start(list(daemon.manager.containers.values()))
    runner = web.AppRunner(daemon.app(), access_log=None)
    await runner.setup()
    socket_path.parent.mkdir(parents=True, exist_ok=True)
    socket_path.unlink(missing_ok=True)
    old = os.umask(0o177)
    try:
        # Long-poll calls (wait, logs --follow) must not hold a stop for aiohttp's default 60 s.
        # No connection ceiling on this side: a backlog for bursts of hundreds of clients' calls.
        site = web.UnixSite(runner, str(socket_path), shutdown_timeout=0.5, backlog=4096)
        await site.start()
    finally:
        os.umask(old)
    os.chmod(socket_path, 0o600)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if reload is not None:
        loop.add_signal_handler(signal.SIGHUP, lambda: reload(daemon))
    log.info("shoal-runtimed serving on %s (root %s, cgroup v%d parent %s)", socket_path, root,
             daemon.manager.cgroup_version, cgroup_parent)
    sdnotify.ready(f"serving on {socket_path}")
    auto_remove = asyncio.create_task(daemon.auto_remove(), name="auto-remove")
    restarts = asyncio.create_task(daemon.restarter.run(), name="restarts")
    try:
        await stop.wait()
        sdnotify.stopping()
    finally:
        auto_remove.cancel()
        restarts.cancel()
        await runner.cleanup()
        await daemon.network.close()
        socket_path.unlink(missing_ok=True)
        log.info("shoal-runtimed stopped; %d container(s) left running",
                 sum(c.state.running for c in daemon.manager.containers.values()))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="shoal-runtimed", description="Shoal's node-local container runtime")
    daemonconfig.add_arguments(parser)
    parser.add_argument("--root", default=None, type=Path,
                        help="default: <data-root>/runtime, data-root from the configuration file or /var/lib/shoal")
    parser.add_argument("--socket", default="/run/shoal/runtimed.sock", type=Path)
    parser.add_argument("--cgroup-parent", default="shoal")
    parser.add_argument("--busybox", default=shutil.which("busybox") or "/bin/busybox",
                        help="busybox binary used as each container's exit-status waiter")
    parser.add_argument("--fence", action="append", default=[], metavar="ADDR[:PORT]",
                        help="an address (or address:port, TCP and UDP) containers on swarm networks must not "
                             "reach, such as a private registry; repeatable (nodes and this host are always fenced)")
    parser.add_argument("--insecure-registry", action="append", default=[], metavar="REGISTRY",
                        help="registry (HOST:PORT or CIDR) to reach over plain HTTP, for every pull and push "
                             "on this node; repeatable (as dockerd's)")
    parser.add_argument("--registry-mirror", action="append", default=[], metavar="URL",
                        help="a Docker Hub mirror (https://HOST[:PORT]) tried before Docker Hub; repeatable")
    args = parser.parse_args(argv)
    try:
        config_path, config = daemonconfig.load(args.config_file)
        insecure = daemonconfig.KEYS["insecure-registries"].check(args.insecure_registry)
        mirrors = daemonconfig.KEYS["registry-mirrors"].check(args.registry_mirror)
    except daemonconfig.ConfigError as exc:
        parser.exit(1, f"shoal-runtimed: {exc}\n")
    except ValueError as exc:
        parser.error(str(exc))
    flags = {"log-level": args.log_level, "log-format": args.log_format,
             "insecure-registries": insecure, "registry-mirrors": mirrors}
    try:
        logformat.configure(args.log_level or config.get("log-level", "warning"),
                            args.log_format or config.get("log-format", "text"))
    except ValueError as exc:
        parser.error(str(exc))
    root = args.root or Path(config.get("data-root", daemonconfig.DEFAULT_DATA_ROOT)) / "runtime"

    def reload(daemon: Runtimed) -> None:
        try:
            _, new = daemonconfig.load(args.config_file)
        except daemonconfig.ConfigError as exc:
            log.error("configuration not reloaded, the running settings are kept: %s", exc)
            return
        kept = {k: v for k, v in config.items() if not daemonconfig.KEYS[k].reloadable}
        apply_config(daemon, {**kept, **daemonconfig.reloadable(new)}, flags)
        log.info("configuration reloaded from %s", config_path,
                 extra={"insecure_registries": ",".join(daemon.insecure_registries),
                        "registry_mirrors": ",".join(daemon.registry_mirrors)})

    if os.geteuid() != 0:
        parser.error("shoal-runtimed must run as root")
    if not os.access(args.busybox, os.X_OK):
        parser.error(f"busybox not found at {args.busybox} (install busybox-static)")
    try:
        parse_fence(args.fence)
    except ValueError as exc:
        parser.error(str(exc))
    asyncio.run(serve(root, args.socket, args.cgroup_parent, args.busybox, config, flags, reload, tuple(args.fence)))


if __name__ == "__main__":
    main()
