"""This node's containers and volumes on shoald's Docker API (`docker run|logs|exec|stop|kill|rm`,
`docker volume create|ls|inspect|rm`), translated to shoal-runtimed's API (agent_runtime/api.py).

What shoald adds to runtimed's calls, and nothing more: `docker run` attaches and waits before it
starts the container, which runtimed's log-follow and wait do with ``attach``: they wait for the
start; `--rm` (HostConfig.AutoRemove) is runtimed's AutoRemove, which removes the container once it
exited and the clients attached to it have its output and exit status, whether or not shoald runs
meanwhile; exec instances (Docker's two-step exec) live in shoald's memory until their container
is removed or shoald restarts. The output of an exec without -i/-t is runtimed's captured output
(capped by runtimed), written when the command ends; `docker exec -i/-t` is a session in runtimed
(agent_runtime/attach.py) whose hijacked stream shoald bridges to the client (``_bridge``).
"""
from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from agent_runtime.errors import NotFound as RuntimeNotFound
from agent_runtime.errors import ShoalRuntimeError
from agent_runtime.spec import ContainerSpec, Healthcheck, Mount, PortBinding, Resources, Ulimit
from shoal.dockerapi import convert
from shoal.dockerapi.convert import BadRequest, Obj, Unsupported

if TYPE_CHECKING:
    from shoal.dockerapi.server import DockerAPI

log = logging.getLogger("shoald.dockerapi")

EXEC_TIMEOUT = 3600.0       # an exec still running after this is killed by runtimed
EXEC_KEEP = 1000            # finished exec instances kept for GET /exec/{id}/json


# ---- request bodies ---------------------------------------------------------------------------

def _binds(binds: list[str], path: str) -> list[Mount]:
    mounts = []
    for i, bind in enumerate(binds):
        parts = bind.split(":")
        if len(parts) not in (2, 3) or not parts[0] or not parts[1].startswith("/"):
            raise BadRequest(f"{path}[{i}]: invalid bind {bind!r}: expected SOURCE:/TARGET[:ro|rw]")
        options = parts[2].split(",") if len(parts) == 3 else []
        unknown = [o for o in options if o not in ("ro", "rw", "")]
        if unknown:
            raise Unsupported(f"{path}[{i}]: bind option {','.join(unknown)!r} is not supported by Shoal")
        kind = "bind" if parts[0].startswith("/") else "volume"
        mounts.append(Mount(type=kind, source=parts[0], target=parts[1], read_only="ro" in options))
    return mounts


def _port_keys(value: Any, where: str) -> list[tuple[int, str]]:
    """``{"80/tcp": {}}`` keys -> [(80, "tcp")]; BadRequest naming a bad one."""
    if not isinstance(value, dict):
        raise BadRequest(f"{where}: expected an object")
    out = []
    for key in value:
        port, _, proto = str(key).partition("/")
        proto = proto or "tcp"
        if not port.isdigit() or not 0 < int(port) < 65536 or proto not in ("tcp", "udp", "sctp"):
            raise BadRequest(f"{where}: invalid port {key!r}")
        out.append((int(port), proto))
    return out


def _port_bindings(value: Any) -> list[PortBinding]:
    """HostConfig.PortBindings ``{"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}`` -> PortBindings
    (an empty HostPort: any free one)."""
    out = []
    for (port, proto), key in zip(_port_keys(value, "HostConfig.PortBindings"), value):
        for i, b in enumerate(value[key] or []):
            binding = convert.Obj(b, f"HostConfig.PortBindings[{key}][{i}]")
            host_port = binding.str("HostPort")
            if host_port and not (host_port.isdigit() and 0 < int(host_port) < 65536):
                raise BadRequest(f"{binding.path}.HostPort: invalid hostPort: {host_port}")
            host_ip = binding.str("HostIp")
            if host_ip and ":" in host_ip:
                raise Unsupported(f"{binding.path}.HostIp {host_ip!r}: only IPv4 ports are published by Shoal")
            binding.done()
            out.append(PortBinding(container_port=port, protocol=proto, host_ip="" if host_ip == "0.0.0.0" else host_ip,
                                   host_port=int(host_port or 0)))
    return out


def parse_container_create(raw: Any, name: str) -> ContainerSpec:
    """POST /containers/create's body (Config + HostConfig + NetworkingConfig) -> runtimed's
    ContainerSpec (HostConfig.AutoRemove: runtimed removes it once it exits)."""
    c = Obj(raw, "Config")
    image = c.str("Image")
    if not image:
        raise BadRequest("Config.Image must not be empty")
    spec = ContainerSpec(image=image, name=name, command=c.strings("Cmd"), env=c.strings("Env"),
                         workdir=c.str("WorkingDir"), user=c.str("User"), hostname=c.str("Hostname"),
                         labels=c.string_map("Labels"), stop_signal=c.str("StopSignal"), tty=c.bool("Tty"))
    entrypoint = c.get("Entrypoint")
    if entrypoint is not None:
        spec.entrypoint = c.strings("Entrypoint")
    if c.get("StopTimeout") is not None:
        spec.stop_grace_period_s = float(c.int("StopTimeout"))
    # docker run -i: an input that attached clients write to, closed at the first client's end (StdinOnce)
    spec.open_stdin, spec.stdin_once = c.bool("OpenStdin"), c.bool("StdinOnce")
    c.bool("AttachStdin"), c.bool("AttachStdout"), c.bool("AttachStderr")   # what the client attaches to
    if c.has("Healthcheck"):
        h = c.sub("Healthcheck")
        test = h.strings("Test")
        if test and test[0] != "NONE":
            spec.healthcheck = Healthcheck(test=test, interval_s=h.seconds("Interval") or 30.0,
                                           timeout_s=h.seconds("Timeout") or 30.0,
                                           start_period_s=h.seconds("StartPeriod"), retries=h.int("Retries") or 3)
        h.done(ignored=("StartInterval",))
    exposed = _port_keys(c.get("ExposedPorts") or {}, "Config.ExposedPorts")
    c.get("Volumes")   # anonymous volumes of the image's VOLUME: the runtime's business
    h = c.sub("HostConfig")
    spec.auto_remove = h.bool("AutoRemove")
    spec.mounts.extend(_binds(h.strings("Binds"), "HostConfig.Binds"))
    for m in h.objects("Mounts"):
        kind = m.str("Type") or "volume"
        if kind not in ("bind", "volume", "tmpfs"):
            raise Unsupported(f"{m.path}.Type {kind!r} is not supported by Shoal")
        tmpfs = m.sub("TmpfsOptions")
        spec.mounts.append(Mount(type=kind, source=m.str("Source"), target=m.str("Target"),
                                 read_only=m.bool("ReadOnly"), tmpfs_size_bytes=tmpfs.int("SizeBytes")))
        tmpfs.done(ignored=("Mode",))
        m.done(ignored=("Consistency", "BindOptions", "VolumeOptions"))
    network = h.str("NetworkMode")
    if network in ("", "default", "none"):
        spec.network = "none"       # Shoal has no bridge network: a one-off container's own namespace
    elif network == "host":
        spec.network = "host"
    else:
        raise Unsupported(f"HostConfig.NetworkMode {network!r} is not supported by Shoal's Docker API "
                          "(none, default or host; swarm networks: shoal run --network)")
    spec.privileged = h.bool("Privileged")
    spec.cap_add, spec.cap_drop = h.strings("CapAdd"), h.strings("CapDrop")
    spec.init = bool(h.get("Init", False))
    spec.resources = Resources(nano_cpus=h.int("NanoCpus"), memory_bytes=h.int("Memory"),
                               memory_reservation_bytes=h.int("MemoryReservation"),
                               pids_limit=max(h.int("PidsLimit", minimum=None), 0),
                               cpu_shares=h.int("CpuShares"))
    spec.readonly_rootfs = h.bool("ReadonlyRootfs")
    spec.sysctls = h.string_map("Sysctls")
    spec.ulimits = [Ulimit(name=u.str("Name"), soft=u.int("Soft", minimum=None), hard=u.int("Hard", minimum=None))
                    for u in h.objects("Ulimits")]
    spec.dns, spec.dns_search, spec.dns_options = h.strings("Dns"), h.strings("DnsSearch"), h.strings("DnsOptions")
    spec.extra_hosts = h.strings("ExtraHosts")
    spec.group_add = h.strings("GroupAdd")
    spec.oom_score_adj = h.int("OomScoreAdj", minimum=None)
    for opt in h.strings("SecurityOpt"):
        key, _, value = opt.replace(":", "=", 1).partition("=") if "=" not in opt else opt.partition("=")
        if key == "seccomp":
            spec.seccomp = "unconfined" if value == "unconfined" else value
        elif key == "no-new-privileges":
            spec.no_new_privileges = value in ("", "true")
        else:
            raise Unsupported(f"HostConfig.SecurityOpt {opt!r} is not supported by Shoal")
    restart = h.sub("RestartPolicy")
    if restart.str("Name") not in ("", "no"):
        raise Unsupported(f"HostConfig.RestartPolicy {restart.str('Name')!r} is not supported by Shoal's Docker "
                          "API (a service restarts its tasks)")
    restart.done(ignored=("MaximumRetryCount",))
    logcfg = h.sub("LogConfig")
    if logcfg.str("Type") not in ("", "json-file", "local"):
        raise Unsupported(f"HostConfig.LogConfig.Type {logcfg.str('Type')!r} is not supported by Shoal")
    logcfg.done(ignored=("Config",))
    spec.ports = _port_bindings(h.get("PortBindings") or {})
    if h.bool("PublishAllPorts"):     # the image's EXPOSE ports are added by the caller (it has the image)
        done = {(p.container_port, p.protocol) for p in spec.ports}
        spec.ports += [PortBinding(container_port=port, protocol=proto) for port, proto in exposed
                       if (port, proto) not in done]
    for key in ("Links", "VolumesFrom", "Devices"):
        if not convert._empty(h.get(key)):
            raise Unsupported(f"HostConfig.{key} is not supported by Shoal's Docker API")
    # What the CLI always sends with zero meaning: a terminal size, the default modes.
    ignored = ("ConsoleSize", "CgroupnsMode", "IpcMode", "PidMode", "UTSMode", "UsernsMode", "Isolation",
               "Cgroup", "CgroupParent", "ShmSize", "MemorySwappiness", "OomKillDisable", "MemorySwap",
               "ContainerIDFile", "VolumeDriver", "Runtime", "MaskedPaths", "ReadonlyPaths", "LogConfig",
               "RestartPolicy", "PortBindings", "PublishAllPorts", "Links", "VolumesFrom", "Devices",
               "DeviceCgroupRules", "DeviceRequests", "BlkioWeightDevice", "BlkioDeviceReadBps",
               "BlkioDeviceWriteBps", "BlkioDeviceReadIOps", "BlkioDeviceWriteIOps", "Annotations")
    for key in ("IpcMode", "PidMode", "UTSMode", "UsernsMode", "CgroupnsMode"):
        if h.str(key) not in ("", "private", "shareable"):
            raise Unsupported(f"HostConfig.{key} {h.str(key)!r} is not supported by Shoal")
    size = h.get("ConsoleSize")
    if spec.tty and isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and 0 < v < 65536 for v in size):
        spec.console_size = list(size)      # [rows, columns]: the pty's size when the workload starts
    h.done(ignored=ignored)
    n = c.sub("NetworkingConfig")
    endpoints = n.get("EndpointsConfig") or {}
    if not isinstance(endpoints, dict):
        raise BadRequest("NetworkingConfig.EndpointsConfig: expected an object")
    if any(k not in ("default", "none", "host", network) for k in endpoints):
        raise Unsupported("NetworkingConfig.EndpointsConfig: networks other than the NetworkMode are not supported")
    n.done(ignored=("EndpointsConfig",))
    c.done(ignored=("ArgsEscaped", "Domainname", "OnBuild", "Shell", "MacAddress", "NetworkDisabled"))
    return spec


def volume_json(v: Any) -> dict[str, Any]:
    return {"Name": v.name, "Driver": v.driver or "local", "Mountpoint": v.mountpoint, "CreatedAt": v.created_at,
            "Labels": dict(v.labels or {}), "Scope": "local", "Options": dict(getattr(v, "options", None) or {})}


def log_record_frame(record: Any, tty: bool, timestamps: bool) -> bytes:
    """One runtime log record as Docker's frame (raw bytes for a TTY container)."""
    data = record.log if record.log.endswith("\n") else record.log + "\n"
    payload = (f"{record.time} " if timestamps else "").encode() + data.encode(errors="replace")
    if tty:
        return payload
    return frame(2 if record.stream == "stderr" else 1, payload)


def frame(stream: int, payload: bytes) -> bytes:
    """Docker's multiplexed stream frame: stream (1 stdout, 2 stderr, 3 system error), size, payload."""
    return bytes([stream, 0, 0, 0]) + len(payload).to_bytes(4, "big") + payload


@dataclass
class ExecInstance:
    id: str
    container_id: str
    cmd: list[str]
    env: list[str]
    user: str
    workdir: str
    running: bool = False
    exit_code: int | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    # docker exec -i/-t: runtimed's exec session (agent_runtime/attach.py), its id once started
    tty: bool = False
    stdin: bool = False
    console_size: list[int] = field(default_factory=list)
    detach_keys: str = ""
    session: str = ""
    pid: int = 0

    @property
    def interactive(self) -> bool:
        return self.tty or self.stdin

    def json(self) -> dict[str, Any]:
        return {"ID": self.id, "ContainerID": self.container_id, "Running": self.running, "ExitCode": self.exit_code,
                "OpenStdin": self.stdin, "OpenStdout": True, "OpenStderr": True, "CanRemove": False,
                "Pid": self.pid, "DetachKeys": self.detach_keys,
                "ProcessConfig": {"entrypoint": self.cmd[0] if self.cmd else "", "arguments": self.cmd[1:],
                                  "privileged": False, "tty": self.tty, "user": self.user}}


async def _bridge(request: web.Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                  tty: bool) -> web.StreamResponse:
    """docker -it through shoald: the client's hijacked connection and runtimed's, bytes copied both
    ways (runtimed already speaks Docker's stream: raw with a TTY, multiplexed frames without) until
    runtimed ends the stream; the client's half-close is passed on as ours."""
    from agent_runtime.attach import MULTIPLEXED, RAW, hijack
    client = await hijack(request, RAW if tty else MULTIPLEXED)

    async def upstream() -> None:
        try:
            while data := await client.read():
                writer.write(data)
                await writer.drain()
            if client.closed.is_set():
                writer.close()
            elif writer.can_write_eof():
                writer.write_eof()
        except (ConnectionError, OSError):
            writer.close()

    up = asyncio.create_task(upstream())
    try:
        while not client.closed.is_set():
            data = await reader.read(65536)
            if not data:
                break
            await client.write(data)
    except (ConnectionError, OSError) as err:
        log.debug("docker API: the runtime's attach stream ended: %s", err)
    finally:
        up.cancel()
        writer.close()
        client.close()
    return client.response


async def _hijack(request: web.Request, content_type: str) -> web.StreamResponse:
    """Docker's hijacked connection (101 UPGRADED, then raw bytes until the server closes it), for
    the output-only attach and exec the docker CLI opens without -i."""
    response = web.StreamResponse(status=101, reason="UPGRADED",
                                  headers={"Content-Type": content_type, "Connection": "Upgrade", "Upgrade": "tcp"})
    response.force_close()
    # The client half-closes its side once its request is sent (CloseWrite: no stdin); asyncio's
    # default on that EOF is to close the whole transport, cutting the output. Keep writing.
    transport = request.transport
    if transport is not None:
        transport.set_protocol(_HalfClosed(transport.get_protocol()))
    await response.prepare(request)
    return response


class _HalfClosed(asyncio.Protocol):
    """aiohttp's connection protocol after a hijack: an EOF from the client keeps the connection open
    for our output; nothing more is read (no stdin); flow control and the loss of the connection go
    to aiohttp's protocol as before."""

    def __init__(self, inner: Any):
        self.inner = inner

    def eof_received(self) -> bool:
        return True

    def data_received(self, data: bytes) -> None:
        pass

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.inner.connection_lost(exc)


class ContainerRoutes:
    def __init__(self, api: DockerAPI):
        self.api = api
        self.execs: dict[str, ExecInstance] = {}
        self._tasks: set[asyncio.Task] = set()

    def routes(self) -> list[tuple[str, str, Any]]:
        return [
            ("GET", "/containers/json", self.ps), ("GET", "/containers/{ref}/json", self.inspect),
            ("POST", "/containers/create", self.create), ("POST", "/containers/{ref}/start", self.start),
            ("POST", "/containers/{ref}/wait", self.wait), ("POST", "/containers/{ref}/attach", self.attach),
            ("GET", "/containers/{ref}/logs", self.logs), ("POST", "/containers/{ref}/stop", self.stop),
            ("POST", "/containers/{ref}/kill", self.kill), ("DELETE", "/containers/{ref}", self.remove),
            ("POST", "/containers/{ref}/exec", self.exec_create), ("POST", "/exec/{id}/start", self.exec_start),
            ("GET", "/exec/{id}/json", self.exec_inspect), ("POST", "/containers/{ref}/resize", self.resize),
            ("POST", "/exec/{id}/resize", self.exec_resize),
            ("GET", "/volumes", self.volumes), ("POST", "/volumes/create", self.volume_create),
            ("GET", "/volumes/{name}", self.volume), ("DELETE", "/volumes/{name}", self.volume_rm),
        ]

    def runtime(self) -> Any:
        return self.api.runtime()

    async def _inspect(self, ref: str) -> Any:
        try:
            return await self.runtime().inspect(ref)
        except RuntimeNotFound:
            raise convert_error(404, f"No such container: {ref}") from None

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- list and inspect -------------------------------------------------------------------
    async def ps(self, request: web.Request) -> web.Response:
        """`docker ps [-a]`: this node's containers (task containers and one-off ones)."""
        filters = convert.parse_filters(request.query.get("filters"))
        convert.check_container_filters(filters)
        found = await self.runtime().list(all=convert.parse_bool(request.query.get("all"))
                                          or bool(filters.get("status") or filters.get("exited")))
        return _json([convert.container_summary(c, time.time()) for c in found
                      if convert.container_matches(c, filters)])

    async def inspect(self, request: web.Request) -> web.Response:
        return _json(convert.container_inspect(await self._inspect(request.match_info["ref"])))

    async def _image_exposed(self, spec: Any) -> list[PortBinding]:
        """-P: the image's EXPOSE ports not published yet, each on a free host port."""
        try:
            config = await self.runtime().image_inspect(spec.image)
        except RuntimeNotFound:
            return []      # the create answers "No such image" itself
        done = {(p.container_port, p.protocol) for p in spec.ports}
        return [PortBinding(container_port=port, protocol=proto)
                for port, proto in _port_keys((config.get("Config") or {}).get("ExposedPorts") or {},
                                              "image Config.ExposedPorts") if (port, proto) not in done]

    # ---- lifecycle --------------------------------------------------------------------------
    async def create(self, request: web.Request) -> web.Response:
        name = request.query.get("name", "").lstrip("/")
        if request.query.get("platform", "") not in ("", "linux", "linux/amd64", "linux/x86_64"):
            raise Unsupported(f"platform {request.query['platform']!r} is not supported by Shoal")
        body = await self.api.body(request, "container config")
        spec = parse_container_create(body, name)
        if isinstance(body, dict) and (body.get("HostConfig") or {}).get("PublishAllPorts") is True:
            spec.ports += await self._image_exposed(spec)
        container_id = await self.runtime().create(spec)
        log.info("docker API: container %s created (%s)", name or container_id[:12], spec.image)
        return _json({"Id": container_id, "Warnings": []}, 201)

    async def start(self, request: web.Request) -> web.Response:
        info = await self._inspect(request.match_info["ref"])
        if info.state.status == "running":
            return web.Response(status=304)
        await self.runtime().start(info.id)
        return web.Response(status=204)

    async def _wait_removed(self, container_id: str, events: Any) -> None:
        """Until runtimed has destroyed the container (``events``: subscribed before it could be)."""
        try:
            await self.runtime().inspect(container_id)
        except RuntimeNotFound:
            return
        async for ev in events:
            if ev.get("Action") == "destroy" and (ev.get("Actor") or {}).get("ID") == container_id:
                return
        raise convert_error(503, "container runtime: its event stream ended before the container was removed")

    async def wait(self, request: web.Request) -> web.Response:
        condition = request.query.get("condition", "not-running")
        if condition not in ("not-running", "next-exit", "removed"):
            raise BadRequest(f"invalid condition {condition!r}: expected not-running, next-exit or removed")
        info = await self._inspect(request.match_info["ref"])
        events = await self.runtime().events_stream() if condition == "removed" else None
        pending = None
        body: dict[str, Any]
        try:
            try:   # runtimed has the wait before the CLI, which starts the container once it has the headers
                pending = await self.runtime().wait_stream(info.id)
            except RuntimeNotFound:
                raise convert_error(404, f"No such container: {request.match_info['ref']}") from None
            response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
            await response.prepare(request)
            try:
                result = await pending.result()
                body = {"StatusCode": result.status_code}
                if result.error:
                    body["Error"] = {"Message": result.error}
                if events is not None:
                    await self._wait_removed(info.id, events)
            except Exception as err:   # the headers are sent: Docker's error in the body, not a second response
                body = {"StatusCode": -1, "Error": {"Message": str(err)}}
        finally:
            if events is not None:
                events.close()
            if pending is not None:
                pending.close()
        await response.write(json_bytes(body))
        await response.write_eof()
        return response

    async def attach(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        if convert.parse_bool(q.get("logs")) and not convert.parse_bool(q.get("stream")):
            raise Unsupported("attach with logs only: use GET /containers/{id}/logs")
        info = await self._inspect(request.match_info["ref"])
        stdout, stderr = convert.parse_bool(q.get("stdout")), convert.parse_bool(q.get("stderr"))
        tty = info.config.tty
        if convert.parse_bool(q.get("stdin")):    # docker run -i, docker attach: runtimed's attach, bridged
            if convert.parse_bool(q.get("logs")):
                raise Unsupported("attach with logs=1 and stdin=1 is not supported by Shoal's Docker API")
            reader, writer = await self.runtime().hijack(info.id, stdin=True, stdout=stdout, stderr=stderr,
                                                         detach_keys=q.get("detachKeys", ""))
            return await _bridge(request, reader, writer, tty)
        try:   # open before the client is answered: it starts the container once attached
            records = await self.runtime().logs_stream(info.id, follow=True, stdout=stdout, stderr=stderr,
                                                       attach=True)
        except RuntimeNotFound:
            raise convert_error(404, f"No such container: {request.match_info['ref']}") from None
        try:
            response = await _hijack(request, "application/vnd.docker.raw-stream" if tty
                                     else "application/vnd.docker.multiplexed-stream")
            try:
                async for record in records:
                    await response.write(log_record_frame(record, tty, False))
            except ShoalRuntimeError as err:   # the headers are sent: Docker's system-error frame
                await response.write(frame(3, str(err).encode()))
            await response.write_eof()
            return response
        finally:
            records.close()

    async def logs(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        stdout, stderr = convert.parse_bool(q.get("stdout")), convert.parse_bool(q.get("stderr"))
        if not (stdout or stderr):
            raise BadRequest("Bad parameters: you must choose at least one stream")
        tail_text = q.get("tail", "all")
        if tail_text not in ("all", "") and not tail_text.lstrip("-").isdigit():
            raise BadRequest(f"invalid tail {tail_text!r}: a number or \"all\"")
        tail = None if tail_text in ("all", "") or int(tail_text) < 0 else int(tail_text)
        since = q.get("since", "") or None
        if since is not None:
            try:
                float(since)
            except ValueError:
                raise BadRequest(f"invalid since {since!r}: expected unix seconds") from None
        if q.get("until"):
            raise Unsupported("logs until is not supported by Shoal's Docker API")
        info = await self._inspect(request.match_info["ref"])
        tty, timestamps = info.config.tty, convert.parse_bool(q.get("timestamps"))
        records = self.runtime().logs(info.id, follow=convert.parse_bool(q.get("follow")), tail=tail,
                                      since=float(since) if since and float(since) > 0 else None,
                                      stdout=stdout, stderr=stderr)
        response = web.StreamResponse(status=200)
        response.content_type = ("application/vnd.docker.raw-stream" if tty
                                 else "application/vnd.docker.multiplexed-stream")
        from shoal.dockerapi.server import _headers
        _headers(response)
        await response.prepare(request)
        async for record in records:
            await response.write(log_record_frame(record, tty, timestamps))
        await response.write_eof()
        return response

    async def stop(self, request: web.Request) -> web.Response:
        info = await self._inspect(request.match_info["ref"])
        if info.state.status != "running":
            return web.Response(status=304)
        timeout = request.query.get("t", "")
        if timeout and not timeout.lstrip("-").isdigit():
            raise BadRequest(f"invalid t {timeout!r}: seconds")
        await self.runtime().stop(info.id, timeout=float(timeout) if timeout and int(timeout) >= 0 else None)
        return web.Response(status=204)

    async def kill(self, request: web.Request) -> web.Response:
        info = await self._inspect(request.match_info["ref"])
        if info.state.status != "running":
            raise convert_error(409, f"cannot kill container: {request.match_info['ref']}: "
                                     f"container {info.id} is not running")
        await self.runtime().kill(info.id, request.query.get("signal") or "SIGKILL")
        return web.Response(status=204)

    async def remove(self, request: web.Request) -> web.Response:
        q = request.query
        if convert.parse_bool(q.get("link")):
            raise Unsupported("links are not supported by Shoal")
        info = await self._inspect(request.match_info["ref"])
        await self.runtime().remove(info.id, force=convert.parse_bool(q.get("force")))
        for exec_id in [e.id for e in self.execs.values() if e.container_id == info.id and not e.running]:
            del self.execs[exec_id]
        return web.Response(status=204)

    # ---- exec -------------------------------------------------------------------------------
    async def exec_create(self, request: web.Request) -> web.Response:
        b = Obj(await self.api.body(request, "exec config"), "ExecConfig")
        cmd = b.strings("Cmd")
        if not cmd:
            raise BadRequest("ExecConfig.Cmd: no command specified")
        if b.bool("Privileged"):
            raise Unsupported("ExecConfig.Privileged (docker exec --privileged) is not supported by Shoal's Docker API")
        b.bool("AttachStdout"), b.bool("AttachStderr"), b.bool("Detach")
        size = b.get("ConsoleSize")
        detach_keys = b.str("DetachKeys")
        if detach_keys:
            from agent_runtime.detachkeys import parse_detach_keys
            try:
                parse_detach_keys(detach_keys)
            except ValueError as err:
                raise BadRequest(str(err)) from None
        info = await self._inspect(request.match_info["ref"])
        if info.state.status != "running":
            raise convert_error(409, f"container {info.id} is not running")
        instance = ExecInstance(id=secrets.token_hex(32), container_id=info.id, cmd=cmd, env=b.strings("Env"),
                                user=b.str("User"), workdir=b.str("WorkingDir"), tty=b.bool("Tty"),
                                stdin=b.bool("AttachStdin"), detach_keys=detach_keys,
                                console_size=list(size) if isinstance(size, list) and len(size) == 2 and all(
                                    isinstance(v, int) and 0 < v < 65536 for v in size) else [])
        b.done(ignored=("ConsoleSize", "DetachKeys"))
        self.execs[instance.id] = instance
        while len(self.execs) > EXEC_KEEP:   # the oldest finished ones go first
            oldest = next((e for e in self.execs.values() if not e.running and e.exit_code is not None), None)
            if oldest is None:
                break
            del self.execs[oldest.id]
        return _json({"Id": instance.id}, 201)

    def _exec(self, exec_id: str) -> ExecInstance:
        instance = self.execs.get(exec_id)
        if instance is None:
            raise convert_error(404, f"No such exec instance: {exec_id}")
        return instance

    async def _run_exec(self, instance: ExecInstance) -> Any:
        instance.running = True
        try:
            result = await self.runtime().exec(instance.container_id, instance.cmd, env=instance.env,
                                               user=instance.user, workdir=instance.workdir, timeout=EXEC_TIMEOUT)
            instance.exit_code = result.exit_code
            return result
        except Exception:
            instance.exit_code = 126 if instance.exit_code is None else instance.exit_code
            raise
        finally:
            instance.running = False
            instance.done.set()

    async def exec_start(self, request: web.Request) -> web.StreamResponse:
        b = Obj(await self.api.body(request, "exec start config"), "ExecStartConfig")
        detach = b.bool("Detach")
        tty = b.bool("Tty")
        b.get("ConsoleSize")
        b.done(ignored=("ConsoleSize",))
        instance = self._exec(request.match_info["id"])
        if instance.running or instance.exit_code is not None:
            raise convert_error(409, f"exec {instance.id} has already run")
        if tty != instance.tty:
            raise BadRequest(f"ExecStartConfig.Tty {str(tty).lower()} differs from the exec's Tty "
                             f"{str(instance.tty).lower()}")
        if instance.interactive:
            return await self._start_interactive(request, instance, detach)
        if detach:
            self._spawn(self._run_exec(instance))
            return web.Response(status=200)
        upgrade = request.headers.get("Upgrade", "").lower() == "tcp"
        if upgrade:
            response = await _hijack(request, "application/vnd.docker.multiplexed-stream")
        else:
            response = web.StreamResponse(status=200, headers={"Content-Type": "application/vnd.docker.multiplexed-stream"})
            await response.prepare(request)
        try:
            result = await self._run_exec(instance)
        except Exception as err:   # headers are sent: Docker's system-error frame
            await response.write(frame(3, str(err).encode()))
        else:
            if result.stdout:
                await response.write(frame(1, result.stdout.encode(errors="replace")))
            if result.stderr:
                await response.write(frame(2, result.stderr.encode(errors="replace")))
        await response.write_eof()
        return response

    async def exec_inspect(self, request: web.Request) -> web.Response:
        instance = self._exec(request.match_info["id"])
        if instance.session and instance.running:
            await self._refresh(instance)
        return _json(instance.json())

    async def _refresh(self, instance: ExecInstance) -> None:
        """An interactive exec's state is runtimed's session's."""
        try:
            state = await self.runtime().exec_inspect(instance.session)
        except RuntimeNotFound:
            state = {"Running": False, "ExitCode": instance.exit_code if instance.exit_code is not None else 126}
        instance.pid = state.get("Pid") or instance.pid
        instance.running = bool(state.get("Running"))
        if not instance.running:
            instance.exit_code = state.get("ExitCode")
            instance.done.set()

    @staticmethod
    def _size(request: web.Request) -> tuple[int, int]:
        out = []
        for key in ("h", "w"):
            text = request.query.get(key, "")
            if not text.isdigit() or not 0 < int(text) < 65536:
                raise BadRequest(f"invalid {key} {text!r}: a window size of 1 to 65535")
            out.append(int(text))
        return out[0], out[1]

    async def resize(self, request: web.Request) -> web.Response:
        rows, columns = self._size(request)
        info = await self._inspect(request.match_info["ref"])
        await self.runtime().resize(info.id, rows, columns)
        return web.Response(status=200)

    async def exec_resize(self, request: web.Request) -> web.Response:
        rows, columns = self._size(request)
        instance = self._exec(request.match_info["id"])
        if not instance.session:
            raise convert_error(409, f"exec {instance.id} is not running with a TTY")
        await self.runtime().exec_resize(instance.session, rows, columns)
        return web.Response(status=200)

    async def _start_interactive(self, request: web.Request, instance: ExecInstance, detach: bool) -> web.StreamResponse:
        """docker exec -i/-t: a session in runtimed (its own pty with -t), started and bridged."""
        instance.running = True
        try:
            instance.session = await self.runtime().exec_create(
                instance.container_id, instance.cmd, env=instance.env, user=instance.user, workdir=instance.workdir,
                tty=instance.tty, stdin=instance.stdin and not detach,
                console_size=tuple(instance.console_size) if instance.console_size else None)
            reader, writer = await self.runtime().hijack(instance.session, exec_start=True,
                                                         detach_keys=instance.detach_keys)
        except BaseException:
            instance.running, instance.exit_code = False, 126
            instance.done.set()
            raise
        if detach:    # runs to its end in runtimed without a client
            writer.close()
            return web.Response(status=200)
        try:
            return await _bridge(request, reader, writer, instance.tty)
        finally:
            await self._refresh(instance)

    # ---- volumes ----------------------------------------------------------------------------
    async def volumes(self, request: web.Request) -> web.Response:
        filters = convert.parse_filters(request.query.get("filters"))
        for key in filters:
            if key not in ("name", "label", "driver", "dangling"):
                raise BadRequest(f"invalid filter '{key}'")
        found = []
        for v in await self.runtime().volumes():
            if filters.get("name") and not any(n in v.name for n in filters["name"]):
                continue
            if filters.get("driver") and (v.driver or "local") not in filters["driver"]:
                continue
            if filters.get("label") and not all(
                    (k in v.labels and (not sep or v.labels[k] == val))
                    for k, sep, val in (f.partition("=") for f in filters["label"])):
                continue
            if filters.get("dangling"):
                wanted = {convert.parse_bool(d) for d in filters["dangling"]}
                if (not v.in_use_by) not in wanted:
                    continue
            found.append(volume_json(v))
        return _json({"Volumes": found, "Warnings": None})

    async def volume_create(self, request: web.Request) -> web.Response:
        b = Obj(await self.api.body(request, "volume config"), "VolumeConfig")
        name = b.str("Name") or secrets.token_hex(32)
        driver = b.str("Driver")
        if driver not in ("", "local"):
            raise Unsupported(f"VolumeConfig.Driver {driver!r} is not supported by Shoal (local volumes only)")
        options = b.string_map("DriverOpts")
        labels = b.string_map("Labels")
        if b.get("ClusterVolumeSpec"):
            raise Unsupported("VolumeConfig.ClusterVolumeSpec (cluster volumes) is not supported by Shoal")
        b.done(ignored=("ClusterVolumeSpec",))
        return _json(volume_json(await self.runtime().volume_create(name, labels, options)), 201)

    async def volume(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        try:
            return _json(volume_json(await self.runtime().volume_inspect(name)))
        except RuntimeNotFound:
            raise convert_error(404, f"get {name}: no such volume") from None

    async def volume_rm(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        try:
            await self.runtime().volume_remove(name)
        except RuntimeNotFound:
            if convert.parse_bool(request.query.get("force")):
                return web.Response(status=204)
            raise convert_error(404, f"get {name}: no such volume") from None
        return web.Response(status=204)


def json_bytes(data: Any) -> bytes:
    import json
    return json.dumps(data).encode()


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=json_bytes(data), status=status, content_type="application/json")


def convert_error(status: int, message: str) -> Exception:
    from shoal.dockerapi.server import ApiError
    return ApiError(status, message)
