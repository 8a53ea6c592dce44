"""`docker swarm init|join|leave|update|unlock|unlock-key|ca` on shoald's Docker API: Docker's
InitRequest, JoinRequest and Swarm Spec read into the requests shoald's own `shoal swarm ...` sends
(shoal/daemon/membership.py for init/join/leave/unlock, the ControlAPI's UpdateCluster and
GetUnlockKey for the rest). Validation and translation only."""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

from proto import control_pb2 as cpb
from proto import objects_pb2 as pb
from shoal.daemon.config import DaemonError
from shoal.dockerapi import convert
from shoal.dockerapi.convert import BadRequest, Obj, Unsupported

if TYPE_CHECKING:
    from shoal.dockerapi.server import DockerAPI

# Docker's words (daemon/cluster/errors.go), which users search for.
ALREADY_IN_SWARM = ('This node is already part of a swarm. Use "docker swarm leave" to leave this swarm and '
                    "join another one.")
NOT_IN_A_SWARM = "This node is not part of a swarm"
DEFAULT_DATA_PATH_PORT = 4789


def _data_path(obj: Obj) -> None:
    """DataPathAddr / DataPathPort: Shoal's VXLAN runs on the advertise address and port 4789."""
    if obj.str("DataPathAddr"):
        raise Unsupported(f"{obj.path}.DataPathAddr is not supported by Shoal (VXLAN uses the advertise address)")
    port = obj.int("DataPathPort")
    if port not in (0, DEFAULT_DATA_PATH_PORT):
        raise Unsupported(f"{obj.path}.DataPathPort {port} is not supported by Shoal (VXLAN uses port 4789)")


def parse_cluster_spec(raw: Any, into: pb.ClusterSpec, path: str = "Spec") -> None:
    """Docker's swarm Spec over ``into`` (the current spec, for an update): a field absent or null
    keeps its value, as swarmkit's pointers do for TaskHistoryRetentionLimit and the Raft ticks."""
    s = Obj(raw, path)
    if s.str("Name") not in ("", "default"):
        raise Unsupported(f"{path}.Name {s.str('Name')!r}: Shoal's cluster is always named \"default\"")
    if s.has("Labels"):
        into.annotations.labels.clear()
        into.annotations.labels.update(s.string_map("Labels"))
    o = s.sub("Orchestration")
    if o.has("TaskHistoryRetentionLimit"):
        into.orchestration.task_history_retention_limit = o.int("TaskHistoryRetentionLimit", minimum=None)
    o.done()
    r = s.sub("Raft")
    for key, field in (("SnapshotInterval", "snapshot_interval"), ("ElectionTick", "election_tick"),
                       ("HeartbeatTick", "heartbeat_tick")):
        if r.int(key):
            setattr(into.raft, field, r.int(key))
    r.done()
    d = s.sub("Dispatcher")
    if d.int("HeartbeatPeriod"):
        into.dispatcher.heartbeat_period = d.seconds("HeartbeatPeriod")
    d.done()
    ca = s.sub("CAConfig")
    if ca.int("NodeCertExpiry"):
        into.ca_config.node_cert_expiry = ca.seconds("NodeCertExpiry")
    if ca.has("ForceRotate"):
        into.ca_config.force_rotate = ca.int("ForceRotate")
    for key, field in (("SigningCACert", "signing_ca_cert"), ("SigningCAKey", "signing_ca_key")):
        if ca.str(key):
            setattr(into.ca_config, field, ca.str(key).encode())
    if ca.get("ExternalCAs"):
        raise Unsupported(f"{path}.CAConfig.ExternalCAs is not supported by Shoal (its CA signs every certificate)")
    ca.done(ignored=("ExternalCAs",))
    td = s.sub("TaskDefaults")
    if td.get("LogDriver"):
        raise Unsupported(f"{path}.TaskDefaults.LogDriver is not supported by Shoal (tasks log to the runtime's files)")
    td.done(ignored=("LogDriver",))
    e = s.sub("EncryptionConfig")
    if e.has("AutoLockManagers"):
        into.encryption_config.auto_lock_managers = e.bool("AutoLockManagers")
    e.done()
    s.done()


def parse_init(raw: Any) -> tuple[cpb.SwarmInitRequest, int | None]:
    """POST /swarm/init's InitRequest -> SwarmInitRequest, and the TaskHistoryRetentionLimit to set
    after the init (None: the default), which SwarmInitRequest does not carry."""
    b = Obj(raw, "InitRequest")
    request = cpb.SwarmInitRequest(listen_addr=b.str("ListenAddr"), advertise_addr=b.str("AdvertiseAddr"),
                                   force_new_cluster=b.bool("ForceNewCluster"),
                                   default_addr_pool=b.strings("DefaultAddrPool"))
    subnet = b.int("SubnetSize")
    if subnet > 32:
        raise BadRequest(f"InitRequest.SubnetSize: must be at most 32, got {subnet}")
    request.subnet_size = subnet
    _data_path(b)
    availability = b.str("Availability")
    if availability not in ("", "active"):
        raise Unsupported(f"InitRequest.Availability {availability!r} is not supported by Shoal at init "
                          "(set it afterwards with docker node update --availability)")
    spec = pb.ClusterSpec()
    parse_cluster_spec(b.get("Spec"), spec, "InitRequest.Spec")
    request.autolock = b.bool("AutoLockManagers") or spec.encryption_config.auto_lock_managers
    request.labels.update(spec.annotations.labels)
    request.dispatcher_heartbeat = spec.dispatcher.heartbeat_period
    request.node_cert_expiry = spec.ca_config.node_cert_expiry
    request.election_tick, request.heartbeat_tick = spec.raft.election_tick, spec.raft.heartbeat_tick
    if spec.raft.snapshot_interval or spec.ca_config.force_rotate or spec.ca_config.signing_ca_cert:
        raise Unsupported("InitRequest.Spec: Raft.SnapshotInterval and the CAConfig signing fields are not "
                          "supported by Shoal at init")
    history = Obj(Obj(b.get("Spec"), "Spec").get("Orchestration"), "Orchestration").get("TaskHistoryRetentionLimit")
    b.done(ignored=("Spec",))
    return request, history


def parse_join(raw: Any) -> cpb.SwarmJoinRequest:
    """POST /swarm/join's JoinRequest -> SwarmJoinRequest (one remote manager is enough: it tells
    the joining node the others)."""
    b = Obj(raw, "JoinRequest")
    remotes = b.strings("RemoteAddrs")
    if not remotes:
        raise BadRequest("JoinRequest.RemoteAddrs: at least one manager address is needed")
    token = b.str("JoinToken")
    if not token:
        raise BadRequest("JoinRequest.JoinToken must not be empty")
    _data_path(b)
    request = cpb.SwarmJoinRequest(remote_addr=remotes[0], join_token=token, listen_addr=b.str("ListenAddr"),
                                   advertise_addr=b.str("AdvertiseAddr"), availability=b.str("Availability") or "active")
    b.done()
    return request


class SwarmRoutes:
    def __init__(self, api: DockerAPI):
        self.api = api
        self.d = api.d

    def routes(self) -> list[tuple[str, str, Any]]:
        return [("POST", "/swarm/init", self.init), ("POST", "/swarm/join", self.join),
                ("POST", "/swarm/leave", self.leave), ("POST", "/swarm/update", self.update),
                ("GET", "/swarm/unlockkey", self.unlock_key), ("POST", "/swarm/unlock", self.unlock)]

    async def init(self, request: web.Request) -> web.Response:
        init, history = parse_init(await self.api.body(request, "init request"))
        if self.d.node is not None:
            raise DaemonError("unavailable", ALREADY_IN_SWARM)
        response = await self.d.init(init)
        if history is not None:   # swarm init --task-history-limit: the one Spec field init does not carry
            control = self.api.control()
            cluster = (await control.get_cluster(cpb.GetClusterRequest())).cluster
            cluster.spec.orchestration.task_history_retention_limit = int(history)
            await control.update_cluster(cpb.UpdateClusterRequest(version=cluster.meta.version, spec=cluster.spec))
        return _json(response.node_id)

    async def join(self, request: web.Request) -> web.Response:
        join = parse_join(await self.api.body(request, "join request"))
        if self.d.node is not None:
            raise DaemonError("unavailable", ALREADY_IN_SWARM)
        await self.d.join(join)
        return web.Response(status=200)

    async def leave(self, request: web.Request) -> web.Response:
        if self.d.node is None:
            raise DaemonError("unavailable", NOT_IN_A_SWARM)
        await self.d.leave(cpb.SwarmLeaveRequest(force=convert.parse_bool(request.query.get("force"))))
        return web.Response(status=200)

    async def update(self, request: web.Request) -> web.Response:
        """POST /swarm/update?version=N[&rotateWorkerToken=..&rotateManagerToken=..&rotateManagerUnlockKey=..]:
        the Spec the client read, changed, over the cluster's current spec (DefaultAddrPool and
        SubnetSize are not in Docker's Spec and stay)."""
        version = self.api.version_arg(request)
        q = request.query
        raw = await self.api.body(request, "swarm spec")
        control = self.api.control()
        cluster = (await control.get_cluster(cpb.GetClusterRequest())).cluster
        spec = pb.ClusterSpec()
        spec.CopyFrom(cluster.spec)
        spec.ca_config.ClearField("signing_ca_key")   # a key is only ever the one sent now
        parse_cluster_spec(raw, spec)
        rotate_key = convert.parse_bool(q.get("rotateManagerUnlockKey"))
        if rotate_key and not spec.encryption_config.auto_lock_managers:
            raise BadRequest("cannot rotate because autolock is not turned on")
        await control.update_cluster(cpb.UpdateClusterRequest(
            version=version, spec=spec, rotate_worker_token=convert.parse_bool(q.get("rotateWorkerToken")),
            rotate_manager_token=convert.parse_bool(q.get("rotateManagerToken")),
            rotate_manager_unlock_key=rotate_key))
        return web.Response(status=200)

    async def unlock_key(self, request: web.Request) -> web.Response:
        key = (await self.api.control().get_unlock_key(cpb.GetUnlockKeyRequest())).unlock_key
        return _json({"UnlockKey": key})

    async def unlock(self, request: web.Request) -> web.Response:
        b = Obj(await self.api.body(request, "unlock request"), "UnlockRequest")
        key = b.str("UnlockKey")
        b.done()
        if not key:
            raise BadRequest("UnlockRequest.UnlockKey must not be empty")
        await self.d.unlock(cpb.SwarmUnlockRequest(unlock_key=key))
        return web.Response(status=200)


def _json(data: Any) -> web.Response:
    return web.Response(body=json.dumps(data).encode(), content_type="application/json")
