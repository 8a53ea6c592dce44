"""shoald's web page of the cluster, on a root-only unix socket (``--ui-socket``).

Served: the page (``/``, static files from this package: no build step, nothing fetched from
elsewhere), ``/api/cluster`` (the board, shoal.ui.snapshot.cluster), ``/api/services/{ref}``
(a service by name, ID or ID prefix with all its tasks and recent events) and ``/api/events``, a
Server-Sent-Events stream: ``snapshot`` first, then each cluster event as ``event`` and, at most
every ``SNAPSHOT_INTERVAL`` seconds while events arrive, a fresh ``snapshot``. The page draws
snapshots, so a lost or coalesced event never leaves it wrong; a reader too slow for the event
log is cut off and its browser reconnects (EventSource does) to a fresh snapshot.

Only GET is served: the page looks, it never changes the cluster. The socket is the
authentication, as for shoal.sock: mode 0600, owned by root. ``shoal ui`` (shoal.ui.bridge)
brings it to a browser on a loopback port. Every manager serves the page from its own store
(every manager applies every commit); a worker's socket answers 503 with Docker's message.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
from importlib import resources
from pathlib import Path
from typing import Any, Callable

from aiohttp import web

from manager.controlapi import ControlError
from manager.state import StoreError
from proto import control_pb2
from shoal.ui import snapshot

log = logging.getLogger("shoald.ui")

SNAPSHOT_INTERVAL = 0.2      # seconds: a burst of events (a scale of 100) is one redraw, not 100
KEEPALIVE = 15.0             # seconds between SSE comments on a quiet cluster (proxies close idle streams)
STATIC = {"index.html": "text/html", "app.js": "text/javascript", "style.css": "text/css"}
NOT_A_MANAGER = ("this node is not a swarm manager. Worker nodes can't be used to view or modify cluster state. "
                 "Please run this command on a manager node or promote the current node to a manager.")

ManagerOf = Callable[[], Any]   # the running Manager, or raises Unavailable


class Unavailable(Exception):
    """No cluster to show here (not a manager, locked, not in a swarm); the message says which."""


def sse(event: str, data: Any) -> bytes:
    """One Server-Sent-Events message; ``data`` as one line of JSON (JSON never holds a raw newline)."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _static(name: str) -> bytes:
    return resources.files("shoal.ui").joinpath("static", name).read_bytes()


async def build_cluster(manager: Any) -> dict[str, Any]:
    control = manager.control
    nodes = (await control.list_nodes(control_pb2.ListNodesRequest())).nodes
    services = await control.services.list_services(control_pb2.ListServicesRequest())
    tasks = (await control.services.list_tasks(control_pb2.ListTasksRequest())).tasks
    return snapshot.cluster(nodes, services.services, services.statuses, tasks)


async def build_service(manager: Any, ref: str) -> dict[str, Any]:
    control = manager.control
    service = (await control.services.get_service(control_pb2.GetServiceRequest(service_id=ref))).service
    listed = await control.services.list_services(control_pb2.ListServicesRequest(filters={"id": service.id}))
    status = next((s for s in listed.statuses if s.service_id == service.id), None)
    tasks = (await control.services.list_tasks(control_pb2.ListTasksRequest(filters={"service": service.id}))).tasks
    nodes = (await control.list_nodes(control_pb2.ListNodesRequest())).nodes
    events = snapshot.service_events(manager.events.since(0), service.id)
    return snapshot.service_page(service, status, tasks, nodes, events)


_HTTP_STATUS = {"not_found": 404, "invalid": 400, "unavailable": 503, "precondition": 412}


def make_app(manager_of: ManagerOf) -> web.Application:
    async def page(request: web.Request) -> web.Response:
        name = request.match_info.get("name", "index.html")
        if name not in STATIC:
            raise web.HTTPNotFound(text=f"no such file: {name}")
        return web.Response(body=_static(name), content_type=STATIC[name],
                            headers={"Cache-Control": "no-cache"})

    def current() -> Any:
        try:
            return manager_of()
        except Unavailable as err:
            raise web.HTTPServiceUnavailable(text=json.dumps({"message": str(err)}),
                                             content_type="application/json") from None

    def failed(err: Exception) -> web.Response:
        return web.json_response({"message": str(err)}, status=_HTTP_STATUS.get(getattr(err, "code", ""), 500))

    async def cluster(request: web.Request) -> web.Response:
        manager = current()
        try:
            return web.json_response(await build_cluster(manager))
        except (ControlError, StoreError) as err:
            return failed(err)

    async def service(request: web.Request) -> web.Response:
        manager = current()
        try:
            return web.json_response(await build_service(manager, request.match_info["ref"]))
        except (ControlError, StoreError) as err:
            return failed(err)

    async def events(request: web.Request) -> web.StreamResponse:
        manager = current()
        queue = manager.events.subscribe()    # before the first snapshot: nothing in between is missed
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                               "X-Accel-Buffering": "no"})
        try:
            await response.prepare(request)
            await response.write(sse("snapshot", await build_cluster(manager)))
            await _follow(response, manager, queue, manager_of)
        except (ConnectionResetError, asyncio.CancelledError):
            pass                               # the browser went away: not an error
        except (ControlError, StoreError) as err:
            await response.write(sse("failure", {"message": str(err)}))
        finally:
            manager.events.unsubscribe(queue)
        return response

    app = web.Application()
    app.router.add_get("/", page)
    app.router.add_get("/static/{name}", page)
    app.router.add_get("/api/cluster", cluster)
    app.router.add_get("/api/services/{ref}", service)
    app.router.add_get("/api/events", events)
    return app


async def _follow(response: web.StreamResponse, manager: Any, queue: asyncio.Queue[Any],
                  manager_of: ManagerOf) -> None:
    """Events as they come, a snapshot after each burst; ends when the manager stops or the reader lags."""
    loop = asyncio.get_running_loop()
    dirty_since: float | None = None
    while True:
        if dirty_since is not None:
            timeout = max(0.0, dirty_since + SNAPSHOT_INTERVAL - loop.time())
        else:
            timeout = KEEPALIVE
        try:
            ev = await asyncio.wait_for(queue.get(), timeout)
        except asyncio.TimeoutError:
            ev = False
        if ev is None:    # fell too far behind: the EventLog dropped this reader
            await response.write(sse("failure", {"message": "the event stream fell behind; reconnecting"}))
            return
        if ev is not False:
            await response.write(sse("event", ev))
            if ev.get("Type") in ("node", "service", "task") and dirty_since is None:
                dirty_since = loop.time()
            continue
        try:
            still = manager_of() is manager
        except Unavailable:
            still = False
        if not still:      # this node stopped being that manager (demoted, left): the browser reconnects
            return
        if dirty_since is not None:
            await response.write(sse("snapshot", await build_cluster(manager)))
            dirty_since = None
        else:
            await response.write(b": keepalive\n\n")


def manager_of_daemon(daemon: Any) -> ManagerOf:
    """The daemon's running manager, or Unavailable with the ControlAPI's message."""
    def get() -> Any:
        if daemon.manager is not None:
            return daemon.manager
        if daemon.locked:
            raise Unavailable("Swarm is encrypted and needs to be unlocked before it can be used. "
                              "Please use \"shoal swarm unlock\" to unlock it.")
        if daemon.node is not None:
            raise Unavailable(NOT_A_MANAGER)
        raise Unavailable("this node is not a swarm manager. Use \"shoal swarm init\" or \"shoal swarm join\" "
                          "to connect this node to swarm and try again.")
    return get


async def start(manager_of: ManagerOf, path: Path) -> web.AppRunner:
    """Serve on a unix socket only root can open (created 0600 under umask 077, then chmod-ed)."""
    runner = web.AppRunner(make_app(manager_of), access_log=None, handle_signals=False,
                           shutdown_timeout=1.0)  # open event streams end at stop
    await runner.setup()
    old_umask = os.umask(0o022)     # the directory as shoald makes it for shoal.sock
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        os.umask(0o177)             # the socket: 0600 from its first moment
        site = web.UnixSite(runner, str(path))
        await site.start()
    except OSError as err:
        await runner.cleanup()
        raise OSError(err.errno, f"cannot serve the web page on {path}: {err.strerror or err}") from None
    except BaseException:
        await runner.cleanup()
        raise
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    log.info("web page of the cluster on %s (shoal ui)", path)
    return runner


async def stop(runner: web.AppRunner, path: Path) -> None:
    await runner.cleanup()
    path.unlink(missing_ok=True)
