"""The client of shoal-runtimed: the only module of agent_runtime the worker and the CLI import.

``RuntimeClient`` (blocking; agent_runtime.unixhttp over AF_UNIX) and ``AsyncRuntimeClient`` (asyncio;
aiohttp) offer the same calls with the same typed results. Errors come back as the small hierarchy
``ShoalRuntimeError`` > ``NotFound`` (404), ``Conflict`` (409), ``InvalidArgument`` (400), built
from the server's ``{"message": ...}``; a daemon that cannot be reached (or drops the connection)
raises ``Unavailable`` naming the socket, and a call it does not answer in time ``DeadlineExceeded``
naming the call (``POST /containers/ID/start``).

Deadlines (async client): every call has one, ``deadline`` seconds (default ``DEFAULT_DEADLINE``,
or ``SHOAL_RUNTIME_TIMEOUT`` from the environment), plus the time the call itself is asked to take
(a stop's grace period, an exec's timeout); an image pull gets ``PULL_DEADLINE`` more, a network
sync ``NETWORK_SYNC_TIME`` more. Streams (``logs``, ``events``) have the deadline until their
response starts, then none. There is no ceiling on
concurrent connections: one task's call never waits for another's.

    client = RuntimeClient()                       # socket from SHOAL_RUNTIME_HOST or SHOAL_HOST
    cid = client.create(ContainerSpec(image="shoal/busybox:latest", command=["sleep", "60"],
                                      resources=Resources(memory_bytes=64 << 20)))
    client.start(cid); client.exec(cid, ["cat", "/etc/hostname"]); client.stop(cid); client.remove(cid)
"""

from __future__ import annotations

import base64
import json
import os
import urllib.parse
from dataclasses import dataclass
from typing import Any, AsyncIterator, BinaryIO, Callable, Iterator

from agent_runtime import blocking, unixhttp
from agent_runtime.blocking import DEFAULT_SOCKET, default_socket  # noqa: F401 (part of this API)
from agent_runtime.errors import (Conflict, DeadlineExceeded, Forbidden, InvalidArgument, NotFound, ShoalRuntimeError,
                                  Unavailable)
from typing import TYPE_CHECKING
from agent_runtime.spec import (ATTACHMENT_LABEL, TASK_LABEL, ContainerInfo, ContainerSpec, ContainerState,
                                ContainerStats, ExecResult, File, Health, Healthcheck, LogConfig, Mount,
                                NetworkAttachment, PortBinding, Resources, Ulimit, VolumeInfo, from_json, to_json)

if TYPE_CHECKING:
    import asyncio
    from agent_runtime.events import event as container_event  # noqa: F401
    from agent_runtime.logs import LogRecord
    from agent_runtime.network.model import (Backend, EncryptionKey, Network, NetworkState, Peer,  # noqa: F401
                                             PortConfig, Service, VirtualIP, mac_from_ip)

# Loaded on first use (PEP 562): `shoal run` needs none of them, and asyncio, the event bus and
# the network model are a good part of a short CLI command's start-up.
_LAZY = {"container_event": ("agent_runtime.events", "event"), "LogRecord": ("agent_runtime.logs", "LogRecord"),
         **{name: ("agent_runtime.network.model", name) for name in (
             "Backend", "EncryptionKey", "Network", "NetworkState", "Peer", "PortConfig", "Service", "VirtualIP",
             "mac_from_ip")}}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib
    module, attr = _LAZY[name]
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


__all__ = [
    "RuntimeClient", "AsyncRuntimeClient", "default_socket", "ContainerSpec", "Mount", "File", "Resources", "Ulimit",
    "Healthcheck", "Health", "LogConfig", "ContainerInfo", "ContainerState", "ContainerStats", "ExecResult",
    "VolumeInfo", "WaitResult", "LogRecord", "ShoalRuntimeError", "NotFound", "Conflict", "InvalidArgument",
    "Unavailable", "DeadlineExceeded", "DEFAULT_DEADLINE", "EventStream", "container_event",
    "NetworkAttachment", "NetworkState", "Network", "Peer", "Service", "VirtualIP", "PortConfig", "Backend",
    "EncryptionKey", "mac_from_ip", "registry_auth_header", "ATTACHMENT_LABEL", "TASK_LABEL", "Forbidden",
    "PortBinding",
]

PULL_DEADLINE = 600.0
NETWORK_SYNC_TIME = 60.0
PRUNE_DEADLINE = 300.0      # prune and df walk every writable layer and volume: many files take a while


def _default_deadline() -> float:
    try:
        value = float(os.environ.get("SHOAL_RUNTIME_TIMEOUT", "30"))
    except ValueError:
        return 30.0
    return value if value > 0 else 30.0


DEFAULT_DEADLINE = _default_deadline()


@dataclass
class WaitResult:
    status_code: int
    oom_killed: bool
    error: str = ""


@dataclass
class _Call:
    method: str
    path: str
    query: dict | None = None
    body: Any = None
    decode: Callable[[Any], Any] = lambda data: data
    extra_time: float = 0.0  # added to the client's deadline: what the call is asked to wait for
    headers: dict | None = None

    @property
    def what(self) -> str:
        """The call as a user reads it in an error: ``POST /containers/ID/start``."""
        return f"{self.method} {urllib.parse.unquote(self.path)}"

    def url(self) -> str:
        q = {k: v for k, v in (self.query or {}).items() if v is not None}
        return self.path + ("?" + urllib.parse.urlencode(q, doseq=True) if q else "")


def _auth_header(auth: str | None) -> dict | None:
    return {"X-Registry-Auth": auth} if auth else None


def registry_auth_header(username: str, password: str, server: str = "") -> str:
    """Docker's ``X-Registry-Auth`` value: base64url JSON of the credentials for one call."""
    doc = {"username": username, "password": password, "serveraddress": server}
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode()


def _check_message(message: dict) -> dict:
    """A line of a pull/push/load stream; an ``error`` line raises it (status 500, the daemon's text)."""
    if "error" in message:
        raise ShoalRuntimeError(message.get("error") or "the operation failed")
    return message


def _q(ref: str) -> str:
    return urllib.parse.quote(ref, safe="")


def _wait_result(d: dict) -> WaitResult:
    return WaitResult(d["StatusCode"], d.get("OOMKilled", False), (d.get("Error") or {}).get("Message", ""))


class _Calls:
    """Every call as data (method, path, body, how to decode the answer); the clients send them."""

    @staticmethod
    def version() -> _Call: return _Call("GET", "/version")
    @staticmethod
    def info() -> _Call: return _Call("GET", "/info")
    @staticmethod
    def images() -> _Call: return _Call("GET", "/images/json")
    @staticmethod
    def image_inspect(ref: str) -> _Call: return _Call("GET", "/images/inspect", {"ref": ref})

    @staticmethod
    def image_pull(ref: str, insecure_registries: tuple[str, ...] = (), auth: str | None = None,
                   platform: str | None = None, stream: bool = False) -> _Call:
        return _Call("POST", "/images/pull", {"stream": 1 if stream else None},
                     body={"Ref": ref, "InsecureRegistries": list(insecure_registries), "Platform": platform},
                     extra_time=PULL_DEADLINE, headers=_auth_header(auth))

    @staticmethod
    def image_push(ref: str, auth: str | None = None) -> _Call:
        return _Call("POST", "/images/push", body={"Ref": ref}, extra_time=PULL_DEADLINE, headers=_auth_header(auth))

    @staticmethod
    def image_tag(source: str, target: str) -> _Call:
        return _Call("POST", "/images/tag", body={"Source": source, "Target": target})

    @staticmethod
    def image_prune(all: bool = False) -> _Call:
        return _Call("POST", "/images/prune", body={"All": all})

    @staticmethod
    def container_prune(filters: dict[str, list[str]] | None = None) -> _Call:
        return _Call("POST", "/containers/prune", body={"Filters": filters or {}}, extra_time=PRUNE_DEADLINE)

    @staticmethod
    def volume_prune(filters: dict[str, list[str]] | None = None) -> _Call:
        return _Call("POST", "/volumes/prune", body={"Filters": filters or {}}, extra_time=PRUNE_DEADLINE)

    @staticmethod
    def system_df() -> _Call:
        return _Call("GET", "/system/df", extra_time=PRUNE_DEADLINE)

    @staticmethod
    def image_import(source: str, ref: str | None = None) -> _Call:
        return _Call("POST", "/images/import", body={"Source": source, "Ref": ref})

    @staticmethod
    def image_load(path: str, tag: str | None = None) -> _Call:
        return _Call("POST", "/images/load", body={"Path": path, "Tag": tag})

    @staticmethod
    def image_save(refs: list[str]) -> _Call:
        # the archive is made before the first byte: as long as a pull may take
        return _Call("GET", "/images/get", {"names": list(refs)}, extra_time=PULL_DEADLINE)

    @staticmethod
    def image_upload(what: str, stream: BinaryIO, query: dict) -> _Call:
        """``load`` or ``import`` with the archive as the request body (sent chunked)."""
        return _Call("POST", f"/images/{what}", query, body=stream, extra_time=PULL_DEADLINE,
                     headers={"Content-Type": "application/x-tar"})

    @staticmethod
    def image_remove(ref: str, force: bool = False) -> _Call:
        return _Call("DELETE", "/images", {"ref": ref, "force": int(force)})

    @staticmethod
    def create(spec: ContainerSpec) -> _Call:
        return _Call("POST", "/containers/create", body=spec.to_json(), decode=lambda d: d["Id"])

    @staticmethod
    def start(ref: str) -> _Call:
        return _Call("POST", f"/containers/{_q(ref)}/start", decode=_info)

    @staticmethod
    def stop(ref: str, timeout: float | None = None) -> _Call:
        return _Call("POST", f"/containers/{_q(ref)}/stop", {"t": timeout}, decode=_info,
                     extra_time=10.0 if timeout is None else timeout)

    @staticmethod
    def kill(ref: str, signal: str | int = "SIGKILL") -> _Call:
        return _Call("POST", f"/containers/{_q(ref)}/kill", {"signal": signal}, decode=lambda d: None)

    @staticmethod
    def remove(ref: str, force: bool = False) -> _Call:
        return _Call("DELETE", f"/containers/{_q(ref)}", {"force": int(force)}, decode=lambda d: None)

    @staticmethod
    def list(all: bool = False) -> _Call:
        return _Call("GET", "/containers/json", {"all": int(all)}, decode=lambda d: [_info(x) for x in d])

    @staticmethod
    def inspect(ref: str) -> _Call:
        return _Call("GET", f"/containers/{_q(ref)}/json", decode=_info)

    @staticmethod
    def wait(ref: str, attach: bool = False) -> _Call:
        return _Call("POST", f"/containers/{_q(ref)}/wait", {"attach": 1 if attach else None}, decode=_wait_result)

    @staticmethod
    def exec(ref: str, cmd: list[str], env: list[str] | None = None, user: str = "", workdir: str = "",
             timeout: float | None = None) -> _Call:
        return _Call("POST", f"/containers/{_q(ref)}/exec",
                     body={"Cmd": cmd, "Env": env or [], "User": user, "WorkingDir": workdir, "Timeout": timeout},
                     decode=lambda d: from_json(ExecResult, d), extra_time=timeout or 0.0)

    @staticmethod
    def resize(ref: str, rows: int, columns: int) -> _Call:
        return _Call("POST", f"/containers/{_q(ref)}/resize", {"h": rows, "w": columns})

    @staticmethod
    def exec_create(ref: str, cmd: list[str], env: list[str] | None = None, user: str = "", workdir: str = "",
                    tty: bool = False, stdin: bool = False, console_size: tuple[int, int] | None = None) -> _Call:
        return _Call("POST", f"/containers/{_q(ref)}/execs",
                     body={"Cmd": cmd, "Env": env or [], "User": user, "WorkingDir": workdir, "Tty": tty,
                           "AttachStdin": stdin, "ConsoleSize": list(console_size or [])},
                     decode=lambda d: d["Id"])

    @staticmethod
    def exec_inspect(exec_id: str) -> _Call:
        return _Call("GET", f"/exec/{_q(exec_id)}/json")

    @staticmethod
    def exec_resize(exec_id: str, rows: int, columns: int) -> _Call:
        return _Call("POST", f"/exec/{_q(exec_id)}/resize", {"h": rows, "w": columns})

    @staticmethod
    def stats(ref: str) -> _Call:
        return _Call("GET", f"/containers/{_q(ref)}/stats", decode=lambda d: from_json(ContainerStats, d))

    @staticmethod
    def logs(ref: str, follow: bool = False, tail: int | None = None, since: float | str | None = None,
             stdout: bool = True, stderr: bool = True, attach: bool = False) -> _Call:
        return _Call("GET", f"/containers/{_q(ref)}/logs",
                     {"follow": int(follow), "tail": "all" if tail is None else tail, "since": since,
                      "stdout": int(stdout), "stderr": int(stderr), "attach": 1 if attach else None})

    @staticmethod
    def events() -> _Call:
        return _Call("GET", "/events")

    @staticmethod
    def volume_create(name: str, labels: dict[str, str] | None = None, options: dict[str, str] | None = None) -> _Call:
        return _Call("POST", "/volumes/create", body={"Name": name, "Labels": labels or {}, "DriverOpts": options or {}},
                     decode=lambda d: from_json(VolumeInfo, d))

    @staticmethod
    def volumes() -> _Call:
        return _Call("GET", "/volumes", decode=lambda d: [from_json(VolumeInfo, v) for v in d["Volumes"]])

    @staticmethod
    def volume_inspect(name: str) -> _Call:
        return _Call("GET", f"/volumes/{_q(name)}", decode=lambda d: from_json(VolumeInfo, d))

    @staticmethod
    def volume_remove(name: str) -> _Call:
        return _Call("DELETE", f"/volumes/{_q(name)}", decode=lambda d: None)

    @staticmethod
    def network_sync(state: NetworkState) -> _Call:
        # A whole host's data plane (nft, netlink, VXLAN) can take a while to converge.
        return _Call("POST", "/network/sync", body=state.to_json(), extra_time=NETWORK_SYNC_TIME)

    @staticmethod
    def network_inspect() -> _Call:
        return _Call("GET", "/network")

    @staticmethod
    def network_connect(ref: str, attachment: NetworkAttachment) -> _Call:
        # Builds the new interface on the data plane (netlink, nft), as a sync does.
        return _Call("POST", f"/containers/{_q(ref)}/networks/connect", body=to_json(attachment),
                     decode=lambda d: d["Interface"], extra_time=NETWORK_SYNC_TIME)

    @staticmethod
    def network_disconnect(ref: str, network: str, force: bool = False) -> _Call:
        return _Call("POST", f"/containers/{_q(ref)}/networks/disconnect", body={"Network": network, "Force": force},
                     extra_time=NETWORK_SYNC_TIME)


def _info(d: dict) -> ContainerInfo:
    return from_json(ContainerInfo, d)


def _record(line: bytes) -> LogRecord:
    from agent_runtime.logs import LogRecord
    d = json.loads(line)
    return LogRecord(d["stream"], d["log"], d["time"])


def _timeout(seconds: float):
    import asyncio
    return asyncio.timeout(seconds)


class RuntimeClient:
    """Blocking client; one connection per call (cheap on a unix socket). Safe to share across threads."""

    def __init__(self, socket_path: str | None = None, timeout: float | None = None) -> None:
        self.socket_path = socket_path or default_socket()
        self.timeout = timeout

    def _open(self, call: _Call) -> tuple[unixhttp.Connection, unixhttp.Response]:
        streamed = hasattr(call.body, "read")
        body = call.body if streamed else None if call.body is None else json.dumps(call.body).encode()
        headers = {"Content-Type": "application/json"} if body is not None else {}
        headers.update(call.headers or {})
        return blocking.open_call(self.socket_path, self.timeout, call.method, call.url(), call.what, body, headers)

    def _call(self, call: _Call) -> Any:
        conn, resp = self._open(call)
        try:
            payload = resp.read()
        finally:
            conn.close()
        return call.decode(json.loads(payload) if payload else None)

    def version(self) -> dict: return self._call(_Calls.version())
    def info(self) -> dict: return self._call(_Calls.info())
    def images(self) -> list[dict]: return self._call(_Calls.images())
    def image_inspect(self, ref: str) -> dict: return self._call(_Calls.image_inspect(ref))
    def image_pull(self, ref: str, insecure_registries: tuple[str, ...] = (), auth: str | None = None,
                   platform: str | None = None) -> dict:
        return self._call(_Calls.image_pull(ref, insecure_registries, auth, platform))
    def image_import(self, source: str, ref: str | None = None) -> dict:
        return self._call(_Calls.image_import(source, ref))
    def image_load(self, path: str, tag: str | None = None) -> list[dict]:
        return self._call(_Calls.image_load(path, tag))
    def image_tag(self, source: str, target: str) -> dict: return self._call(_Calls.image_tag(source, target))
    def image_prune(self, all: bool = False) -> dict: return self._call(_Calls.image_prune(all))

    def image_save(self, refs: list[str], out: BinaryIO) -> int:
        """Write ``docker save`` of ``refs`` to ``out``; the bytes written."""
        conn, resp = self._open(_Calls.image_save(refs))
        written = 0
        try:
            while chunk := resp.read_chunk():
                out.write(chunk)
                written += len(chunk)
        finally:
            conn.close()
        return written

    def container_prune(self, filters: dict[str, list[str]] | None = None) -> dict:
        return self._call(_Calls.container_prune(filters))
    def volume_prune(self, filters: dict[str, list[str]] | None = None) -> dict:
        return self._call(_Calls.volume_prune(filters))
    def system_df(self) -> dict: return self._call(_Calls.system_df())

    def image_pull_stream(self, ref: str, auth: str | None = None, platform: str | None = None) -> Iterator[dict]:
        """Docker's pull messages ({"status", "id", "progressDetail"}) as they come, the last one
        ``{"aux": IMAGE}``; an error message raises ShoalRuntimeError. ``auth``: registry_auth_header()."""
        return self._messages(_Calls.image_pull(ref, (), auth, platform, stream=True))

    def image_push_stream(self, ref: str, auth: str | None = None) -> Iterator[dict]:
        """Docker's push messages, the last one ``{"aux": {"Tag", "Digest", "Size"}}``."""
        return self._messages(_Calls.image_push(ref, auth))

    def image_load_stream(self, archive: BinaryIO, tag: str | None = None) -> list[dict]:
        """Send an archive (docker save / OCI layout tar) from ``archive``; the images loaded."""
        return self._call(_Calls.image_upload("load", archive, {"tag": tag}))

    def image_import_stream(self, rootfs: BinaryIO, ref: str | None = None, changes: list[str] | None = None,
                            message: str | None = None) -> dict:
        """Send a rootfs tarball (plain or gzip) from ``rootfs``; the one-layer image made of it."""
        return self._call(_Calls.image_upload("import", rootfs, {"ref": ref, "change": changes or None,
                                                                "message": message}))

    def _messages(self, call: _Call) -> Iterator[dict]:
        conn, resp = self._open(call)
        try:
            while line := resp.readline():
                if line.strip():
                    yield _check_message(json.loads(line))
        finally:
            conn.close()
    def image_remove(self, ref: str, force: bool = False) -> list[dict]:
        return self._call(_Calls.image_remove(ref, force))
    def create(self, spec: ContainerSpec) -> str: return self._call(_Calls.create(spec))
    def start(self, ref: str) -> ContainerInfo: return self._call(_Calls.start(ref))
    def stop(self, ref: str, timeout: float | None = None) -> ContainerInfo: return self._call(_Calls.stop(ref, timeout))
    def kill(self, ref: str, signal: str | int = "SIGKILL") -> None: return self._call(_Calls.kill(ref, signal))
    def remove(self, ref: str, force: bool = False) -> None: return self._call(_Calls.remove(ref, force))
    def list(self, all: bool = False) -> list[ContainerInfo]: return self._call(_Calls.list(all))
    def inspect(self, ref: str) -> ContainerInfo: return self._call(_Calls.inspect(ref))
    def wait(self, ref: str) -> WaitResult: return self._call(_Calls.wait(ref))
    def stats(self, ref: str) -> ContainerStats: return self._call(_Calls.stats(ref))
    def exec(self, ref: str, cmd: list[str], env: list[str] | None = None, user: str = "", workdir: str = "",
             timeout: float | None = None) -> ExecResult:
        return self._call(_Calls.exec(ref, cmd, env, user, workdir, timeout))
    def resize(self, ref: str, rows: int, columns: int) -> None:
        self._call(_Calls.resize(ref, rows, columns))

    def exec_create(self, ref: str, cmd: list[str], env: list[str] | None = None, user: str = "",
                    workdir: str = "", tty: bool = False, stdin: bool = False,
                    console_size: tuple[int, int] | None = None) -> str:
        return self._call(_Calls.exec_create(ref, cmd, env, user, workdir, tty, stdin, console_size))

    def exec_inspect(self, exec_id: str) -> dict: return self._call(_Calls.exec_inspect(exec_id))

    def exec_resize(self, exec_id: str, rows: int, columns: int) -> None:
        self._call(_Calls.exec_resize(exec_id, rows, columns))

    def attach(self, ref: str, stdin: bool = False, detach_keys: str = "") -> "unixhttp.Upgraded":
        """Docker's hijacked attach (agent_runtime/attach.py): the raw socket, made before a start
        so that nothing the container writes is missed."""
        query = {"stream": 1, "stdin": int(stdin), "stdout": 1, "stderr": 1}
        if detach_keys:
            query["detachKeys"] = detach_keys
        return self._upgrade(_Call("POST", f"/containers/{_q(ref)}/attach", query))

    def exec_start(self, exec_id: str, detach_keys: str = "") -> "unixhttp.Upgraded":
        return self._upgrade(_Call("POST", f"/exec/{_q(exec_id)}/start",
                                   {"detachKeys": detach_keys} if detach_keys else None))

    def wait_attached(self, ref: str) -> Callable[[], WaitResult]:
        """Docker run's wait (``attach=1``): returns once runtimed has sent the headers, before the
        container is started; the function returned blocks until the exit and gives its result
        (AutoRemove keeps the container until it is sent)."""
        conn, resp = self._open(_Calls.wait(ref, attach=True))
        if conn.sock is not None:
            conn.sock.settimeout(None)

        def result() -> WaitResult:
            try:
                payload = resp.read()
            finally:
                conn.close()
            return _wait_result(json.loads(payload))
        return result

    def _upgrade(self, call: _Call) -> "unixhttp.Upgraded":
        try:
            status, payload, upgraded = unixhttp.upgrade(self.socket_path, call.method, call.url(), None,
                                                         self.timeout)
        except TimeoutError:
            raise DeadlineExceeded(f"shoal-runtimed did not answer {call.what} within {self.timeout:g} s") from None
        except (ConnectionError, unixhttp.ProtocolError) as exc:
            raise Unavailable(f"shoal-runtimed at {self.socket_path} dropped the connection during "
                              f"{call.what}: {exc}") from exc
        except OSError as exc:
            raise Unavailable(f"cannot connect to shoal-runtimed at {self.socket_path}: {exc.strerror}") from exc
        if upgraded is None:
            if status >= 400:
                blocking.raise_for(status, payload)
            raise Unavailable(f"shoal-runtimed answered {call.what} with {status}, not a stream")
        return upgraded

    def volume_create(self, name: str, labels: dict[str, str] | None = None,
                      options: dict[str, str] | None = None) -> VolumeInfo:
        return self._call(_Calls.volume_create(name, labels, options))
    def volumes(self) -> list[VolumeInfo]: return self._call(_Calls.volumes())
    def volume_inspect(self, name: str) -> VolumeInfo: return self._call(_Calls.volume_inspect(name))
    def volume_remove(self, name: str) -> None: return self._call(_Calls.volume_remove(name))

    def network_sync(self, state: NetworkState) -> dict:
        """Push this host's whole desired NetworkState; returns what is live (Networks, Containers,
        Errors, DurationMs). Idempotent: send it on every change and periodically."""
        return self._call(_Calls.network_sync(state))

    def network_inspect(self) -> dict: return self._call(_Calls.network_inspect())
    def network_connect(self, ref: str, attachment: NetworkAttachment) -> str:
        return self._call(_Calls.network_connect(ref, attachment))
    def network_disconnect(self, ref: str, network: str, force: bool = False) -> dict:
        return self._call(_Calls.network_disconnect(ref, network, force))

    def run(self, spec: ContainerSpec) -> ContainerInfo:
        """create + start; the container is removed again if it cannot start."""
        cid = self.create(spec)
        try:
            return self.start(cid)
        except ShoalRuntimeError:
            self.remove(cid, force=True)
            raise

    def logs(self, ref: str, follow: bool = False, tail: int | None = None, since: float | str | None = None,
             stdout: bool = True, stderr: bool = True) -> Iterator[LogRecord]:
        """Log records oldest first; with ``follow`` the iterator ends when the container exits."""
        conn, resp = self._open(_Calls.logs(ref, follow, tail, since, stdout, stderr))
        try:
            while line := resp.readline():
                if line.strip():
                    yield _record(line)
        finally:
            conn.close()

    def events(self) -> Iterator[dict]:
        """Container events (agent_runtime.events) from now on, until runtimed ends the stream.
        Build the client with ``timeout=None``: a quiet stream is not an error."""
        conn, resp = self._open(_Calls.events())
        try:
            while line := resp.readline():
                if line.strip():
                    yield json.loads(line)
        finally:
            conn.close()


class EventStream:
    """An open streaming response (``GET /events``, a followed ``GET /containers/ID/logs``):
    ``async for item in stream``; ``close()`` releases it."""

    def __init__(self, resp, lines: AsyncIterator[dict]) -> None:
        self._resp = resp
        self._lines = lines

    def __aiter__(self) -> AsyncIterator[dict]:
        return self._lines

    def close(self) -> None:
        self._resp.close()


class PendingWait:
    """An open ``POST /containers/ID/wait?attach=1`` (AsyncRuntimeClient.wait_stream)."""

    def __init__(self, client: "AsyncRuntimeClient", call: _Call, resp) -> None:
        self._client, self._call, self._resp = client, call, resp

    async def result(self) -> WaitResult:
        """The exit, however long the container runs (no deadline: close() to give up)."""
        import aiohttp
        try:
            async with self._resp:
                payload = await self._resp.read()
        except aiohttp.ClientError as exc:
            raise self._client._unavailable(self._call, exc) from exc
        return _wait_result(json.loads(payload))

    def close(self) -> None:
        self._resp.close()


class AsyncRuntimeClient:
    """asyncio client with the same calls as RuntimeClient; ``await client.close()`` when done.

    ``deadline``: seconds each call may take (see the module docstring); ``timeout`` is its old name.
    """

    def __init__(self, socket_path: str | None = None, timeout: float | None = None,
                 deadline: float | None = None) -> None:
        self.socket_path = socket_path or default_socket()
        self.deadline = deadline or timeout or DEFAULT_DEADLINE
        self._session = None

    async def _sess(self):
        import aiohttp
        if self._session is None or self._session.closed:
            # limit=0: no connection pool ceiling (aiohttp's default is 100, and the 101st call
            # would wait for a free connection without end). Deadlines are per call, below.
            self._session = aiohttp.ClientSession(
                connector=aiohttp.UnixConnector(path=self.socket_path, limit=0),
                timeout=aiohttp.ClientTimeout(total=None))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def __aenter__(self) -> "AsyncRuntimeClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    def _unavailable(self, call: _Call, exc: Exception) -> Unavailable:
        import aiohttp
        if isinstance(exc, aiohttp.ClientConnectorError):
            return Unavailable(f"cannot connect to shoal-runtimed at {self.socket_path}: {exc.os_error.strerror or exc}")
        return Unavailable(f"shoal-runtimed at {self.socket_path} dropped the connection during {call.what}: "
                           f"{exc or type(exc).__name__}")

    async def _send(self, call: _Call):
        """The response to ``call`` once its headers are in, within the call's deadline."""
        import aiohttp
        session = await self._sess()
        deadline = self.deadline + call.extra_time
        try:
            async with _timeout(deadline):
                if hasattr(call.body, "__aiter__"):   # an upload (load): streamed as it comes
                    resp = await session.request(call.method, "http://runtimed" + call.url(), data=call.body,
                                                 headers=call.headers)
                else:
                    resp = await session.request(call.method, "http://runtimed" + call.url(), json=call.body,
                                                 headers=call.headers)
                if resp.status >= 400:
                    payload = await resp.read()
                    resp.release()
                    blocking.raise_for(resp.status, payload)
        except TimeoutError:
            raise DeadlineExceeded(f"shoal-runtimed did not answer {call.what} within {deadline:g} s") from None
        except aiohttp.ClientError as exc:
            raise self._unavailable(call, exc) from exc
        return resp

    async def _call(self, call: _Call) -> Any:
        import aiohttp
        deadline = self.deadline + call.extra_time
        try:
            async with _timeout(deadline):
                resp = await self._send(call)
                async with resp:
                    payload = await resp.read()
        except TimeoutError:
            raise DeadlineExceeded(f"shoal-runtimed did not answer {call.what} within {deadline:g} s") from None
        except aiohttp.ClientError as exc:
            raise self._unavailable(call, exc) from exc
        return call.decode(json.loads(payload) if payload else None)

    async def version(self) -> dict: return await self._call(_Calls.version())
    async def info(self) -> dict: return await self._call(_Calls.info())
    async def images(self) -> list[dict]: return await self._call(_Calls.images())
    async def image_inspect(self, ref: str) -> dict: return await self._call(_Calls.image_inspect(ref))
    async def image_pull(self, ref: str, insecure_registries: tuple[str, ...] = (), auth: str | None = None,
                         platform: str | None = None) -> dict:
        return await self._call(_Calls.image_pull(ref, insecure_registries, auth, platform))
    async def image_tag(self, source: str, target: str) -> dict: return await self._call(_Calls.image_tag(source, target))

    async def image_pull_stream(self, ref: str, auth: str | None = None,
                                platform: str | None = None) -> AsyncIterator[dict]:
        """Docker's pull messages as they come (an error line is yielded, not raised: a proxy
        such as the Docker API passes it on)."""
        async for line in self._lines(_Calls.image_pull(ref, (), auth, platform, stream=True)):
            yield json.loads(line)

    async def image_push_stream(self, ref: str, auth: str | None = None) -> AsyncIterator[dict]:
        async for line in self._lines(_Calls.image_push(ref, auth)):
            yield json.loads(line)

    async def image_load_stream(self, chunks: AsyncIterator[bytes], tag: str | None = None) -> list[dict]:
        """Load an archive sent from ``chunks`` (docker save / OCI layout tar); the images loaded."""
        return await self._call(_Calls.image_upload("load", chunks, {"tag": tag}))  # type: ignore[arg-type]
    async def image_prune(self, all: bool = False) -> dict: return await self._call(_Calls.image_prune(all))

    async def image_save_stream(self, refs: list[str]) -> AsyncIterator[bytes]:
        """``docker save`` of ``refs`` as it comes; errors (an unknown image) raise before the first chunk."""
        import aiohttp
        call = _Calls.image_save(refs)
        resp = await self._send(call)
        async with resp:
            try:
                async for chunk in resp.content.iter_chunked(1 << 20):
                    yield chunk
            except aiohttp.ClientError as exc:
                raise self._unavailable(call, exc) from exc
    async def image_remove(self, ref: str, force: bool = False) -> list[dict]:
        return await self._call(_Calls.image_remove(ref, force))
    async def create(self, spec: ContainerSpec) -> str: return await self._call(_Calls.create(spec))
    async def start(self, ref: str) -> ContainerInfo: return await self._call(_Calls.start(ref))
    async def stop(self, ref: str, timeout: float | None = None) -> ContainerInfo:
        return await self._call(_Calls.stop(ref, timeout))
    async def kill(self, ref: str, signal: str | int = "SIGKILL") -> None: return await self._call(_Calls.kill(ref, signal))
    async def remove(self, ref: str, force: bool = False) -> None: return await self._call(_Calls.remove(ref, force))
    async def list(self, all: bool = False) -> list[ContainerInfo]: return await self._call(_Calls.list(all))
    async def inspect(self, ref: str) -> ContainerInfo: return await self._call(_Calls.inspect(ref))
    async def wait(self, ref: str) -> WaitResult: return await self._call(_Calls.wait(ref))

    async def wait_stream(self, ref: str) -> "PendingWait":
        """A wait opened now, as docker run opens it before it starts the container: returns once
        runtimed has it (AutoRemove then keeps the container until it is answered); a container
        not started yet is waited for from its start. ``await pending.result()``; ``close()`` it."""
        call = _Calls.wait(ref, attach=True)
        return PendingWait(self, call, await self._send(call))
    async def resize(self, ref: str, rows: int, columns: int) -> None:
        await self._call(_Calls.resize(ref, rows, columns))

    async def exec_create(self, ref: str, cmd: list[str], env: list[str] | None = None, user: str = "",
                          workdir: str = "", tty: bool = False, stdin: bool = False,
                          console_size: tuple[int, int] | None = None) -> str:
        return await self._call(_Calls.exec_create(ref, cmd, env, user, workdir, tty, stdin, console_size))

    async def exec_inspect(self, exec_id: str) -> dict: return await self._call(_Calls.exec_inspect(exec_id))

    async def exec_resize(self, exec_id: str, rows: int, columns: int) -> None:
        await self._call(_Calls.exec_resize(exec_id, rows, columns))

    async def hijack(self, ref_or_id: str, exec_start: bool = False, stdin: bool = False, stdout: bool = True,
                     stderr: bool = True, detach_keys: str = "") -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """runtimed's hijacked attach (or exec start): a raw connection after ``101 UPGRADED``
        (agent_runtime/attach.py), for shoald to copy bytes between it and a Docker client."""
        import asyncio
        if exec_start:
            call = _Call("POST", f"/exec/{_q(ref_or_id)}/start", {"detachKeys": detach_keys or None})
        else:
            call = _Call("POST", f"/containers/{_q(ref_or_id)}/attach",
                         {"stream": 1, "stdin": int(stdin), "stdout": int(stdout), "stderr": int(stderr),
                          "detachKeys": detach_keys or None})
        try:
            async with _timeout(self.deadline):
                reader, writer = await asyncio.open_unix_connection(self.socket_path)
                writer.write(f"{call.method} {call.url()} HTTP/1.1\r\nHost: runtimed\r\nConnection: Upgrade\r\n"
                             "Upgrade: tcp\r\nContent-Length: 0\r\n\r\n".encode("latin-1"))
                head = await reader.readuntil(b"\r\n\r\n")
        except TimeoutError:
            raise DeadlineExceeded(f"shoal-runtimed did not answer {call.what} within {self.deadline:g} s") from None
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            raise Unavailable(f"shoal-runtimed at {self.socket_path}: {call.what} failed: {exc}") from exc
        status_line = head.split(b"\r\n", 1)[0].split(None, 2)
        status = int(status_line[1]) if len(status_line) > 1 and status_line[1].isdigit() else 0
        if status != 101:
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length" and value.strip().isdigit():
                    length = int(value.strip())
            try:
                payload = await asyncio.wait_for(reader.readexactly(length), self.deadline) if length else b""
            except (asyncio.IncompleteReadError, TimeoutError, OSError):
                payload = b""
            writer.close()
            blocking.raise_for(status or 502, payload)
        return reader, writer

    async def stats(self, ref: str) -> ContainerStats: return await self._call(_Calls.stats(ref))
    async def exec(self, ref: str, cmd: list[str], env: list[str] | None = None, user: str = "", workdir: str = "",
                   timeout: float | None = None) -> ExecResult:
        return await self._call(_Calls.exec(ref, cmd, env, user, workdir, timeout))
    async def volume_create(self, name: str, labels: dict[str, str] | None = None,
                            options: dict[str, str] | None = None) -> VolumeInfo:
        return await self._call(_Calls.volume_create(name, labels, options))
    async def volumes(self) -> list[VolumeInfo]: return await self._call(_Calls.volumes())
    async def volume_inspect(self, name: str) -> VolumeInfo: return await self._call(_Calls.volume_inspect(name))
    async def volume_remove(self, name: str) -> None: return await self._call(_Calls.volume_remove(name))
    async def network_sync(self, state: NetworkState) -> dict: return await self._call(_Calls.network_sync(state))
    async def network_inspect(self) -> dict: return await self._call(_Calls.network_inspect())
    async def network_connect(self, ref: str, attachment: NetworkAttachment) -> str:
        """The container's new interface name."""
        return await self._call(_Calls.network_connect(ref, attachment))
    async def network_disconnect(self, ref: str, network: str, force: bool = False) -> dict:
        """``{"NetworkID", "AttachmentID"}`` of what went (empty when ``force`` found nothing)."""
        return await self._call(_Calls.network_disconnect(ref, network, force))

    async def logs(self, ref: str, follow: bool = False, tail: int | None = None, since: float | str | None = None,
                   stdout: bool = True, stderr: bool = True, attach: bool = False) -> AsyncIterator[LogRecord]:
        """Log records oldest first; ``follow``: until the container exits; ``attach`` as well: a
        container not started yet is followed from its start (AutoRemove waits for the stream)."""
        async for line in self._lines(_Calls.logs(ref, follow, tail, since, stdout, stderr, attach)):
            yield _record(line)

    async def events(self) -> AsyncIterator[dict]:
        """Container events (agent_runtime.events: Docker's JSON form) from now on, in order, until
        the stream is cut (``Unavailable``; or the iterator ends if runtimed ended it): then
        reconnect and list containers to learn what was missed. The subscription exists once the
        first ``__anext__`` has sent the request; use ``events_stream()`` to know when."""
        stream = await self.events_stream()
        try:
            async for ev in stream:
                yield ev
        finally:
            stream.close()

    async def events_stream(self) -> "EventStream":
        """Subscribe now (returns once runtimed has the subscription), iterate later; ``close()`` it."""
        call = _Calls.events()
        resp = await self._send(call)
        return EventStream(resp, self._iter_lines(call, resp, json.loads))

    async def logs_stream(self, ref: str, follow: bool = False, stdout: bool = True, stderr: bool = True,
                          attach: bool = False) -> "EventStream":
        """``logs`` opened now (returns once runtimed answers: with ``attach``, AutoRemove keeps
        the container until this stream ends), its records iterated later; ``close()`` it."""
        call = _Calls.logs(ref, follow, None, None, stdout, stderr, attach)
        resp = await self._send(call)
        return EventStream(resp, self._iter_lines(call, resp, _record))

    async def _lines(self, call: _Call) -> AsyncIterator[bytes]:
        resp = await self._send(call)
        async for line in self._iter_lines(call, resp, lambda line: line):
            yield line

    async def _iter_lines(self, call: _Call, resp, decode) -> AsyncIterator[Any]:
        import aiohttp
        async with resp:
            try:
                async for line in resp.content:
                    if line.strip():
                        yield decode(line)
            except aiohttp.ClientError as exc:
                raise self._unavailable(call, exc) from exc
