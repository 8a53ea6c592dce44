"""Typed container specs and records, and their JSON form (Docker's field names).

These dataclasses are the vocabulary shared by ``agent_runtime.api`` (the worker's client) and the
server. They are plain data: ``to_json()`` gives a dict with Docker's names (``Image``, ``Cmd``,
``HostConfig``-style ``Memory``...), ``from_json()`` reads one back and rejects unknown or mistyped
fields with ``InvalidArgument`` naming the field. ``validate_spec`` holds the rules that need no
I/O (limits, mount shapes, signal names); checks against the host (does a bind source exist?) are
the container manager's.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import re
import signal
import typing
from dataclasses import dataclass, field
from typing import Any

from agent_runtime.errors import InvalidArgument

TASK_LABEL = "com.docker.swarm.task.id"                # a swarm task's container (worker/executor.py)
ATTACHMENT_LABEL = "com.shoal.network.attachment.id"   # a one-off container's swarm network attachments,
                                                       # comma-separated (shoal run --network, network connect)
MIN_MEMORY_BYTES = 6 * 1024 * 1024  # Docker's minimum memory limit


def _json_name(f: dataclasses.Field) -> str:
    return f.metadata.get("json", "".join(p.capitalize() for p in f.name.split("_")))


@functools.cache
def _json_names(cls: type) -> tuple[tuple[str, str], ...]:
    """(attribute, JSON name) of each field of a dataclass, worked out once per class."""
    return tuple((f.name, _json_name(f)) for f in dataclasses.fields(cls))


def to_json(obj: Any) -> Any:
    """Turn a dataclass tree into JSON-ready data with each field under its Docker name."""
    if dataclasses.is_dataclass(obj):
        cls = obj if isinstance(obj, type) else type(obj)
        return {name: to_json(getattr(obj, attr)) for attr, name in _json_names(cls)}
    if isinstance(obj, (list, tuple)):
        return [to_json(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_json(v) for k, v in obj.items()}
    return obj


@functools.cache
def _fields(cls: type) -> tuple[dict[str, Any], dict[str, dataclasses.Field]]:
    """A dataclass's resolved type hints and its fields by JSON name, worked out once per class:
    get_type_hints evaluates every annotation string again on each call (compile() per field,
    about a third of runtimed's time in a create)."""
    return typing.get_type_hints(cls), {_json_name(f): f for f in dataclasses.fields(cls)}


def from_json(cls: type, data: Any, where: str = "") -> Any:
    """Build ``cls`` from JSON data; unknown fields or wrong types raise InvalidArgument."""
    where = where or cls.__name__
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InvalidArgument(f"{where}: expected an object, got {type(data).__name__}")
    hints, by_name = _fields(cls)
    unknown = sorted(set(data) - set(by_name))
    if unknown:
        raise InvalidArgument(f"{where}: unknown field(s) {', '.join(unknown)}")
    kwargs = {}
    for name, f in by_name.items():
        if name in data:
            kwargs[f.name] = _convert(hints[f.name], data[name], f"{where}.{name}")
    return cls(**kwargs)


def _convert(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, where)
    if dataclasses.is_dataclass(hint):
        return from_json(hint, value, where)
    if origin is list:
        if not isinstance(value, list):
            raise InvalidArgument(f"{where}: expected a list")
        return [_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise InvalidArgument(f"{where}: expected an object")
        return {str(k): _convert(args[1], v, f"{where}.{k}") for k, v in value.items()}
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (str, int, float, bool) and (not isinstance(value, hint) or (hint is int and isinstance(value, bool))):
        raise InvalidArgument(f"{where}: expected {hint.__name__}, got {value!r}")
    return value


@dataclass
class Mount:
    """One mount: ``bind`` (Source is a host path), ``volume`` (Source is a volume name, created on
    first use) or ``tmpfs`` (no Source; ``tmpfs_size_bytes`` 0 means the kernel's default)."""

    type: str
    target: str
    source: str = ""
    read_only: bool = False
    tmpfs_size_bytes: int = field(default=0, metadata={"json": "TmpfsSizeBytes"})
    tmpfs_mode: int = 0o1777
    # bind: private, rprivate (the default), shared, rshared, slave, rslave
    propagation: str = ""
    # volume: a new (empty) volume is filled from the image's content at the target unless no_copy
    no_copy: bool = False
    volume_labels: dict[str, str] = field(default_factory=dict)
    volume_driver: str = ""        # "" or local: the one driver a node has
    # the local driver's options for a new volume (type, device, o: a mount made at the volume's
    # _data, e.g. type=tmpfs device=tmpfs o=size=64m, or type=none o=bind device=/path)
    volume_options: dict[str, str] = field(default_factory=dict)


@dataclass
class File:
    """A file given by value (a swarm secret or config): runtimed writes ``data`` (base64) on a
    tmpfs of the container's and bind-mounts it read-only at ``target``, owned ``uid``:``gid`` with
    ``mode``. The data is never written to disk; the stored spec and inspect show it empty
    (see ``agent_runtime.files``)."""

    target: str
    data: str = ""
    uid: int = field(default=0, metadata={"json": "UID"})
    gid: int = field(default=0, metadata={"json": "GID"})
    mode: int = 0o444


@dataclass
class Resources:
    """Limits. 0 means unlimited (``pids_limit`` -1 or 0 means unlimited too)."""

    nano_cpus: int = 0
    memory_bytes: int = field(default=0, metadata={"json": "Memory"})
    memory_reservation_bytes: int = field(default=0, metadata={"json": "MemoryReservation"})
    pids_limit: int = 0
    cpu_shares: int = 0


@dataclass
class Healthcheck:
    """Docker's HEALTHCHECK: runtimed runs ``test`` in the running container (as exec does) every
    ``interval_s``; ``retries`` failures in a row, not counting those in ``start_period_s`` before
    the first success, make it unhealthy."""

    test: list[str] = field(default_factory=list)
    interval_s: float = field(default=30.0, metadata={"json": "Interval"})
    timeout_s: float = field(default=30.0, metadata={"json": "Timeout"})
    retries: int = 3
    start_period_s: float = field(default=0.0, metadata={"json": "StartPeriod"})
    # between checks while still starting inside start_period_s; 0 means Docker's default, 5 s
    start_interval_s: float = field(default=0.0, metadata={"json": "StartInterval"})


@dataclass
class LogConfig:
    """json-file options: ``max-size`` bytes per file, ``max-file`` files kept (Docker's names).
    0 takes the daemon's default (daemon.json ``log-opts``, else 10m and 3), key by key as dockerd
    merges a container's log options with its own."""

    max_size_bytes: int = field(default=0, metadata={"json": "MaxSize"})
    max_files: int = field(default=0, metadata={"json": "MaxFile"})

    def merged(self, default: "LogConfig | None") -> "LogConfig":
        """These options, with what is 0 taken from ``default`` and then from the built-in defaults."""
        default = default or LogConfig()
        return LogConfig(max_size_bytes=self.max_size_bytes or default.max_size_bytes or DEFAULT_LOG_MAX_SIZE,
                         max_files=self.max_files or default.max_files or DEFAULT_LOG_MAX_FILES)


DEFAULT_LOG_MAX_SIZE = 10 * 1024 * 1024
DEFAULT_LOG_MAX_FILES = 3


@dataclass
class Ulimit:
    """One resource limit set before the workload's exec (Docker's ``HostConfig.Ulimits``)."""

    name: str
    soft: int
    hard: int


@dataclass
class RestartPolicy:
    """Docker's HostConfig.RestartPolicy: ``no`` (or empty), ``always``, ``unless-stopped`` or
    ``on-failure`` with at most ``maximum_retry_count`` restarts (0: no limit)."""

    name: str = ""
    maximum_retry_count: int = 0


RESTART_POLICIES = ("", "no", "always", "unless-stopped", "on-failure")


@dataclass
class NetworkAttachment:
    """The container's endpoint on an overlay network (the worker fills it from the task's
    allocation): ``address`` is ``IP/PREFIX``; an empty ``mac_address`` means Docker's 02:42:<ip bytes>;
    ``aliases`` are extra DNS names for this container on that network. ``interface`` is the
    container's interface (``eth<N>``; empty: ``eth<position>``), fixed once given so a network
    connected or disconnected later renames no other interface; ``attachment_id`` is shoald's
    attachment of a one-off container (released when the network is disconnected)."""

    network_id: str = field(metadata={"json": "NetworkID"})
    address: str
    mac_address: str = ""
    aliases: list[str] = field(default_factory=list)
    interface: str = ""
    attachment_id: str = field(default="", metadata={"json": "AttachmentID"})


@dataclass
class PortBinding:
    """A published port (``run -p [HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTO]``): connections to
    ``host_port`` on this host (on ``host_ip`` only, when given) reach ``container_port``. A
    ``host_port`` of 0 asks runtimed for a free one at create (Docker's ephemeral range); the
    container's record then holds the port it got."""

    container_port: int
    protocol: str = "tcp"
    host_ip: str = field(default="", metadata={"json": "HostIp"})
    host_port: int = 0


@dataclass
class ContainerSpec:
    """What to run. Empty ``command``/``entrypoint``/``workdir``/``user`` take the image's values.

    ``network`` is ``none`` (own namespace, loopback only), ``host``, or a network namespace: a path
    (``/run/netns/x``) or a name under /run/netns. ``networks`` (overlay attachments, needing a
    ``network_sync`` that names them first) gives the container a namespace made by runtimed with one
    interface per network plus egress; ``network`` then stays ``none``. ``rootfs`` (optional, like an OCI bundle's root
    path) runs a prepared root directory instead of an image; ``image`` is then only a label.
    """

    image: str
    command: list[str] = field(default_factory=list, metadata={"json": "Cmd"})
    entrypoint: list[str] | None = None
    env: list[str] = field(default_factory=list)
    workdir: str = field(default="", metadata={"json": "WorkingDir"})
    user: str = ""
    hostname: str = ""
    name: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    mounts: list[Mount] = field(default_factory=list)
    resources: Resources = field(default_factory=Resources)
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    privileged: bool = False
    no_new_privileges: bool = False
    # "" = Docker's default seccomp profile, "unconfined" = none, else a profile's JSON text
    # (HostConfig.SecurityOpt "seccomp=..."); ignored when privileged (agent_runtime.seccomp)
    seccomp: str = field(default="", metadata={"json": "SeccompProfile"})
    init: bool = False
    stop_signal: str = ""
    stop_grace_period_s: float = field(default=10.0, metadata={"json": "StopTimeout"})
    network: str = field(default="none", metadata={"json": "NetworkMode"})
    networks: list[NetworkAttachment] = field(default_factory=list)
    healthcheck: Healthcheck | None = None
    log_config: LogConfig = field(default_factory=LogConfig)
    rootfs: str = ""
    files: list[File] = field(default_factory=list)
    # /etc/resolv.conf: with Networks the embedded DNS stays the container's nameserver and
    # forwards to ``dns``; without, ``dns``/``dns_search``/``dns_options`` are written as given
    dns: list[str] = field(default_factory=list, metadata={"json": "Dns"})
    dns_search: list[str] = field(default_factory=list, metadata={"json": "DnsSearch"})
    dns_options: list[str] = field(default_factory=list, metadata={"json": "DnsOptions"})
    extra_hosts: list[str] = field(default_factory=list)        # "HOST:IP", Docker's HostConfig form
    readonly_rootfs: bool = field(default=False, metadata={"json": "ReadonlyRootfs"})
    sysctls: dict[str, str] = field(default_factory=dict)
    ulimits: list[Ulimit] = field(default_factory=list)
    oom_score_adj: int = field(default=0, metadata={"json": "OomScoreAdj"})
    # supplementary groups of the workload (and of exec): names from the container's /etc/group, or GIDs
    group_add: list[str] = field(default_factory=list, metadata={"json": "GroupAdd"})
    # stdin, stdout and stderr are one pseudo-terminal (its output is logged as stdout)
    tty: bool = False
    # the workload's stdin is a pipe (or the pty) that attached clients write to (`run -i`);
    # with stdin_once (Docker's StdinOnce) it is closed when the first attached client's input ends
    open_stdin: bool = False
    stdin_once: bool = False
    # the pty's window size when the workload starts: [rows, columns] (Docker's HostConfig.ConsoleSize)
    console_size: list[int] = field(default_factory=list)
    # Docker's HostConfig.AutoRemove (`run --rm`): runtimed removes the container once it has
    # exited, whoever waits for it or not (`run -d --rm`), also when it exited while runtimed was down
    auto_remove: bool = field(default=False, metadata={"json": "AutoRemove"})
    # Docker's HostConfig.RestartPolicy: runtimed starts the container again when it exits
    # (agent_runtime/restart.py); a swarm task's container never has one (the orchestrator restarts)
    restart_policy: RestartPolicy = field(default_factory=RestartPolicy)
    # Docker's HostConfig.PortBindings, flattened: the container joins the overlay data plane's
    # gateway bridge (its egress) and the host DNATs each port to it (agent_runtime/network/rules.py)
    ports: list[PortBinding] = field(default_factory=list, metadata={"json": "PortBindings"})

    def to_json(self) -> dict:
        return to_json(self)

    @classmethod
    def from_json(cls, data: Any) -> "ContainerSpec":
        return from_json(cls, data, "ContainerSpec")


@dataclass
class Health:
    """Docker's ``State.Health``: starting, healthy or unhealthy, and the current failing streak."""

    status: str = "starting"
    failing_streak: int = 0


@dataclass
class ContainerState:
    """Docker's ``State`` object. ``status`` is created, running, exited or removing; ``health``
    is there while a container with a health check runs (runtimed runs the check)."""

    status: str = "created"
    running: bool = False
    pid: int = 0
    exit_code: int = 0
    oom_killed: bool = field(default=False, metadata={"json": "OOMKilled"})
    error: str = ""
    started_at: str = ""
    finished_at: str = ""
    health: Health | None = None
    # exited, with a restart by its restart policy pending (Docker's State.Restarting: `ps` shows
    # it as "Restarting (CODE) N seconds ago" and lists it without -a, prune leaves it)
    restarting: bool = False


@dataclass
class ContainerInfo:
    """What ``inspect`` returns: identity, the spec as given, the resolved image and the state."""

    id: str
    name: str
    created: str
    image: str
    image_id: str
    state: ContainerState
    config: ContainerSpec
    log_path: str = ""
    restart_count: int = 0          # times runtimed restarted it under its restart policy


@dataclass
class VolumeInfo:
    """A named local volume (Docker's fields)."""

    name: str
    mountpoint: str
    created_at: str
    driver: str = "local"
    labels: dict[str, str] = field(default_factory=dict)
    in_use_by: list[str] = field(default_factory=list, metadata={"json": "UsedBy"})
    options: dict[str, str] = field(default_factory=dict)


@dataclass
class ExecResult:
    """Outcome of a command run inside a container (output is capped by the server)."""

    exit_code: int
    stdout: str = ""
    stderr: str = ""


@dataclass
class ContainerStats:
    """Cgroup figures for one container (Docker's stats, flattened)."""

    id: str
    cpu_usage_ns: int = 0
    memory_usage_bytes: int = 0
    memory_limit_bytes: int = 0
    pids_current: int = 0
    pids_limit: int = 0
    read: str = ""


def signal_number(name: str | int) -> int:
    """Map ``SIGTERM``/``TERM``/``15`` to 15; raise InvalidArgument for anything else."""
    if isinstance(name, int) or (isinstance(name, str) and name.isdigit()):
        num = int(name)
        if 0 < num < signal.NSIG:
            return num
        raise InvalidArgument(f"invalid signal {name!r}")
    text = str(name).upper()
    if not text.startswith("SIG"):
        text = "SIG" + text
    try:
        return int(getattr(signal.Signals, text))
    except AttributeError:
        raise InvalidArgument(f"invalid signal {name!r}") from None


def validate_spec(spec: ContainerSpec) -> None:
    """Check what needs no I/O; raise InvalidArgument naming the first bad field."""
    if not spec.image and not spec.rootfs:
        raise InvalidArgument("ContainerSpec.Image: an image reference is required")
    policy = spec.restart_policy
    if policy.name not in RESTART_POLICIES:
        raise InvalidArgument(f"invalid restart policy: unknown policy '{policy.name}'; use one of 'no', "
                              "'always', 'on-failure', or 'unless-stopped'")
    if policy.maximum_retry_count and policy.name != "on-failure":
        raise InvalidArgument("invalid restart policy: maximum retry count can only be used with 'on-failure'")
    if policy.maximum_retry_count < 0:
        raise InvalidArgument("invalid restart policy: maximum retry count cannot be negative")
    if spec.auto_remove and policy.name not in ("", "no"):
        raise InvalidArgument("can't create 'AutoRemove' container with restart policy")
    _validate_ports(spec)
    if spec.rootfs and not spec.rootfs.startswith("/"):
        raise InvalidArgument(f"ContainerSpec.Rootfs: {spec.rootfs!r} is not an absolute path")
    for entry in spec.env:
        if "=" not in entry or entry.startswith("="):
            raise InvalidArgument(f"ContainerSpec.Env: {entry!r} is not NAME=VALUE")
    r = spec.resources
    if r.memory_bytes < 0 or (0 < r.memory_bytes < MIN_MEMORY_BYTES):
        raise InvalidArgument(
            f"Resources.Memory: {r.memory_bytes} bytes is impossible; the minimum memory limit is 6MiB")
    if r.memory_reservation_bytes < 0 or (r.memory_bytes and r.memory_reservation_bytes > r.memory_bytes):
        raise InvalidArgument("Resources.MemoryReservation: must be between 0 and the memory limit")
    if r.nano_cpus < 0 or (0 < r.nano_cpus < 10_000_000):
        raise InvalidArgument(f"Resources.NanoCpus: {r.nano_cpus} is below the minimum of 0.01 CPU")
    if r.cpu_shares < 0 or r.pids_limit < -1:
        raise InvalidArgument("Resources: CpuShares and PidsLimit must not be negative")
    if spec.stop_signal:
        signal_number(spec.stop_signal)
    if spec.stop_grace_period_s < 0:
        raise InvalidArgument("ContainerSpec.StopTimeout: must not be negative")
    if len(spec.hostname) > 64:
        raise InvalidArgument("ContainerSpec.Hostname: longer than 64 characters")
    if not (spec.log_config.max_size_bytes == 0 or spec.log_config.max_size_bytes >= 4096) \
            or spec.log_config.max_files < 0:
        raise InvalidArgument("LogConfig: MaxSize must be at least 4096 bytes and MaxFile at least 1")
    _validate_networks(spec)
    _validate_runtime_options(spec)
    for group in spec.group_add:
        if not group or ":" in group or any(c.isspace() for c in group):
            raise InvalidArgument(f"ContainerSpec.GroupAdd: {group!r} is not a group name or GID")
    if spec.seccomp:
        from agent_runtime import seccomp  # not at import: the CLI imports this module and starts fast
        seccomp.validate(spec.seccomp)
    targets = set()
    for i, m in enumerate(spec.mounts):
        where = f"ContainerSpec.Mounts[{i}]"
        if m.type not in ("bind", "volume", "tmpfs"):
            raise InvalidArgument(f"{where}.Type: {m.type!r} is not bind, volume or tmpfs")
        if not m.target.startswith("/") or ".." in m.target.split("/"):
            raise InvalidArgument(f"{where}.Target: {m.target!r} must be an absolute path without '..'")
        if m.target in targets:
            raise InvalidArgument(f"{where}.Target: duplicate mount point {m.target}")
        targets.add(m.target)
        if m.type == "bind" and not m.source.startswith("/"):
            raise InvalidArgument(f"{where}.Source: bind source {m.source!r} is not an absolute path")
        if m.type == "volume" and (not m.source or "/" in m.source or m.source.startswith(".")):
            raise InvalidArgument(f"{where}.Source: {m.source!r} is not a valid volume name")
        if m.type == "tmpfs" and (m.source or m.tmpfs_size_bytes < 0):
            raise InvalidArgument(f"{where}: tmpfs takes no Source and a size of 0 or more bytes")
        if m.type == "tmpfs" and not 0 < m.tmpfs_mode <= 0o7777:
            raise InvalidArgument(f"{where}.TmpfsMode: {m.tmpfs_mode:o} is not a file mode")
        if m.propagation not in ("", "private", "rprivate", "shared", "rshared", "slave", "rslave") \
                or (m.propagation and m.type != "bind"):
            raise InvalidArgument(f"{where}.Propagation: {m.propagation!r} is not a bind mount's propagation")
        if m.volume_driver not in ("", "local"):
            raise InvalidArgument(f"{where}: volume driver {m.volume_driver!r} is not available on this node "
                                  "(it has: local)")
    _validate_files(spec, targets)


def _validate_runtime_options(spec: ContainerSpec) -> None:
    from common import hostopts as syntax  # the grammar the CLI and the ControlAPI use: the same words
    try:
        for ip in spec.dns:
            syntax.check_ip(ip)
        for domain in spec.dns_search:
            syntax.check_dns_search(domain)
        for entry in spec.extra_hosts:
            syntax.parse_extra_host(entry)
        for key in spec.sysctls:
            syntax.check_sysctl(key)
            if key.startswith("net.") and spec.network == "host":
                raise ValueError(f"sysctl {key!r} is not allowed in host network namespace")
        names = set()
        for u in spec.ulimits:
            syntax.check_ulimit(u.name, u.soft, u.hard)
            if u.name in names:
                raise ValueError(f"ulimit {u.name} is given more than once")
            names.add(u.name)
        syntax.check_oom_score_adj(spec.oom_score_adj)
    except ValueError as err:
        raise InvalidArgument(f"ContainerSpec: {err}") from None
    for option in spec.dns_options:
        if not option or any(c.isspace() for c in option):
            raise InvalidArgument(f"ContainerSpec.DnsOptions: {option!r} is not a resolv.conf option")


def _validate_files(spec: ContainerSpec, targets: set[str]) -> None:
    for i, f in enumerate(spec.files):
        where = f"ContainerSpec.Files[{i}]"
        if not f.target.startswith("/") or ".." in f.target.split("/") or f.target.endswith("/"):
            raise InvalidArgument(f"{where}.Target: {f.target!r} must be an absolute file path without '..'")
        if f.target in targets:
            raise InvalidArgument(f"{where}.Target: {f.target} is already a mount point or another file")
        targets.add(f.target)
        if not 0 <= f.uid < 2**32 or not 0 <= f.gid < 2**32:
            raise InvalidArgument(f"{where}: UID and GID must be between 0 and 2^32-1")
        if not 0 <= f.mode <= 0o7777:
            raise InvalidArgument(f"{where}.Mode: {f.mode:o} is not a file mode")


def _validate_ports(spec: ContainerSpec) -> None:
    if spec.ports and spec.network not in ("none", ""):
        raise InvalidArgument(f"ContainerSpec.PortBindings: ports cannot be published in network mode "
                              f"{spec.network!r}" + (" (the host's ports are the container's)"
                                                     if spec.network == "host" else ""))
    seen = set()
    for i, p in enumerate(spec.ports):
        where = f"ContainerSpec.PortBindings[{i}]"
        if p.protocol not in ("tcp", "udp", "sctp"):
            raise InvalidArgument(f"{where}.Protocol: invalid proto: {p.protocol}")
        if not 0 < p.container_port < 65536:
            raise InvalidArgument(f"{where}.ContainerPort: invalid containerPort: {p.container_port}")
        if not 0 <= p.host_port < 65536:
            raise InvalidArgument(f"{where}.HostPort: invalid hostPort: {p.host_port}")
        if p.host_ip:
            try:
                ipaddress.IPv4Address(p.host_ip)
            except ValueError:
                raise InvalidArgument(f"{where}.HostIp: {p.host_ip!r} is not an IPv4 address") from None
        key = (p.host_ip or "0.0.0.0", p.host_port, p.protocol)
        if p.host_port and key in seen:
            raise InvalidArgument(f"{where}: Bind for {key[0]}:{p.host_port} failed: port is already allocated")
        seen.add(key)


def interface_names(attachments: list[NetworkAttachment]) -> list[str]:
    """Each attachment's interface in the container: its ``interface``, else ``eth<position>``."""
    return [a.interface or f"eth{i}" for i, a in enumerate(attachments)]


def _validate_networks(spec: ContainerSpec) -> None:
    if spec.networks and spec.network != "none":
        raise InvalidArgument(f"ContainerSpec.Networks: cannot be combined with NetworkMode {spec.network!r}")
    seen = set()
    for i, a in enumerate(spec.networks):
        where = f"ContainerSpec.Networks[{i}]"
        if not a.network_id or a.network_id in seen:
            raise InvalidArgument(f"{where}.NetworkID: missing or duplicate network {a.network_id!r}")
        seen.add(a.network_id)
        try:
            iface = ipaddress.IPv4Interface(a.address)
        except ValueError:
            raise InvalidArgument(f"{where}.Address: {a.address!r} is not IP/PREFIX") from None
        if "/" not in a.address or iface.ip in (iface.network.network_address, iface.network.broadcast_address):
            raise InvalidArgument(f"{where}.Address: {a.address!r} is not a host address with a prefix")
        if a.mac_address and not re.match(r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$", a.mac_address.lower()):
            raise InvalidArgument(f"{where}.MacAddress: {a.mac_address!r} is not a MAC address")
        for alias in a.aliases:
            if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", alias):
                raise InvalidArgument(f"{where}.Aliases: {alias!r} is not a valid DNS name")
    interfaces = interface_names(spec.networks)
    for i, name in enumerate(interfaces):
        if not re.fullmatch(r"eth(0|[1-9][0-9]?)", name) or int(name[3:]) > 15:
            raise InvalidArgument(f"ContainerSpec.Networks[{i}].Interface: {name!r} is not eth0 to eth15")
        if name in interfaces[:i]:
            raise InvalidArgument(f"ContainerSpec.Networks[{i}].Interface: {name} is given twice")
    if len(spec.networks) > 15:
        raise InvalidArgument("ContainerSpec.Networks: at most 15 networks per container")
