"""The Docker Engine API subset shoald serves (see docs/docker-api.md): an aiohttp app on a
root-only unix socket. Validation and translation only: every cluster call goes to this node's
manager's ControlAPI, as LocalControl's do, and membership questions to the Daemon.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from aiohttp import web

from agent_runtime.errors import Conflict as RuntimeConflict
from agent_runtime.errors import InvalidArgument as RuntimeInvalid
from agent_runtime.errors import NotFound as RuntimeNotFound
from agent_runtime.errors import ShoalRuntimeError

from manager.controlapi import ControlAPI, ControlError
from manager.events import FilterError
from manager.events import parse_filters as parse_event_filters
from manager.state import StoreError
from proto import control_pb2 as cpb
from proto import objects_pb2 as pb
from shoal import __version__
from shoal.daemon import events as daemon_events
from shoal.daemon.config import DaemonError
from shoal.dockerapi import convert
from shoal.dockerapi.convert import BadRequest, Unsupported
from shoal.dockerapi.containers import ContainerRoutes, frame
from shoal.dockerapi.images import ImageRoutes
from shoal.dockerapi.swarm import SwarmRoutes

if TYPE_CHECKING:
    from shoal.daemon.roles import Daemon

log = logging.getLogger("shoald.dockerapi")

API_VERSION = "1.50"
MIN_API_VERSION = "1.24"
NETWORK_RM_WAIT = 30.0       # seconds DELETE /networks waits for stopping tasks to free their addresses
MAX_BODY = 4 * 1024 * 1024   # a service spec or a secret (Docker's limit for secret data is 500 KiB)
_VERSION_PREFIX = re.compile(r"^/v(\d+)\.(\d+)(/.*)$")

NOT_IN_SWARM = ('This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" to connect '
                "this node to swarm and try again.")
NOT_A_MANAGER = ("This node is not a swarm manager. Worker nodes can't be used to view or modify cluster state. "
                 "Please run this command on a manager node or promote the current node to a manager.")

# ControlError / DaemonError codes -> HTTP status (Docker's mapping of the gRPC codes).
STATUS = {"not_found": 404, "invalid": 400, "conflict": 409, "precondition": 400, "unavailable": 503}


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def error_status(err: Exception) -> tuple[int, str]:
    """The HTTP status and message a refused call is answered with."""
    message = str(err)
    if isinstance(err, ApiError):
        return err.status, message
    if isinstance(err, BadRequest):
        return 400, message
    if isinstance(err, Unsupported):
        return 501, message
    if isinstance(err, (ControlError, DaemonError)):
        if "out of sequence" in message:    # a stale ?version=: Docker answers it as gRPC Unknown
            return 500, f"rpc error: code = Unknown desc = {message}"
        return STATUS.get(err.code, 500), message
    if isinstance(err, StoreError):
        return 503, f"the cluster store refused the change: {message}"
    if isinstance(err, ShoalRuntimeError):   # this node's shoal-runtimed refused or did not answer
        for kind, status in ((RuntimeNotFound, 404), (RuntimeConflict, 409), (RuntimeInvalid, 400)):
            if isinstance(err, kind):
                return status, message
        return 503, f"container runtime: {message}"
    return 500, message


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=json.dumps(data).encode(), status=status, content_type="application/json")


def _headers(response: web.StreamResponse) -> None:
    response.headers["Api-Version"] = API_VERSION
    response.headers["Docker-Experimental"] = "false"
    response.headers["Ostype"] = "linux"
    response.headers["Server"] = f"Docker/{__version__} (linux)"


@web.middleware
async def _middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                      ) -> web.StreamResponse:
    try:
        refused = check_version(request.path)
        if refused:
            raise BadRequest(refused)
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status == 413:
            response = _json({"message": f"request body too large (limit {MAX_BODY} bytes)"}, 400)
        elif exc.status in (404, 405):
            response = _not_served(request)
        else:
            raise
    except (ApiError, BadRequest, Unsupported, ControlError, DaemonError, StoreError, ShoalRuntimeError) as err:
        if request.get(_PREPARED):   # a stream already begun: a second response would corrupt it
            log.info("docker API %s %s cut off: %s", request.method, request.path, err)
            raise
        status, message = error_status(err)
        response = _json({"message": message}, status)
    except Exception as err:   # a defect: logged with its traceback, answered in Docker's shape
        if request.get(_PREPARED):
            raise
        log.exception("docker API %s %s failed", request.method, request.path)
        response = _json({"message": f"internal error in Shoal's Docker API: {type(err).__name__}: {err}"}, 500)
    _headers(response)
    return response


_PREPARED = web.RequestKey("shoal.dockerapi.prepared", bool)


async def _mark_prepared(request: web.Request, response: web.StreamResponse) -> None:
    """Set once a response's headers are on their way: errors after that cannot be a new response."""
    request[_PREPARED] = True


# Inspect routes `docker inspect NAME` probes in turn: each must say 404 to let it go on.
_PROBES = re.compile(r"^/(images/.+/json|volumes/[^/]+|plugins/[^/]+/json)$")


def _not_served(request: web.Request) -> web.Response:
    m = _VERSION_PREFIX.match(request.path)
    path = m.group(3) if m else request.path
    if request.method in ("GET", "HEAD") and _PROBES.match(path):
        return _json({"message": f"No such object: {path.split('/')[1]} {path.split('/')[2]} "
                                 "(Shoal's Docker API does not serve this endpoint)"}, 404)
    return _json({"message": f"{request.method} {path} is not supported by Shoal's Docker API "
                             "(see docs/docker-api.md)"}, 501)


class DockerAPI:
    def __init__(self, daemon: Daemon):
        self.d = daemon
        self.local = ContainerRoutes(self)   # this node's containers, exec instances and volumes

    # ---- helpers --------------------------------------------------------------------------
    def control(self) -> ControlAPI:
        manager = self.d.manager
        if manager is None:
            raise ApiError(503, NOT_A_MANAGER if self.d.node else NOT_IN_SWARM)
        return manager.control

    @staticmethod
    async def body(request: web.Request, what: str) -> Any:
        raw = await request.read()
        return convert.body_object(raw, what)

    @staticmethod
    def version_arg(request: web.Request) -> int:
        text = request.query.get("version", "")
        if not text.isdigit():
            raise BadRequest(f"invalid version {text!r}: expected the object's Version.Index")
        return int(text)

    def routes(self) -> list[web.RouteDef]:
        r = []
        for method, path, fn in (
            ("GET", "/_ping", self.ping), ("HEAD", "/_ping", self.ping),
            ("GET", "/version", self.version), ("GET", "/info", self.info),
            ("GET", "/swarm", self.swarm),
            ("GET", "/nodes", self.nodes), ("GET", "/nodes/{ref}", self.node),
            ("POST", "/nodes/{ref}/update", self.node_update), ("DELETE", "/nodes/{ref}", self.node_rm),
            ("GET", "/services", self.services), ("POST", "/services/create", self.service_create),
            ("GET", "/services/{ref}", self.service), ("POST", "/services/{ref}/update", self.service_update),
            ("DELETE", "/services/{ref}", self.service_rm),
            ("GET", "/services/{ref}/logs", self.service_logs), ("GET", "/tasks/{ref}/logs", self.service_logs),
            ("GET", "/tasks", self.tasks), ("GET", "/tasks/{ref}", self.task),
            ("GET", "/networks", self.networks), ("POST", "/networks/create", self.network_create),
            ("GET", "/networks/{ref}", self.network), ("DELETE", "/networks/{ref}", self.network_rm),
            ("POST", "/networks/{ref}/connect", self.network_connect),
            ("POST", "/networks/{ref}/disconnect", self.network_disconnect),
            ("GET", "/secrets", self.secrets), ("POST", "/secrets/create", self.secret_create),
            ("GET", "/secrets/{ref}", self.secret), ("DELETE", "/secrets/{ref}", self.secret_rm),
            ("POST", "/secrets/{ref}/update", self.secret_update), ("POST", "/configs/{ref}/update", self.config_update),
            ("GET", "/configs", self.configs), ("POST", "/configs/create", self.config_create),
            ("GET", "/configs/{ref}", self.config), ("DELETE", "/configs/{ref}", self.config_rm),
            ("GET", "/events", self.events),
            *SwarmRoutes(self).routes(), *self.local.routes(),
            *ImageRoutes(self).routes(),
        ):
            r.append(web.route(method, path, fn))
        return r

    # ---- system ---------------------------------------------------------------------------
    async def ping(self, request: web.Request) -> web.Response:
        info = self.d.info()
        swarm = "inactive"
        if info.local_node_state == "active":
            swarm = "active/manager" if info.control_available else "active/worker"
        elif info.local_node_state in ("pending", "error", "locked"):
            swarm = info.local_node_state
        response = web.Response(body=b"" if request.method == "HEAD" else b"OK",
                                content_type="text/plain", charset="utf-8")
        response.headers.update({"Cache-Control": "no-cache, no-store, must-revalidate", "Pragma": "no-cache",
                                 "Swarm": swarm, "Builder-Version": ""})
        return response

    async def version(self, request: web.Request) -> web.Response:
        import platform
        arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
        return _json({"Platform": {"Name": "Shoal"}, "Version": __version__, "ApiVersion": API_VERSION,
                      "MinAPIVersion": MIN_API_VERSION, "Os": "linux", "Arch": arch,
                      "KernelVersion": platform.release(), "GitCommit": "", "GoVersion": "",
                      "Components": [{"Name": "Engine", "Version": __version__,
                                      "Details": {"ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION,
                                                  "Os": "linux", "Arch": arch}}]})

    async def info(self, request: web.Request) -> web.Response:
        import platform
        info = self.d.info()
        swarm: dict[str, Any] = {
            "NodeID": info.node_id, "NodeAddr": info.node_addr, "LocalNodeState": info.local_node_state,
            "ControlAvailable": info.control_available, "Error": info.error,
            "RemoteManagers": ([{"NodeID": m.node_id, "Addr": m.raft_addr} for m in info.managers]
                               or [{"NodeID": "", "Addr": a} for a in info.remote_managers]) or None}
        if info.control_available:
            swarm.update({"Nodes": info.nodes, "Managers": info.managers_count})
            cluster = (await self.control().get_cluster(cpb.GetClusterRequest())).cluster
            swarm["Cluster"] = convert.swarm_json(cluster)
            swarm["Cluster"].pop("JoinTokens")
        return _json({"ID": info.node_id, "Name": info.hostname, "ServerVersion": __version__,
                      "OSType": "linux", "OperatingSystem": "Shoal", "Architecture": platform.machine(),
                      "KernelVersion": platform.release(), "NCPU": os.cpu_count() or 0,
                      "Driver": "shoal", "Swarm": swarm})

    # ---- swarm and nodes ------------------------------------------------------------------
    async def swarm(self, request: web.Request) -> web.Response:
        cluster = (await self.control().get_cluster(cpb.GetClusterRequest())).cluster
        return _json(convert.swarm_json(cluster))

    async def nodes(self, request: web.Request) -> web.Response:
        filters = convert.filter_map(convert.parse_filters(request.query.get("filters")),
                                     ("id", "name", "role", "membership", "label", "node.label"))
        nodes = (await self.control().list_nodes(cpb.ListNodesRequest(filters=filters))).nodes
        return _json([convert.node_json(n) for n in nodes])

    async def node(self, request: web.Request) -> web.Response:
        node = (await self.control().get_node(cpb.GetNodeRequest(node_id=request.match_info["ref"]))).node
        return _json(convert.node_json(node))

    async def node_update(self, request: web.Request) -> web.Response:
        spec = convert.parse_node_spec(await self.body(request, "node spec"))
        await self.control().update_node(cpb.UpdateNodeRequest(node_id=request.match_info["ref"],
                                                               version=self.version_arg(request), spec=spec))
        return web.Response(status=200)

    async def node_rm(self, request: web.Request) -> web.Response:
        await self.control().remove_node(cpb.RemoveNodeRequest(node_id=request.match_info["ref"],
                                                               force=convert.parse_bool(request.query.get("force"))))
        return web.Response(status=200)

    # ---- services and tasks ---------------------------------------------------------------
    async def services(self, request: web.Request) -> web.Response:
        filters = convert.filter_map(convert.parse_filters(request.query.get("filters")),
                                     ("id", "name", "label", "mode"))
        response = await self.control().services.list_services(cpb.ListServicesRequest(filters=filters))
        with_status = convert.parse_bool(request.query.get("status"))
        return _json([convert.service_json(s, st if with_status else None)
                      for s, st in zip(response.services, response.statuses)])

    async def service(self, request: web.Request) -> web.Response:
        service = await self._service(request.match_info["ref"])
        return _json(convert.service_json(service))

    async def _service(self, ref: str) -> pb.Service:
        return (await self.control().services.get_service(cpb.GetServiceRequest(service_id=ref))).service

    async def service_create(self, request: web.Request) -> web.Response:
        spec = convert.parse_service_spec(await self.body(request, "service spec"))
        service = (await self.control().services.create_service(cpb.CreateServiceRequest(spec=spec))).service
        log.info("docker API: service %s (%s) created", spec.annotations.name, service.id)
        return _json({"ID": service.id}, 201)

    async def service_update(self, request: web.Request) -> web.Response:
        version = self.version_arg(request)
        rollback = request.query.get("rollback", "")
        if rollback not in ("", "previous"):
            raise BadRequest(f"invalid rollback value {rollback!r}: expected \"previous\"")
        raw = await self.body(request, "service spec")
        ref = request.match_info["ref"]
        if rollback:
            await self.control().services.update_service(cpb.UpdateServiceRequest(
                service_id=ref, version=version, spec=(await self._service(ref)).spec, rollback=True))
        else:
            spec = convert.parse_service_spec(raw)
            await self.control().services.update_service(cpb.UpdateServiceRequest(
                service_id=ref, version=version, spec=spec))
        return _json({"Warnings": None})

    async def service_rm(self, request: web.Request) -> web.Response:
        await self.control().services.remove_service(cpb.RemoveServiceRequest(service_id=request.match_info["ref"]))
        return web.Response(status=200)

    async def tasks(self, request: web.Request) -> web.Response:
        filters = convert.parse_filters(request.query.get("filters"))
        up_to_date = filters.pop("_up-to-date", None)
        control = self.control()
        tasks = list((await control.services.list_tasks(cpb.ListTasksRequest(
            filters=convert.filter_map(filters, ("service", "node", "desired-state", "id", "name", "label"))))).tasks)
        services = {s.id: s for s in (await control.services.list_services(cpb.ListServicesRequest())).services}
        if up_to_date and any(convert.parse_bool(v) for v in up_to_date):
            tasks = [t for t in tasks if t.service_id in services
                     and t.spec_version == services[t.service_id].spec_version]
        return _json([convert.task_json(t, services.get(t.service_id)) for t in tasks])

    async def task(self, request: web.Request) -> web.Response:
        control = self.control()
        task = (await control.services.get_task(cpb.GetTaskRequest(task_id=request.match_info["ref"]))).task
        services = {s.id: s for s in (await control.services.list_services(cpb.ListServicesRequest())).services}
        return _json(convert.task_json(task, services.get(task.service_id)))

    async def service_logs(self, request: web.Request) -> web.StreamResponse:
        """`docker service logs`: the manager's merged task logs, one line per multiplexed frame, with
        the com.docker.swarm.{node,service,task}.id details the CLI resolves its prefixes from."""
        q = request.query
        stdout, stderr = convert.parse_bool(q.get("stdout")), convert.parse_bool(q.get("stderr"))
        if not (stdout or stderr):
            raise BadRequest("Bad parameters: you must choose at least one stream")
        tail_text = q.get("tail", "all")
        if tail_text not in ("all", "") and not tail_text.lstrip("-").isdigit():
            raise BadRequest(f"invalid tail {tail_text!r}: a number or \"all\"")
        tail = -1 if tail_text in ("all", "") or int(tail_text) < 0 else int(tail_text)
        since = _timestamp_ns(q.get("since", ""), "since") / 1e9
        details, timestamps = convert.parse_bool(q.get("details")), convert.parse_bool(q.get("timestamps"))
        control = self.control()
        logs = self.d.manager.logs if self.d.manager is not None else None
        assert logs is not None
        ref = request.match_info["ref"]
        try:
            await self._service(ref)
        except ControlError as err:
            if err.code != "not_found":
                raise
            await control.services.get_task(cpb.GetTaskRequest(task_id=ref))   # 404 when neither
        response = web.StreamResponse(status=200)
        response.content_type = "application/vnd.docker.multiplexed-stream"
        _headers(response)
        await response.prepare(request)
        service_ids: dict[str, str] = {}
        try:
            async for message in logs.service_logs(cpb.ServiceLogsRequest(
                    service_id=ref, follow=convert.parse_bool(q.get("follow")), tail=tail, since=since)):
                if message.warning:   # a node not reached: the CLI cannot show a line without details
                    log.info("docker API service logs: %s", message.warning)
                    continue
                if (message.stream == "stderr" and not stderr) or (message.stream != "stderr" and not stdout):
                    continue
                if message.task_id not in service_ids:
                    task = (await control.services.get_task(cpb.GetTaskRequest(task_id=message.task_id))).task
                    service_ids[message.task_id] = task.service_id
                await response.write(log_frame(message, service_ids[message.task_id], details, timestamps))
        except (ControlError, DaemonError, StoreError) as err:   # headers are sent: Docker's system-error frame
            payload = str(err).encode()
            await response.write(frame(3, payload))
        await response.write_eof()
        return response

    # ---- networks, secrets, configs -------------------------------------------------------
    async def networks(self, request: web.Request) -> web.Response:
        filters = convert.filter_map(convert.parse_filters(request.query.get("filters")),
                                     ("id", "name", "driver", "label", "scope", "type"))
        nets = (await self.control().networks.list_networks(cpb.ListNetworksRequest(filters=filters))).networks
        return _json([convert.network_json(n) for n in nets])

    async def network(self, request: web.Request) -> web.Response:
        scope = request.query.get("scope", "")
        if scope not in ("", "swarm"):
            raise ApiError(404, f"network {request.match_info['ref']} not found")
        net = (await self.control().networks.get_network(
            cpb.GetNetworkRequest(network_id=request.match_info["ref"]))).network
        return _json(convert.network_json(net))

    async def network_create(self, request: web.Request) -> web.Response:
        spec = convert.parse_network_create(await self.body(request, "network"))
        net = (await self.control().networks.create_network(cpb.CreateNetworkRequest(spec=spec))).network
        return _json({"Id": net.id, "Warning": ""}, 201)

    async def network_rm(self, request: web.Request) -> web.Response:
        """DELETE /networks/{ref}. Shoal keeps a network while tasks still hold addresses on it, where
        swarmkit lets tasks being stopped go on holding them; `docker stack rm` removes the network
        right after the services and does not retry, so wait (up to NETWORK_RM_WAIT) while the only
        users left are tasks, which the removed services' shutdown is ending."""
        request_rm = cpb.RemoveNetworkRequest(network_id=request.match_info["ref"])
        deadline = time.monotonic() + NETWORK_RM_WAIT
        while True:
            try:
                await self.control().networks.remove_network(request_rm)
                return web.Response(status=204)
            except ControlError as err:
                users = str(err).partition(" is in use by ")[2]
                only_tasks = err.code == "precondition" and users and all(
                    u.strip().startswith("task ") for u in users.split(" and ")[0].split(","))
                if not only_tasks or time.monotonic() >= deadline:
                    raise
            await asyncio.sleep(0.2)

    async def network_connect(self, request: web.Request) -> web.Response:
        """POST /networks/{ref}/connect: a container on this node joins an attachable swarm network
        (shoal/netattach.py: shoald allocates its address and gives it the interface)."""
        from shoal.netattach import attach_network
        container, aliases, address = convert.parse_network_connect(await self.body(request, "network connect"))
        await attach_network(self.d, cpb.AttachNetworkRequest(
            network_id=request.match_info["ref"], connect_container=container, aliases=aliases, address=address))
        return web.Response(status=200)

    async def network_disconnect(self, request: web.Request) -> web.Response:
        """POST /networks/{ref}/disconnect: the container leaves the network; its address is released."""
        from shoal.netattach import detach_network
        container, force = convert.parse_network_disconnect(await self.body(request, "network disconnect"))
        await detach_network(self.d, cpb.DetachNetworkRequest(container=container, network_id=request.match_info["ref"],
                                                               force=force))
        return web.Response(status=200)

    async def secrets(self, request: web.Request) -> web.Response:
        filters = convert.filter_map(convert.parse_filters(request.query.get("filters")), ("id", "name", "label"))
        items = (await self.control().secrets.list_secrets(cpb.ListSecretsRequest(filters=filters))).secrets
        return _json([convert.secret_json(s) for s in items])

    async def secret(self, request: web.Request) -> web.Response:
        s = (await self.control().secrets.get_secret(cpb.GetSecretRequest(secret_id=request.match_info["ref"]))).secret
        return _json(convert.secret_json(s))

    async def secret_create(self, request: web.Request) -> web.Response:
        name, labels, data, templating = convert.parse_secret_spec(await self.body(request, "secret spec"), "Secret")
        if templating:
            raise convert.Unsupported("SecretSpec.Templating: templated secrets are not supported by Shoal (configs are)")
        spec = pb.SecretSpec(annotations=pb.Annotations(name=name, labels=labels), data=data)
        s = (await self.control().secrets.create_secret(cpb.CreateSecretRequest(spec=spec))).secret
        return _json({"ID": s.id}, 201)

    async def secret_update(self, request: web.Request) -> web.Response:
        """`docker stack deploy` of a stack whose secret exists sends it back: only labels may change."""
        version = self.version_arg(request)
        name, labels, data, templating = convert.parse_secret_spec(await self.body(request, "secret spec"), "Secret")
        if templating:
            raise convert.Unsupported("SecretSpec.Templating: templated secrets are not supported by Shoal (configs are)")
        spec = pb.SecretSpec(annotations=pb.Annotations(name=name, labels=labels), data=data)
        await self.control().secrets.update_secret(cpb.UpdateSecretRequest(
            secret_id=request.match_info["ref"], version=version, spec=spec))
        return web.Response(status=200)

    async def config_update(self, request: web.Request) -> web.Response:
        version = self.version_arg(request)
        name, labels, data, templating = convert.parse_secret_spec(await self.body(request, "config spec"), "Config")
        spec = pb.ConfigSpec(annotations=pb.Annotations(name=name, labels=labels), data=data)
        if templating:
            spec.templating.name = templating
        await self.control().secrets.update_config(cpb.UpdateConfigRequest(
            config_id=request.match_info["ref"], version=version, spec=spec))
        return web.Response(status=200)

    async def secret_rm(self, request: web.Request) -> web.Response:
        await self.control().secrets.remove_secret(cpb.RemoveSecretRequest(secret_id=request.match_info["ref"]))
        return web.Response(status=204)

    async def configs(self, request: web.Request) -> web.Response:
        filters = convert.filter_map(convert.parse_filters(request.query.get("filters")), ("id", "name", "label"))
        items = (await self.control().secrets.list_configs(cpb.ListConfigsRequest(filters=filters))).configs
        return _json([convert.config_json(c) for c in items])

    async def config(self, request: web.Request) -> web.Response:
        c = (await self.control().secrets.get_config(cpb.GetConfigRequest(config_id=request.match_info["ref"]))).config
        return _json(convert.config_json(c))

    async def config_create(self, request: web.Request) -> web.Response:
        name, labels, data, templating = convert.parse_secret_spec(await self.body(request, "config spec"), "Config")
        spec = pb.ConfigSpec(annotations=pb.Annotations(name=name, labels=labels), data=data)
        if templating:
            spec.templating.name = templating
        c = (await self.control().secrets.create_config(cpb.CreateConfigRequest(spec=spec))).config
        return _json({"ID": c.id}, 201)

    async def config_rm(self, request: web.Request) -> web.Response:
        await self.control().secrets.remove_config(cpb.RemoveConfigRequest(config_id=request.match_info["ref"]))
        return web.Response(status=204)

    # ---- containers (this node's runtime) ----------------------------------------------------
    def runtime(self) -> Any:
        if self.d.runtime is None:
            raise ApiError(503, "this node runs no container runtime (shoald was started without --runtime-socket)")
        return self.d.runtime

    # ---- events ---------------------------------------------------------------------------
    async def events(self, request: web.Request) -> web.StreamResponse:
        """Cluster events on a manager, merged with this node's container events (shoal.daemon.events)."""
        filters = convert.parse_filters(request.query.get("filters"))
        try:
            parsed = parse_event_filters([f"{k}={v}" for k, vs in filters.items() for v in vs])
        except FilterError as err:
            raise BadRequest(str(err)) from None
        since_ns, until_ns = (_timestamp_ns(request.query.get(k, ""), k) for k in ("since", "until"))
        manager = self.d.manager
        if manager is None and self.d.runtime is None:
            raise ApiError(503, NOT_IN_SWARM)
        response = web.StreamResponse(status=200)
        response.content_type = "application/json"
        _headers(response)
        await response.prepare(request)
        try:
            async for ev in daemon_events.stream(manager.events if manager is not None else None, self.d.runtime,
                                                 since_ns, until_ns, parsed):
                await response.write(daemon_events.encode(ev).encode() + b"\n")
        except RuntimeError as err:   # this reader fell behind and was cut off: say so in the stream
            log.info("docker API events stream cut off: %s", err)
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        await response.write_eof()
        return response


def log_frame(message: cpb.ServiceLogsMessage, service_id: str, details: bool, timestamps: bool) -> bytes:
    """One log line as Docker's multiplexed frame: [stream, 0, 0, 0, length (big-endian)] + payload,
    the payload `[TIME ][DETAILS ]LINE\\n`."""
    from urllib.parse import quote
    data = message.data if message.data.endswith(b"\n") else message.data + b"\n"
    prefix = ""
    if timestamps:
        prefix = f"{message.time} "
    if details:
        pairs = {"com.docker.swarm.node.id": message.node_id, "com.docker.swarm.service.id": service_id,
                 "com.docker.swarm.task.id": message.task_id}
        prefix += ",".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in sorted(pairs.items())) + " "
    payload = prefix.encode() + data
    return frame(2 if message.stream == "stderr" else 1, payload)


def _timestamp_ns(text: str, what: str) -> int:
    """Docker's since/until: unix seconds with an optional fraction ("1700000000.123456789")."""
    if not text:
        return 0
    seconds, _, frac = text.partition(".")
    if not seconds.isdigit() or (frac and not frac.isdigit()):
        raise BadRequest(f"invalid {what} {text!r}: expected unix seconds (e.g. 1700000000.5)")
    return int(seconds) * 1_000_000_000 + int((frac + "000000000")[:9])


def make_app(daemon: Daemon) -> web.Application:
    """The app: every route answers unversioned and under /v1.24 .. /v1.50 alike."""
    api = DockerAPI(daemon)
    app = web.Application(client_max_size=MAX_BODY, middlewares=[_middleware])
    app.on_response_prepare.append(_mark_prepared)
    for route in api.routes():
        assert isinstance(route, web.RouteDef)
        app.router.add_route(route.method, route.path, route.handler)
        app.router.add_route(route.method, r"/{api_version:v[0-9]+\.[0-9]+}" + route.path, route.handler)
    app.router.add_route("*", "/{tail:.*}", _json_not_served)
    return app


def check_version(path: str) -> str | None:
    """Docker's refusal of a /vX.Y prefix outside 1.24..1.50, or None."""
    m = _VERSION_PREFIX.match(path)
    if not m:
        return None
    version = (int(m.group(1)), int(m.group(2)))
    text = f"{m.group(1)}.{m.group(2)}"
    if version > (1, 50):
        return f"client version {text} is too new. Maximum supported API version is {API_VERSION}"
    if version < (1, 24):
        return (f"client version {text} is too old. Minimum supported API version is {MIN_API_VERSION}, "
                "please upgrade your client to a newer version")
    return None


async def _json_not_served(request: web.Request) -> web.Response:
    return _not_served(request)


class Listener:
    """The served socket (or nothing, when no path was given); ``close`` stops it and removes it."""

    def __init__(self, runner: web.AppRunner | None, path: Path | None):
        self.runner, self.path = runner, path

    async def close(self) -> None:
        if self.runner is not None and self.path is not None:
            await self.runner.cleanup()
            self.path.unlink(missing_ok=True)


async def serve(daemon: Daemon, path: Path | None) -> Listener:
    """Listen on ``path`` (mode 0600, a stale socket replaced); None: serve nothing."""
    if path is None:
        return Listener(None, None)
    app = make_app(daemon)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    old_umask = os.umask(0o177)
    try:
        site = web.UnixSite(runner, str(path))
        await site.start()
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    log.info("docker API listening on %s", path)
    return Listener(runner, path)
