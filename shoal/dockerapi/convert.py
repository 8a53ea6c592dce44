"""Docker Engine API JSON <-> Shoal's protobuf objects: request bodies and query strings in, store
objects out. Pure functions; every refusal is a BadRequest naming the field and what was wrong.

Output shapes are the ones `shoal ... inspect` prints (shoal.dockerjson, shared with the CLI), so the
docker CLI and `shoal --format` see the same documents.
"""
from __future__ import annotations

import base64
import json
from typing import Any

from proto import objects_pb2 as pb
from shoal.dockerjson import (container_status, network_inspect, node_inspect, rfc3339, secret_inspect,
                              service_inspect, spec_dict)
from shoal.dockerjson import unix_seconds as _unix

__all__ = ["BadRequest", "parse_bool", "parse_filters", "parse_service_spec", "service_json", "task_json",
           "node_json", "network_json", "secret_json", "config_json", "swarm_json", "parse_node_spec",
           "parse_network_create", "parse_secret_spec", "filter_map"]

# Go's json decoder reads keys case-insensitively; these are the names Shoal reads.
_FALSE = {"", "0", "no", "false", "none"}


class BadRequest(ValueError):
    """400: the request is malformed (the message names the field)."""


class Unsupported(ValueError):
    """501: the request asks for something Shoal does not do (the message names it)."""


# ---- query strings ----------------------------------------------------------------------------

def parse_bool(value: str | None) -> bool:
    """The daemon's boolean query values: false only for "", 0, no, false, none (any case)."""
    return value is not None and value.strip().lower() not in _FALSE


def parse_filters(text: str | None) -> dict[str, list[str]]:
    """The ``filters`` query parameter in either shape: {"k":{"v":true}} (CLI) or {"k":["v"]} (SDK)."""
    if not text:
        return {}
    try:
        raw = json.loads(text)
    except ValueError as err:
        raise BadRequest(f"invalid filter: {err}") from None
    if not isinstance(raw, dict):
        raise BadRequest("invalid filter: expected a JSON object")
    out: dict[str, list[str]] = {}
    for key, value in raw.items():
        if isinstance(value, dict):
            out[key] = [str(v) for v, on in value.items() if on]
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            out[key] = list(value)
        elif isinstance(value, str):
            out[key] = [value]
        else:
            raise BadRequest(f"invalid filter '{key}': expected a map or a list of strings")
    return out


def filter_map(filters: dict[str, list[str]], allowed: tuple[str, ...]) -> dict[str, str]:
    """The ControlAPI's filter map (alternatives joined by commas); an unknown key is Docker's 400."""
    out = {}
    for key, values in filters.items():
        if key not in allowed:
            raise BadRequest(f"invalid filter '{key}'")
        if values:
            out[key] = ",".join(values)
    return out


# ---- reading request bodies -------------------------------------------------------------------

class Obj:
    """A JSON object read case-insensitively, remembering which keys were read so that anything
    else that carries a value can be refused by name."""

    def __init__(self, raw: Any, path: str):
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise BadRequest(f"{path}: expected an object, got {_type(raw)}")
        self.raw = raw
        self.path = path
        self._by_lower = {k.lower(): k for k in raw}
        self._read: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self._read.add(key.lower())
        real = self._by_lower.get(key.lower())
        return default if real is None or self.raw[real] is None else self.raw[real]

    def has(self, key: str) -> bool:
        self._read.add(key.lower())
        real = self._by_lower.get(key.lower())
        return real is not None and self.raw[real] is not None

    def sub(self, key: str) -> Obj:
        return Obj(self.get(key), f"{self.path}.{key}")

    def str(self, key: str) -> str:
        value = self.get(key, "")
        if not isinstance(value, str):
            raise BadRequest(f"{self.path}.{key}: expected a string, got {_type(value)}")
        return value

    def int(self, key: str, minimum: int | None = 0) -> int:
        value = self.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int):
            raise BadRequest(f"{self.path}.{key}: expected an integer, got {_type(value)}")
        if minimum is not None and value < minimum:
            raise BadRequest(f"{self.path}.{key}: must be at least {minimum}, got {value}")
        return value

    def bool(self, key: str) -> bool:
        value = self.get(key, False)
        if not isinstance(value, bool):
            raise BadRequest(f"{self.path}.{key}: expected a boolean, got {_type(value)}")
        return value

    def strings(self, key: str) -> list[str]:
        value = self.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise BadRequest(f"{self.path}.{key}: expected a list of strings, got {_type(value)}")
        return value

    def string_map(self, key: str) -> dict[str, str]:
        value = self.get(key, {})
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise BadRequest(f"{self.path}.{key}: expected a map of strings, got {_type(value)}")
        return value

    def objects(self, key: str) -> list[Obj]:
        value = self.get(key, [])
        if not isinstance(value, list):
            raise BadRequest(f"{self.path}.{key}: expected a list, got {_type(value)}")
        return [Obj(v, f"{self.path}.{key}[{i}]") for i, v in enumerate(value)]

    def seconds(self, key: str) -> float:
        """A duration in integer nanoseconds, as seconds."""
        return self.int(key) / 1e9

    def done(self, ignored: tuple[str, ...] = ()) -> None:
        """Refuse (501) any key not read that carries a value: Shoal does not do it."""
        for real in self.raw:
            if real.lower() in self._read or real.lower() in {i.lower() for i in ignored}:
                continue
            if _empty(self.raw[real]):
                continue
            raise Unsupported(f"{self.path}.{real} is not supported by Shoal")


def _empty(value: Any) -> bool:
    if isinstance(value, dict):
        return all(_empty(v) for v in value.values())
    if isinstance(value, list):
        return not value
    return value in (None, "", 0, False)


def _type(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "boolean", int: "number", float: "number", str: "string", list: "array",
            dict: "object"}.get(type(value), type(value).__name__)


def _enum(obj: Obj, key: str, names: dict[str, int], default: int = 0) -> int:
    value = obj.str(key)
    if not value:
        return default
    if value.lower() not in names:
        raise BadRequest(f"{obj.path}.{key}: invalid value {value!r}: expected one of {', '.join(names)}")
    return names[value.lower()]


def parse_network_connect(raw: Any) -> tuple[str, list[str], str]:
    """POST /networks/{id}/connect's body -> (container, aliases, requested IPv4 address)."""
    body = Obj(raw, "NetworkConnectRequest")
    container = body.str("Container")
    if not container:
        raise BadRequest("NetworkConnectRequest.Container must name a container")
    endpoint = body.sub("EndpointConfig")
    aliases = endpoint.strings("Aliases")
    ipam = endpoint.sub("IPAMConfig")
    address = ipam.str("IPv4Address")
    ipam.done()
    endpoint.done(ignored=("NetworkID", "EndpointID", "DNSNames"))   # outputs, not requests
    body.done()
    return container, aliases, address


def parse_network_disconnect(raw: Any) -> tuple[str, bool]:
    """POST /networks/{id}/disconnect's body -> (container, force)."""
    body = Obj(raw, "NetworkDisconnect")
    container = body.str("Container")
    if not container:
        raise BadRequest("NetworkDisconnect.Container must name a container")
    force = body.bool("Force")
    body.done()
    return container, force


def body_object(raw: bytes, what: str) -> Any:
    """The parsed JSON body (``{}`` when empty); malformed JSON is a BadRequest."""
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except ValueError as err:
        raise BadRequest(f"invalid JSON in the {what}: {err}") from None


# ---- services ----------------------------------------------------------------------------------

def _resources(obj: Obj, into: pb.Resources) -> None:
    into.nano_cpus = obj.int("NanoCPUs")
    into.memory_bytes = obj.int("MemoryBytes")
    for g in obj.objects("GenericResources"):
        given = [k for k in ("DiscreteResourceSpec", "NamedResourceSpec") if g.has(k)]
        if len(given) != 1:
            raise BadRequest(f"{g.path}: give one of DiscreteResourceSpec or NamedResourceSpec")
        r = g.sub(given[0])
        if given[0] == "DiscreteResourceSpec":
            into.generic.add().discrete_resource_spec.CopyFrom(
                pb.GenericResource.DiscreteResource(kind=r.str("Kind"), value=r.int("Value")))
        else:
            into.generic.add().named_resource_spec.CopyFrom(
                pb.GenericResource.NamedResource(kind=r.str("Kind"), value=r.str("Value")))
        r.done()
        g.done()
    obj.done()


def _file_target(obj: Obj, into: pb.FileTarget) -> None:
    into.name = obj.str("Name")
    into.uid = obj.str("UID")
    into.gid = obj.str("GID")
    into.mode = obj.int("Mode")
    obj.done()


def _container(c: Obj, into: pb.ContainerSpec) -> None:
    into.image = c.str("Image")
    if not into.image:
        raise BadRequest("ContainerSpec: Image must not be empty")
    into.command.extend(c.strings("Command"))
    into.args.extend(c.strings("Args"))
    into.env.extend(c.strings("Env"))
    into.dir = c.str("Dir")
    into.user = c.str("User")
    into.hostname = c.str("Hostname")
    into.labels.update(c.string_map("Labels"))
    types = {"bind": pb.Mount.BIND, "volume": pb.Mount.VOLUME, "tmpfs": pb.Mount.TMPFS}
    for m in c.objects("Mounts"):
        mount = into.mounts.add(type=_enum(m, "Type", types, pb.Mount.VOLUME), source=m.str("Source"),
                                target=m.str("Target"), read_only=m.bool("ReadOnly"))
        tmpfs = m.sub("TmpfsOptions")
        mount.tmpfs_size_bytes = tmpfs.int("SizeBytes")
        mount.tmpfs_mode = tmpfs.int("Mode")
        tmpfs.done()
        bind = m.sub("BindOptions")
        mount.bind_propagation = bind.str("Propagation")
        bind.done()
        volume = m.sub("VolumeOptions")
        mount.volume_nocopy = volume.bool("NoCopy")
        mount.volume_labels.update(volume.string_map("Labels"))
        driver = volume.sub("DriverConfig")
        mount.volume_driver = driver.str("Name")
        mount.volume_options.update(driver.string_map("Options"))
        driver.done()
        volume.done()
        m.done(ignored=("Consistency",))
    into.stop_grace_period = c.seconds("StopGracePeriod")
    into.stop_signal = c.str("StopSignal")
    if c.has("Healthcheck"):
        h = c.sub("Healthcheck")
        into.healthcheck.test.extend(h.strings("Test"))
        into.healthcheck.interval = h.seconds("Interval")
        into.healthcheck.timeout = h.seconds("Timeout")
        into.healthcheck.start_period = h.seconds("StartPeriod")
        into.healthcheck.retries = h.int("Retries")
        into.healthcheck.start_interval = h.seconds("StartInterval")
        h.done()
    into.cap_add.extend(c.strings("CapabilityAdd"))
    into.cap_drop.extend(c.strings("CapabilityDrop"))
    into.init = c.bool("Init")
    for kind, refs in (("Secret", into.secrets), ("Config", into.configs)):
        for r in c.objects(f"{kind}s"):
            ref = refs.add()
            setattr(ref, f"{kind.lower()}_id", r.str(f"{kind}ID"))
            setattr(ref, f"{kind.lower()}_name", r.str(f"{kind}Name"))
            _file_target(r.sub("File"), ref.file)
            r.done(ignored=("Runtime",))
    if c.has("Privileges"):
        p = c.sub("Privileges")
        seccomp = p.sub("Seccomp")
        modes = {"default": 0, "unconfined": 1, "custom": 2}
        into.privileges.seccomp.mode = _enum(seccomp, "Mode", modes)  # type: ignore[assignment]
        profile = seccomp.str("Profile")
        if profile:
            try:
                into.privileges.seccomp.profile = base64.b64decode(profile, validate=True)
            except ValueError:   # binascii.Error, or a character outside ASCII
                raise BadRequest(f"{seccomp.path}.Profile: not base64") from None
        seccomp.done()
        into.privileges.no_new_privileges = p.bool("NoNewPrivileges")
        p.done()
    isolation = c.str("Isolation")
    if isolation not in ("", "default"):
        raise Unsupported(f"{c.path}.Isolation {isolation!r} is not supported by Shoal")
    into.groups.extend(c.strings("Groups"))
    into.tty = c.bool("TTY")
    into.open_stdin = c.bool("OpenStdin")
    into.read_only = c.bool("ReadOnly")
    into.hosts.extend(c.strings("Hosts"))
    into.sysctls.update(c.string_map("Sysctls"))
    into.oom_score_adj = c.int("OomScoreAdj", minimum=None)
    if not _empty(c.get("DNSConfig")):
        d = c.sub("DNSConfig")
        into.dns_config.nameservers.extend(d.strings("Nameservers"))
        into.dns_config.search.extend(d.strings("Search"))
        into.dns_config.options.extend(d.strings("Options"))
        d.done()
    for u in c.objects("Ulimits"):
        into.ulimits.add(name=u.str("Name"), soft=u.int("Soft", minimum=None), hard=u.int("Hard", minimum=None))
        u.done()
    # anything else with a value (Privileges.CredentialSpec...) is refused by done()
    c.done()


def _update_config(obj: Obj, into: pb.UpdateConfig) -> None:
    into.parallelism = obj.int("Parallelism")
    into.delay = obj.seconds("Delay")
    into.failure_action = _enum(obj, "FailureAction", {"pause": 0, "continue": 1, "rollback": 2})  # type: ignore[assignment]
    into.monitor = obj.seconds("Monitor")
    ratio = obj.get("MaxFailureRatio", 0)
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)):
        raise BadRequest(f"{obj.path}.MaxFailureRatio: expected a number, got {_type(ratio)}")
    into.max_failure_ratio = float(ratio)
    into.order = _enum(obj, "Order", {"stop-first": 0, "start-first": 1})  # type: ignore[assignment]
    obj.done()


def _ports(items: list[Obj], into) -> None:
    for p in items:
        into.add(name=p.str("Name"),
                 protocol=_enum(p, "Protocol", {"tcp": pb.PortConfig.TCP, "udp": pb.PortConfig.UDP}),
                 target_port=p.int("TargetPort"), published_port=p.int("PublishedPort"),
                 publish_mode=_enum(p, "PublishMode", {"ingress": pb.PortConfig.INGRESS, "host": pb.PortConfig.HOST}))
        if p.int("TargetPort") > 65535 or p.int("PublishedPort") > 65535:
            raise BadRequest(f"{p.path}: a port must be at most 65535")
        policy = p.str("TrafficPolicy")   # Shoal's extension, as `service inspect` shows it
        if policy == "local":
            into[-1].traffic_policy = pb.PortConfig.LOCAL
        p.done()


def parse_service_spec(raw: Any) -> pb.ServiceSpec:
    """A Docker ServiceSpec (the body of POST /services/create and /services/{id}/update)."""
    spec = pb.ServiceSpec()
    s = Obj(raw, "Spec")
    spec.annotations.name = s.str("Name")
    spec.annotations.labels.update(s.string_map("Labels"))
    t = s.sub("TaskTemplate")
    _container(t.sub("ContainerSpec"), spec.task.container)
    r = t.sub("Resources")
    _resources(r.sub("Limits"), spec.task.resources.limits)
    spec.task.resources.pids_limit = r.sub("Limits").int("Pids")
    _resources(r.sub("Reservations"), spec.task.resources.reservations)
    r.done()
    if t.has("RestartPolicy"):
        rp = t.sub("RestartPolicy")
        spec.task.restart.condition = _enum(  # type: ignore[assignment]
            rp, "Condition", {"any": 0, "none": 1, "on-failure": 2})
        spec.task.restart.delay = rp.seconds("Delay") if rp.has("Delay") else 5.0
        spec.task.restart.max_attempts = rp.int("MaxAttempts")
        spec.task.restart.window = rp.seconds("Window")
        rp.done()
    pl = t.sub("Placement")
    spec.task.placement.constraints.extend(pl.strings("Constraints"))
    for pref in pl.objects("Preferences"):
        spread = pref.sub("Spread")
        spec.task.placement.preferences.add(spread_descriptor=spread.str("SpreadDescriptor"))
        spread.done()
        pref.done()
    spec.task.placement.max_replicas = pl.int("MaxReplicas")
    pl.get("Platforms")   # the image's platforms from a registry lookup: every Shoal node is linux
    pl.done()
    nets = t.objects("Networks") or s.objects("Networks")   # Spec.Networks: the deprecated place
    for n in nets:
        target = n.str("Target")
        if not target:
            raise BadRequest(f"{n.path}.Target must not be empty")
        spec.task.networks.add(target=target, aliases=n.strings("Aliases"))
        n.done(ignored=("DriverOpts",))
    spec.task.force_update = t.int("ForceUpdate")
    runtime = t.str("Runtime")
    if runtime not in ("", "container"):
        raise Unsupported(f"TaskTemplate.Runtime {runtime!r} is not supported by Shoal")
    if t.has("LogDriver") and not _empty(t.get("LogDriver")):
        ld = t.sub("LogDriver")
        spec.task.log_driver.name = ld.str("Name")
        spec.task.log_driver.options.update(ld.string_map("Options"))
        ld.done()
    t.done(ignored=("LogDriver",))
    _mode(s.sub("Mode"), spec)
    if s.has("UpdateConfig"):
        _update_config(s.sub("UpdateConfig"), spec.update)
    if s.has("RollbackConfig"):
        _update_config(s.sub("RollbackConfig"), spec.rollback)
    e = s.sub("EndpointSpec")
    spec.endpoint.mode = _enum(e, "Mode", {"vip": pb.EndpointSpec.VIP, "dnsrr": pb.EndpointSpec.DNSRR})  # type: ignore[assignment]
    _ports(e.objects("Ports"), spec.endpoint.ports)
    e.done()
    s.done()
    return spec


def _mode(m: Obj, spec: pb.ServiceSpec) -> None:
    """Replicated (the default, 1 replica when not given), Global, ReplicatedJob, GlobalJob."""
    given = [k for k in ("Replicated", "Global", "ReplicatedJob", "GlobalJob") if m.has(k)]
    if len(given) > 1:
        raise BadRequest(f"Spec.Mode: only one of {', '.join(given)} may be given")
    kind = given[0] if given else "Replicated"
    if kind == "Replicated":
        r = m.sub("Replicated")
        spec.mode = pb.ServiceSpec.REPLICATED
        spec.replicas = r.int("Replicas") if r.has("Replicas") else 1
        r.done()
    elif kind == "Global":
        spec.mode = pb.ServiceSpec.GLOBAL
        m.sub("Global").done()
    elif kind == "ReplicatedJob":
        j = m.sub("ReplicatedJob")
        spec.mode = pb.ServiceSpec.REPLICATED_JOB
        spec.replicas = j.int("TotalCompletions") if j.has("TotalCompletions") else 1
        spec.max_concurrent = j.int("MaxConcurrent")
        j.done()
    else:
        spec.mode = pb.ServiceSpec.GLOBAL_JOB
        m.sub("GlobalJob").done()
    m.done()


def service_json(service: pb.Service, status: Any = None) -> dict[str, Any]:
    out = service_inspect(service)
    if status is not None:
        out["ServiceStatus"] = {"RunningTasks": status.running_tasks, "DesiredTasks": status.desired_tasks,
                                "CompletedTasks": status.completed_tasks}
    return out


# ---- tasks -------------------------------------------------------------------------------------

def _state(state: int) -> str:
    return pb.TaskState.Name(state).lower()


def task_json(task: pb.Task, service: pb.Service | None) -> dict[str, Any]:
    """A Task in Docker's shape; its Spec comes from the service spec it was made from (Shoal's
    tasks keep the TaskSpec, shown through the same conversion as the service's)."""
    template = spec_dict(pb.ServiceSpec(task=task.spec))["TaskTemplate"]
    out: dict[str, Any] = {
        "ID": task.id, "Version": {"Index": task.meta.version},
        "CreatedAt": rfc3339(task.meta.created_at), "UpdatedAt": rfc3339(task.meta.updated_at),
        "Labels": dict(task.annotations.labels), "Spec": template, "ServiceID": task.service_id,
        "NodeID": task.node_id,
        "Status": {"Timestamp": rfc3339(task.status.timestamp or task.meta.updated_at),
                   "State": _state(task.status.state), "Message": task.status.message},
        "DesiredState": _state(task.desired_state),
    }
    if service is None or service.spec.mode in (pb.ServiceSpec.REPLICATED, pb.ServiceSpec.REPLICATED_JOB):
        out["Slot"] = task.slot
    if task.status.err:
        out["Status"]["Err"] = task.status.err
    if task.status.container_id:
        out["Status"]["ContainerStatus"] = {"ContainerID": task.status.container_id, "PID": task.status.pid,
                                            "ExitCode": task.status.exit_code}
    if task.networks:
        out["NetworksAttachments"] = [{"Network": {"ID": n.network_id}, "Addresses": list(n.addresses)}
                                      for n in task.networks]
    return out


# ---- nodes, networks, secrets, configs, swarm --------------------------------------------------

def node_json(node: pb.Node) -> dict[str, Any]:
    return node_inspect(node)


def parse_node_spec(raw: Any) -> pb.NodeSpec:
    s = Obj(raw, "NodeSpec")
    spec = pb.NodeSpec()
    spec.annotations.name = s.str("Name")
    spec.annotations.labels.update(s.string_map("Labels"))
    spec.desired_role = _enum(s, "Role", {"worker": pb.WORKER, "manager": pb.MANAGER})  # type: ignore[assignment]
    spec.availability = _enum(s, "Availability", {"active": 0, "pause": 1, "drain": 2})  # type: ignore[assignment]
    s.done()
    return spec


def network_json(net: pb.Network) -> dict[str, Any]:
    return network_inspect(net)


def parse_network_create(raw: Any) -> pb.NetworkSpec:
    n = Obj(raw, "NetworkCreateRequest")
    spec = pb.NetworkSpec()
    spec.annotations.name = n.str("Name")
    if not spec.annotations.name:
        raise BadRequest("network name must not be empty")
    spec.annotations.labels.update(n.string_map("Labels"))
    spec.driver = n.str("Driver") or "overlay"
    if spec.driver != "overlay":
        raise Unsupported(f"network driver {spec.driver!r} is not supported by Shoal: only overlay networks")
    spec.driver_opts.update(n.string_map("Options"))
    spec.attachable = n.bool("Attachable")
    spec.internal = n.bool("Internal")
    spec.ingress = n.bool("Ingress")
    ipam = n.sub("IPAM")
    if ipam.str("Driver") not in ("", "default"):
        raise Unsupported(f"IPAM driver {ipam.str('Driver')!r} is not supported by Shoal")
    for c in ipam.objects("Config"):
        spec.ipam.add(subnet=c.str("Subnet"), gateway=c.str("Gateway"))
        c.done()
    ipam.done()
    scope = n.str("Scope")
    if scope not in ("", "swarm"):
        raise Unsupported(f"network scope {scope!r} is not supported by Shoal: networks are swarm-scoped")
    n.get("CheckDuplicate")   # clients below API 1.44 send it; names are always unique
    if n.bool("EnableIPv6"):
        raise Unsupported("EnableIPv6 is not supported by Shoal")
    n.done()
    return spec


def parse_secret_spec(raw: Any, what: str) -> tuple[str, dict[str, str], bytes, str]:
    s = Obj(raw, f"{what}Spec")
    name = s.str("Name")
    labels = s.string_map("Labels")
    data_text = s.str("Data")
    try:
        data = base64.b64decode(data_text, validate=True)
    except ValueError:   # binascii.Error, or a character outside ASCII (found by the fuzz test)
        raise BadRequest(f"{what}Spec.Data: not base64") from None
    templating = ""
    if not _empty(s.get("Templating")):
        t = s.sub("Templating")
        templating = t.str("Name")
        t.done()
    s.done()
    return name, labels, data, templating


def secret_json(secret: pb.Secret) -> dict[str, Any]:
    return secret_inspect(secret, shows_data=False)


def config_json(config: pb.Config) -> dict[str, Any]:
    return secret_inspect(config, shows_data=True)


def root_tls_info(ca_pem: bytes) -> dict[str, str]:
    """The swarm's TLSInfo: the root's subject and public key as nodes report their issuer's
    (`docker swarm ca --rotate` waits until every node's TLSInfo equals this one)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    out = {"TrustRoot": ca_pem.decode(errors="replace")}
    try:
        root = x509.load_pem_x509_certificate(ca_pem)
    except ValueError:
        return out
    out["CertIssuerSubject"] = base64.b64encode(root.subject.public_bytes()).decode()
    out["CertIssuerPublicKey"] = base64.b64encode(root.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).decode()
    return out


def swarm_json(cluster: pb.Cluster) -> dict[str, Any]:
    spec = cluster.spec
    return {
        "ID": cluster.id, "Version": {"Index": cluster.meta.version},
        "CreatedAt": rfc3339(cluster.meta.created_at), "UpdatedAt": rfc3339(cluster.meta.updated_at),
        "Spec": {"Name": spec.annotations.name or "default", "Labels": dict(spec.annotations.labels),
                 "Orchestration": {"TaskHistoryRetentionLimit": spec.orchestration.task_history_retention_limit},
                 "Raft": {"SnapshotInterval": spec.raft.snapshot_interval, "ElectionTick": spec.raft.election_tick,
                          "HeartbeatTick": spec.raft.heartbeat_tick},
                 "Dispatcher": {"HeartbeatPeriod": int(round(spec.dispatcher.heartbeat_period * 1e9))},
                 "CAConfig": {"NodeCertExpiry": int(round(spec.ca_config.node_cert_expiry * 1e9)),
                              "ForceRotate": spec.ca_config.force_rotate},
                 "TaskDefaults": {},
                 "EncryptionConfig": {"AutoLockManagers": spec.encryption_config.auto_lock_managers}},
        "TLSInfo": root_tls_info(cluster.root_ca.ca_cert),
        "RootRotationInProgress": bool(cluster.root_ca.root_rotation.ca_cert),
        "DefaultAddrPool": list(spec.default_addr_pool), "SubnetSize": spec.subnet_size,
        "DataPathPort": 4789,
        "JoinTokens": {"Worker": cluster.root_ca.join_tokens.worker, "Manager": cluster.root_ca.join_tokens.manager},
    }


# ---- containers (shoal-runtimed's ContainerInfo) -------------------------------------------------

# `docker ps --filter`: the keys served, and Docker's others (refused by name, not ignored).
CONTAINER_FILTERS = ("id", "name", "label", "status", "exited", "is-task")
_CONTAINER_FILTERS_NOT_SERVED = ("ancestor", "before", "since", "volume", "network", "publish", "expose", "health",
                                 "isolation")
_STATUSES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")


def check_container_filters(filters: dict[str, list[str]]) -> None:
    for key, values in filters.items():
        if key in _CONTAINER_FILTERS_NOT_SERVED:
            raise Unsupported(f"container filter '{key}' is not supported by Shoal's Docker API")
        if key not in CONTAINER_FILTERS:
            raise BadRequest(f"invalid filter '{key}'")
        if key == "status" and any(v not in _STATUSES for v in values):
            bad = next(v for v in values if v not in _STATUSES)
            raise BadRequest(f"invalid filter 'status={bad}'")
        if key == "exited" and any(not v.lstrip("-").isdigit() for v in values):
            raise BadRequest(f"invalid filter 'exited={values[0]}'")


def container_matches(c: Any, filters: dict[str, list[str]]) -> bool:
    """Docker's semantics: alternatives of one key are ORed, keys ANDed, labels all required."""
    labels = c.config.labels or {}
    checks = {
        "id": lambda v: c.id.startswith(v),
        "name": lambda v: v.lstrip("/") in c.name,
        "status": lambda v: c.state.status == v,
        "exited": lambda v: c.state.status == "exited" and c.state.exit_code == int(v),
        "is-task": lambda v: ("com.docker.swarm.task.id" in labels) == parse_bool(v),
    }
    for key, values in filters.items():
        if not values:
            continue
        if key == "label":
            if not all(k in labels and (not sep or labels[k] == val)
                       for k, sep, val in (v.partition("=") for v in values)):
                return False
        elif not any(checks[key](v) for v in values):
            return False
    return True


def container_summary(c: Any, now: float) -> dict[str, Any]:
    """`GET /containers/json`'s element for one container (Created in unix seconds, Status as text)."""
    st = c.state
    status = container_status(st, now)
    cmd = list(c.config.entrypoint or []) + list(c.config.command or [])
    return {"Id": c.id, "Names": [f"/{c.name}"], "Image": c.image, "ImageID": c.image_id, "Command": " ".join(cmd),
            "Created": _unix(c.created), "State": "restarting" if st.restarting else st.status, "Status": status,
            "Ports": [{"IP": p.host_ip or "0.0.0.0", "PrivatePort": p.container_port, "PublicPort": p.host_port,
                       "Type": p.protocol} for p in c.config.ports],
            "Labels": dict(c.config.labels or {}), "Mounts": []}


def container_inspect(c: Any) -> dict[str, Any]:
    """`GET /containers/{id}/json`: identity and State from the runtime (Docker's names already),
    Config rebuilt with Docker's types (Go's decoder refuses a float StopTimeout, say)."""
    from agent_runtime.spec import to_json
    spec = c.config
    state = to_json(c.state)
    config = {"Hostname": spec.hostname, "User": spec.user, "Env": list(spec.env), "Cmd": list(spec.command),
              "Entrypoint": list(spec.entrypoint) if spec.entrypoint else None, "Image": c.image,
              "WorkingDir": spec.workdir, "Labels": dict(spec.labels), "Tty": spec.tty, "OpenStdin": spec.open_stdin,
              "StopSignal": spec.stop_signal, "StopTimeout": int(round(spec.stop_grace_period_s))}
    return {"Id": c.id, "Name": f"/{c.name}", "Created": c.created, "Image": c.image_id, "State": state,
            "Config": config, "LogPath": c.log_path, "Driver": "shoal",
            "HostConfig": {"NetworkMode": spec.network, "Privileged": spec.privileged, "Init": spec.init,
                           "PortBindings": _port_map(spec.ports)},
            "NetworkSettings": {"Ports": _port_map(spec.ports, runtime=True)}}


def _port_map(ports: list, runtime: bool = False) -> dict[str, list[dict[str, str]]]:
    """Docker's ``{"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}`` (HostConfig.PortBindings,
    NetworkSettings.Ports: the latter with the address every-address bindings listen on)."""
    out: dict[str, list[dict[str, str]]] = {}
    for p in ports:
        out.setdefault(f"{p.container_port}/{p.protocol}", []).append(
            {"HostIp": p.host_ip or ("0.0.0.0" if runtime else ""), "HostPort": str(p.host_port)})
    return out
