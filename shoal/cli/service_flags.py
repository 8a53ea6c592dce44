"""`shoal service create|update` flags → ServiceSpec, the way the docker CLI reads them.

Pure functions: ``build_spec(image, args, opts)`` makes the spec of a new service and
``update_spec(spec, opts)`` applies `service update` flags to a copy of an existing one. ``opts``
maps click parameter names to values; a flag the user did not give is None (or an empty tuple
for repeatable flags), so update changes only what was asked for. Errors are ``FlagError`` with
the docker CLI's wording: ``invalid argument "X" for "--mount" flag: ...``.

Defaults a new service gets (as `docker service inspect` shows them): 1 replica, restart policy
any (on-failure for jobs) with a 5 s delay, update and rollback configs with parallelism 1,
failure action pause, monitor 5 s, order stop-first.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable

from common import genericresource, hostopts, syntax
from common.limits import MAX_REPLICAS
from proto import objects_pb2 as pb
from shoal.cli.flag_errors import FlagError, read_env_files
from shoal.cli.security import apply_to_service, parse_security_opts

ServiceSpec = pb.ServiceSpec

MODES = {"replicated": ServiceSpec.REPLICATED, "global": ServiceSpec.GLOBAL,
         "replicated-job": ServiceSpec.REPLICATED_JOB, "global-job": ServiceSpec.GLOBAL_JOB}
CONDITIONS = {"any": pb.RestartPolicy.ANY, "none": pb.RestartPolicy.NONE, "on-failure": pb.RestartPolicy.ON_FAILURE}
FAILURE_ACTIONS = {"pause": pb.UpdateConfig.PAUSE, "continue": pb.UpdateConfig.CONTINUE,
                   "rollback": pb.UpdateConfig.ROLLBACK}
ORDERS = {"stop-first": pb.UpdateConfig.STOP_FIRST, "start-first": pb.UpdateConfig.START_FIRST}
ENDPOINT_MODES = {"vip": pb.EndpointSpec.VIP, "dnsrr": pb.EndpointSpec.DNSRR}
MOUNT_TYPES = {"bind": pb.Mount.BIND, "volume": pb.Mount.VOLUME, "tmpfs": pb.Mount.TMPFS}
PROTOCOLS = {"tcp": pb.PortConfig.TCP, "udp": pb.PortConfig.UDP}
PUBLISH_MODES = {"ingress": pb.PortConfig.INGRESS, "host": pb.PortConfig.HOST}
TRAFFIC_POLICIES = {"cluster": pb.PortConfig.CLUSTER, "local": pb.PortConfig.LOCAL}
JOB_MODES = (ServiceSpec.REPLICATED_JOB, ServiceSpec.GLOBAL_JOB)

DEFAULT_RESTART_DELAY = 5.0
DEFAULT_UPDATE = pb.UpdateConfig(parallelism=1, failure_action=pb.UpdateConfig.PAUSE, monitor=5.0,
                                 order=pb.UpdateConfig.STOP_FIRST)
_HEALTH_FLAGS = ("health_cmd", "health_interval", "health_timeout", "health_retries", "health_start_period",
                 "health_start_interval")


# ---- scalar parsers --------------------------------------------------------------------------

def _parsed(parse, flag: str, text: str):
    try:
        return parse(text)
    except ValueError as err:
        raise FlagError(flag, text, str(err)) from None


def parse_memory(text: str, flag: str = "--limit-memory") -> int:
    """Bytes from docker's memory syntax: 64M, 1G, 512k, 1.5g, 1048576 (binary multiples)."""
    return _parsed(syntax.parse_bytes, flag, text)


def parse_cpus(text: str, flag: str = "--limit-cpu") -> int:
    """NanoCPUs from a decimal number of CPUs: "0.5" → 500000000."""
    return _parsed(syntax.parse_cpus, flag, text)


def duration(flag: str, text: str) -> float:
    """Seconds from a Go duration ("5s", "1m30s", "500ms")."""
    seconds = _parsed(syntax.parse_duration, flag, text)
    if seconds < 0:
        raise FlagError(flag, text, "must not be negative")
    return seconds


def parse_kv(text: str, flag: str) -> tuple[str, str]:
    """KEY=VALUE or KEY (empty value), as for --label."""
    key, _, value = text.partition("=")
    if not key:
        raise FlagError(flag, text, "expected KEY=VALUE")
    return key, value


def _fields(text: str, flag: str) -> list[tuple[str, str | None]]:
    """The comma-separated key=value fields of --mount, --publish, --network, --secret: a CSV record
    as docker/cli reads it, so a field with a comma is quoted (``"volume-opt=o=size=1m,uid=1"``)."""
    import csv
    out = []
    try:
        fields = next(csv.reader([text], strict=True)) if text else [""]
    except csv.Error as exc:
        raise FlagError(flag, text, f"invalid CSV: {exc}") from None
    for field in fields:
        key, sep, value = field.partition("=")
        key = key.strip().lower()
        if not key:
            raise FlagError(flag, text, "empty field")
        out.append((key, value if sep else None))
    return out


def _bool(flag: str, text: str, value: str | None) -> bool:
    if value is None or value.lower() in ("1", "true"):
        return True
    if value.lower() in ("0", "false"):
        return False
    raise FlagError(flag, text, f"invalid boolean value {value!r}")


PROPAGATIONS = ("private", "rprivate", "shared", "rshared", "slave", "rslave")


def parse_mount(text: str) -> pb.Mount:
    """--mount type=bind|volume|tmpfs,source=,target=,readonly,tmpfs-size=,tmpfs-mode=,
    bind-propagation=,volume-nocopy,volume-label=K=V,volume-driver= (type defaults to volume)."""
    flag = "--mount"
    mount = pb.Mount(type=pb.Mount.VOLUME)
    given = set()
    for key, value in _fields(text, flag):
        given.add(key)
        if key == "type":
            if value not in MOUNT_TYPES:
                raise FlagError(flag, text, f"invalid mount type {value!r}: expected bind, volume or tmpfs")
            mount.type = MOUNT_TYPES[value]
        elif key in ("source", "src"):
            mount.source = value or ""
        elif key in ("target", "destination", "dst"):
            mount.target = value or ""
        elif key in ("readonly", "ro"):
            mount.read_only = _bool(flag, text, value)
        elif key == "tmpfs-size":
            mount.tmpfs_size_bytes = parse_memory(value or "", flag)
        elif key == "tmpfs-mode":
            try:
                mount.tmpfs_mode = int(value or "", 8)
            except ValueError:
                raise FlagError(flag, text, f"invalid value for {key}: {value}") from None
            if not 0 < mount.tmpfs_mode <= 0o7777:
                raise FlagError(flag, text, f"invalid value for {key}: {value}")
        elif key == "bind-propagation":
            if value not in PROPAGATIONS:
                raise FlagError(flag, text, f"invalid value for {key}: {value}")
            mount.bind_propagation = value
        elif key == "volume-nocopy":
            mount.volume_nocopy = _bool(flag, text, value)
        elif key == "volume-label":
            label, sep, label_value = (value or "").partition("=")
            if not label or not sep:
                raise FlagError(flag, text, f"invalid value for {key}: {value}")
            mount.volume_labels[label] = label_value
        elif key == "volume-driver":
            mount.volume_driver = value or ""
        elif key == "volume-opt":
            option, sep, option_value = (value or "").partition("=")
            if not option or not sep:
                raise FlagError(flag, text, f"invalid value for {key}: {value}")
            mount.volume_options[option] = option_value
        else:
            raise FlagError(flag, text, f"unknown field {key!r} (known: type, source, target, readonly, tmpfs-size, "
                                        "tmpfs-mode, bind-propagation, volume-nocopy, volume-label, volume-driver, volume-opt)")
    if not mount.target:
        raise FlagError(flag, text, "target is required")
    kind = next(k for k, v in MOUNT_TYPES.items() if v == mount.type)
    for prefix in ("tmpfs", "bind", "volume"):
        if prefix != kind and any(k.startswith(prefix + "-") for k in given):
            # docker/cli's opts.MountOpt words
            raise FlagError(flag, text, f"cannot mix '{prefix}-*' options with mount type '{kind}'")
    return mount


def _port_number(flag: str, text: str, value: str | None) -> int:
    if not value or not value.isdigit() or not 1 <= int(value) <= 65535:
        raise FlagError(flag, text, f"invalid port {value!r}: ports are 1-65535")
    return int(value)


def parse_port(text: str, flag: str = "--publish") -> pb.PortConfig:
    """-p PUBLISHED:TARGET[/PROTOCOL], TARGET[/PROTOCOL], or
    [mode=host|ingress,]published=P,target=T[,protocol=tcp|udp][,traffic_policy=cluster|local]
    (local: the routing mesh sends a node's published traffic only to its own tasks, which then
    see the client's source address; a node without one does not answer)."""
    port = pb.PortConfig(protocol=pb.PortConfig.TCP, publish_mode=pb.PortConfig.INGRESS)
    if "=" not in text:
        ports, _, protocol = text.partition("/")
        if protocol and protocol not in PROTOCOLS:
            raise FlagError(flag, text, f"invalid protocol {protocol!r}: expected tcp or udp")
        published, sep, target = ports.rpartition(":")
        port.target_port = _port_number(flag, text, target)
        if sep:
            port.published_port = _port_number(flag, text, published)
        port.protocol = PROTOCOLS[protocol or "tcp"]
        return port
    for key, value in _fields(text, flag):
        if key == "published":
            port.published_port = _port_number(flag, text, value)
        elif key == "target":
            port.target_port = _port_number(flag, text, value)
        elif key == "protocol":
            if value not in PROTOCOLS:
                raise FlagError(flag, text, f"invalid protocol {value!r}: expected tcp or udp")
            port.protocol = PROTOCOLS[value]
        elif key == "mode":
            if value not in PUBLISH_MODES:
                raise FlagError(flag, text, f"invalid publish mode {value!r}: expected ingress or host")
            port.publish_mode = PUBLISH_MODES[value]
        elif key == "traffic_policy":
            if value not in TRAFFIC_POLICIES:
                raise FlagError(flag, text, f"invalid traffic_policy {value!r}: expected cluster or local")
            port.traffic_policy = TRAFFIC_POLICIES[value]
        else:
            raise FlagError(flag, text, f"unknown field {key!r} "
                                        "(known: mode, published, target, protocol, traffic_policy)")
    if not port.target_port:
        raise FlagError(flag, text, "target is required")
    if port.traffic_policy == pb.PortConfig.LOCAL and port.publish_mode != pb.PortConfig.INGRESS:
        raise FlagError(flag, text, "traffic_policy=local applies to ingress-mode ports "
                                    "(host-mode ports only ever reach the local task)")
    return port


def parse_network(text: str, flag: str = "--network") -> pb.NetworkAttachmentConfig:
    """--network NAME or name=NAME[,alias=A...]."""
    if "=" not in text:
        return pb.NetworkAttachmentConfig(target=text)
    attachment = pb.NetworkAttachmentConfig()
    for key, value in _fields(text, flag):
        if key in ("name", "target"):
            attachment.target = value or ""
        elif key == "alias":
            attachment.aliases.append(value or "")
        else:
            raise FlagError(flag, text, f"unknown field {key!r} (known: name, alias)")
    if not attachment.target:
        raise FlagError(flag, text, "name is required")
    return attachment


def parse_placement_pref(text: str, flag: str = "--placement-pref") -> pb.PlacementPreference:
    """--placement-pref spread=node.labels.zone."""
    strategy, sep, descriptor = text.partition("=")
    if strategy != "spread" or not sep or not descriptor:
        raise FlagError(flag, text, "expected spread=node.labels.<name>")
    return pb.PlacementPreference(spread_descriptor=descriptor)


def parse_file_reference(text: str, kind: str, flag: str):
    """--secret / --config: NAME or source=NAME[,target=T,uid=,gid=,mode=0444]."""
    cls = pb.SecretReference if kind == "secret" else pb.ConfigReference
    ref = cls()
    name_field = f"{kind}_name"
    if "=" not in text:
        setattr(ref, name_field, text)
        return ref
    for key, value in _fields(text, flag):
        if key in ("source", "src"):
            setattr(ref, name_field, value or "")
        elif key in ("target", "dst"):
            ref.file.name = value or ""
        elif key in ("uid", "gid"):
            setattr(ref.file, key, value or "")
        elif key == "mode":
            ref.file.mode = _parsed(syntax.parse_file_mode, flag, value or "")
        else:
            raise FlagError(flag, text, f"unknown field {key!r} (known: source, target, uid, gid, mode)")
    if not getattr(ref, name_field):
        raise FlagError(flag, text, "source is required")
    return ref


def _choice(flag: str, value: str, choices: dict) -> int:
    if value not in choices:
        raise FlagError(flag, value, f"expected one of {', '.join(choices)}")
    return choices[value]


def _opt(opts: dict, name: str):
    return opts.get(name)


# ---- building a spec -------------------------------------------------------------------------

def build_spec(image: str, args: Iterable[str], opts: dict) -> pb.ServiceSpec:
    """The spec `shoal service create [opts] IMAGE [COMMAND] [ARG...]` asks for."""
    spec = pb.ServiceSpec()
    spec.annotations.name = _opt(opts, "name") or ""
    spec.mode = _choice("--mode", _opt(opts, "mode") or "replicated", MODES)
    if _opt(opts, "replicas") is None and spec.mode in (ServiceSpec.REPLICATED, ServiceSpec.REPLICATED_JOB):
        spec.replicas = 1
    container = spec.task.container
    container.image = image
    container.args.extend(args)
    container.env.extend(read_env_files(_opt(opts, "env_file") or ()))
    container.env.extend(_opt(opts, "env") or ())
    for text in _opt(opts, "label") or ():
        key, value = parse_kv(text, "--label")
        spec.annotations.labels[key] = value
    for text in _opt(opts, "container_label") or ():
        key, value = parse_kv(text, "--container-label")
        container.labels[key] = value
    spec.task.placement.constraints.extend(_opt(opts, "constraint") or ())
    spec.task.placement.preferences.extend(parse_placement_pref(t) for t in _opt(opts, "placement_pref") or ())
    container.mounts.extend(parse_mount(t) for t in _opt(opts, "mount") or ())
    spec.endpoint.ports.extend(parse_port(t) for t in _opt(opts, "publish") or ())
    spec.task.networks.extend(parse_network(t) for t in _opt(opts, "network") or ())
    container.cap_add.extend(_opt(opts, "cap_add") or ())
    container.cap_drop.extend(_opt(opts, "cap_drop") or ())
    container.secrets.extend(parse_file_reference(t, "secret", "--secret") for t in _opt(opts, "secret") or ())
    container.configs.extend(parse_file_reference(t, "config", "--config") for t in _opt(opts, "config") or ())
    job = spec.mode in JOB_MODES
    spec.task.restart.CopyFrom(pb.RestartPolicy(
        condition=pb.RestartPolicy.ON_FAILURE if job else pb.RestartPolicy.ANY, delay=DEFAULT_RESTART_DELAY))
    if not job:
        spec.update.CopyFrom(DEFAULT_UPDATE)
        spec.rollback.CopyFrom(DEFAULT_UPDATE)
    if _opt(opts, "entrypoint") is not None:
        container.command.extend(shlex.split(opts["entrypoint"]))
    container.dns_config.nameservers.extend(parse_dns(t) for t in _opt(opts, "dns") or ())
    container.dns_config.search.extend(parse_dns_search(t) for t in _opt(opts, "dns_search") or ())
    container.dns_config.options.extend(_opt(opts, "dns_option") or ())
    container.hosts.extend(parse_host(t) for t in _opt(opts, "host") or ())
    for text in _opt(opts, "sysctl") or ():
        key, value = parse_sysctl(text)
        container.sysctls[key] = value
    _replace(container.ulimits, _ulimits_merged([], [parse_ulimit(t) for t in _opt(opts, "ulimit") or ()]))
    container.groups.extend(_unique(parse_group(t) for t in _opt(opts, "group") or ()))
    spec.task.resources.reservations.generic.extend(parse_generic_resources(_opt(opts, "generic_resource") or ()))
    _apply_common(spec, opts)
    return spec


def update_spec(spec: pb.ServiceSpec, opts: dict) -> pb.ServiceSpec:
    """A copy of ``spec`` with the `shoal service update` flags in ``opts`` applied."""
    new = pb.ServiceSpec()
    new.CopyFrom(spec)
    container = new.task.container
    if _opt(opts, "image"):
        container.image = opts["image"]
    if _opt(opts, "args") is not None:
        container.ClearField("args")
        container.args.extend(shlex.split(opts["args"]))
    if _opt(opts, "entrypoint") is not None:
        container.ClearField("command")
        container.command.extend(shlex.split(opts["entrypoint"]))
    _update_env(container, _opt(opts, "env_add") or (), _opt(opts, "env_rm") or ())
    _update_map(new.annotations.labels, "--label-add", _opt(opts, "label_add"), _opt(opts, "label_rm"))
    _update_map(container.labels, "--container-label-add", _opt(opts, "container_label_add"),
                _opt(opts, "container_label_rm"))
    placement = new.task.placement
    _update_list(placement.constraints, _opt(opts, "constraint_add"), _opt(opts, "constraint_rm"), lambda c: c)
    prefs_add = [parse_placement_pref(t, "--placement-pref-add") for t in _opt(opts, "placement_pref_add") or ()]
    prefs_rm = {parse_placement_pref(t, "--placement-pref-rm").spread_descriptor
                for t in _opt(opts, "placement_pref_rm") or ()}
    _replace(placement.preferences, [p for p in placement.preferences if p.spread_descriptor not in prefs_rm]
             + [p for p in prefs_add if p.spread_descriptor not in {q.spread_descriptor for q in placement.preferences}])
    mounts_add = [parse_mount(t) for t in _opt(opts, "mount_add") or ()]
    drop = set(_opt(opts, "mount_rm") or ()) | {m.target for m in mounts_add}
    _replace(container.mounts, [m for m in container.mounts if m.target not in drop] + mounts_add)
    _update_ports(new.endpoint, _opt(opts, "publish_add") or (), _opt(opts, "publish_rm") or ())
    networks_add = [parse_network(t, "--network-add") for t in _opt(opts, "network_add") or ()]
    gone = set(_opt(opts, "network_rm") or ())
    kept = [n for n in new.task.networks if not any(n.target == r or n.target.startswith(r) for r in gone)]
    _replace(new.task.networks, kept + [n for n in networks_add if n.target not in {k.target for k in kept}])
    for kind in ("secret", "config"):
        field = container.secrets if kind == "secret" else container.configs
        added = [parse_file_reference(t, kind, f"--{kind}-add") for t in _opt(opts, f"{kind}_add") or ()]
        removed = set(_opt(opts, f"{kind}_rm") or ())
        # As docker: an added reference replaces the one with the same target (default: its name).
        retargeted = {r.file.name or getattr(r, f"{kind}_name") for r in added}
        _replace(field, [r for r in field if getattr(r, f"{kind}_name") not in removed
                         and getattr(r, f"{kind}_id") not in removed
                         and (r.file.name or getattr(r, f"{kind}_name")) not in retargeted] + added)
    for cap in _opt(opts, "cap_add") or ():
        _update_list(container.cap_add, [cap], [], lambda c: c)
        _update_list(container.cap_drop, [], [cap], lambda c: c)
    for cap in _opt(opts, "cap_drop") or ():
        _update_list(container.cap_drop, [cap], [], lambda c: c)
        _update_list(container.cap_add, [], [cap], lambda c: c)
    _update_runtime_options(container, opts)
    removed_groups = set(_opt(opts, "group_rm") or ())
    _replace(container.groups, _unique([g for g in container.groups if g not in removed_groups]
                                       + [parse_group(t, "--group-add") for t in _opt(opts, "group_add") or ()]))
    _update_generic_resources(new.task.resources.reservations, opts)
    if _opt(opts, "force"):
        new.task.force_update += 1
    _apply_common(new, opts)
    return new


def _apply_common(spec: pb.ServiceSpec, opts: dict) -> None:
    """Flags create and update share; each one given replaces what the spec had."""
    container, task = spec.task.container, spec.task
    if _opt(opts, "replicas") is not None:
        if spec.mode not in (ServiceSpec.REPLICATED, ServiceSpec.REPLICATED_JOB):
            mode = next(k for k, v in MODES.items() if v == spec.mode)
            raise FlagError("--replicas", opts["replicas"], f"replicas can only be used with replicated "
                                                             f"or replicated-job mode, not {mode}")
        if opts["replicas"] < 0:
            raise FlagError("--replicas", opts["replicas"], "must not be negative")
        if opts["replicas"] > MAX_REPLICAS:
            raise FlagError("--replicas", opts["replicas"], f"at most {MAX_REPLICAS} replicas per service")
        spec.replicas = opts["replicas"]
    max_replicas = _opt(opts, "max_replicas")
    if max_replicas is None:
        max_replicas = _opt(opts, "max_replicas_alias")     # the hidden --max-replicas
    if max_replicas is not None:
        if not 0 <= max_replicas <= MAX_REPLICAS:
            raise FlagError("--replicas-max-per-node", max_replicas, f"must be between 0 and {MAX_REPLICAS}")
        task.placement.max_replicas = max_replicas
    resources = task.resources
    for flag, field, target in (("limit-cpu", "limit_cpu", resources.limits),
                                ("reserve-cpu", "reserve_cpu", resources.reservations)):
        if _opt(opts, field) is not None:
            target.nano_cpus = parse_cpus(opts[field], f"--{flag}")
    for flag, field, target in (("limit-memory", "limit_memory", resources.limits),
                                ("reserve-memory", "reserve_memory", resources.reservations)):
        if _opt(opts, field) is not None:
            target.memory_bytes = parse_memory(opts[field], f"--{flag}")
    if _opt(opts, "limit_pids") is not None:
        resources.pids_limit = opts["limit_pids"]
    if _opt(opts, "endpoint_mode") is not None:
        spec.endpoint.mode = _choice("--endpoint-mode", opts["endpoint_mode"], ENDPOINT_MODES)
    _apply_restart(task, opts)
    for prefix in ("update", "rollback"):
        _apply_update_config(spec, prefix, opts)
    _apply_health(container, opts)
    if _opt(opts, "stop_grace_period") is not None:
        container.stop_grace_period = duration("--stop-grace-period", opts["stop_grace_period"])
    for field in ("stop_signal", "hostname", "user"):
        if _opt(opts, field) is not None:
            setattr(container, field, opts[field])
    if _opt(opts, "workdir") is not None:
        container.dir = opts["workdir"]
    if _opt(opts, "init") is not None:
        container.init = bool(opts["init"])
    if _opt(opts, "security_opt"):
        apply_to_service(container, parse_security_opts(opts["security_opt"]))
    if _opt(opts, "read_only") is not None:
        container.read_only = bool(opts["read_only"])
    if _opt(opts, "tty") is not None:
        container.tty = bool(opts["tty"])
    _apply_log_driver(task, opts)
    if _opt(opts, "max_concurrent") is not None:
        if spec.mode != ServiceSpec.REPLICATED_JOB:
            raise FlagError("--max-concurrent", opts["max_concurrent"],
                            "max-concurrent can only be used with replicated-job mode")
        if not 0 <= opts["max_concurrent"] <= MAX_REPLICAS:
            raise FlagError("--max-concurrent", opts["max_concurrent"], f"must be between 0 and {MAX_REPLICAS}")
        spec.max_concurrent = opts["max_concurrent"]
    if _opt(opts, "oom_score_adj") is not None:
        value = opts["oom_score_adj"]
        try:
            hostopts.check_oom_score_adj(value)
        except ValueError as err:
            raise FlagError("--oom-score-adj", value, str(err)) from None
        container.oom_score_adj = value


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def parse_group(text: str, flag: str = "--group") -> str:
    """A supplementary group: a name (looked up in the image's /etc/group) or a GID."""
    if not text or ":" in text or any(c.isspace() for c in text):
        raise FlagError(flag, text, "expected a group name or GID")
    return text


def parse_generic_resources(texts, flag: str = "--generic-resource") -> list[pb.GenericResource]:
    """--generic-resource KIND=N (repeatable): what each task reserves of its node's generic
    resources (`shoald --node-generic-resource`)."""
    texts = list(texts)
    try:
        return genericresource.parse_task(texts)
    except ValueError as err:
        raise FlagError(flag, ",".join(texts), f"invalid generic resource specification: {err}") from None


def _update_generic_resources(reservations: pb.Resources, opts: dict) -> None:
    """--generic-resource-rm KIND drops a kind; --generic-resource-add KIND=N sets one."""
    added = parse_generic_resources(_opt(opts, "generic_resource_add") or (), "--generic-resource-add")
    removed = {t.partition("=")[0] for t in _opt(opts, "generic_resource_rm") or ()}
    if not added and not removed:
        return
    replaced = removed | {genericresource.kind_of(r) for r in added}
    _replace(reservations.generic, [r for r in reservations.generic if genericresource.kind_of(r) not in replaced]
             + added)


def _apply_log_driver(task: pb.TaskSpec, opts: dict) -> None:
    """--log-driver NAME and --log-opt KEY=VALUE: the driver given (with only the options given),
    or the options given on the driver the task has (json-file by default)."""
    name, options = _opt(opts, "log_driver"), _opt(opts, "log_opt") or ()
    if name is None and not options:
        return
    if name is not None:
        task.log_driver.CopyFrom(pb.Driver(name=name))
    elif not task.log_driver.name:
        task.log_driver.name = hostopts.LOG_DRIVER
    for text in options:
        key, sep, value = text.partition("=")
        if not key or not sep:
            raise FlagError("--log-opt", text, "expected KEY=VALUE")
        task.log_driver.options[key] = value
    try:
        hostopts.parse_log_options(task.log_driver.name, dict(task.log_driver.options))
    except ValueError as err:
        flag = "--log-driver" if name is not None and name != hostopts.LOG_DRIVER else "--log-opt"
        raise FlagError(flag, name if flag == "--log-driver" else ",".join(options), str(err)) from None


# ---- --dns*, --host, --sysctl, --ulimit ------------------------------------------------------

def parse_dns(text: str, flag: str = "--dns") -> str:
    return _parsed(hostopts.check_ip, flag, text)


def parse_dns_search(text: str, flag: str = "--dns-search") -> str:
    return _parsed(hostopts.check_dns_search, flag, text)


def parse_host(text: str, flag: str = "--host") -> str:
    """``HOST:IP`` -> SwarmKit's hosts entry ``IP HOST``."""
    return _parsed(hostopts.parse_extra_host, flag, text)


def parse_sysctl(text: str, flag: str = "--sysctl") -> tuple[str, str]:
    return _parsed(hostopts.parse_sysctl, flag, text)


def parse_ulimit(text: str, flag: str = "--ulimit") -> pb.ContainerSpec.Ulimit:
    name, soft, hard = _parsed(hostopts.parse_ulimit, flag, text)
    return pb.ContainerSpec.Ulimit(name=name, soft=soft, hard=hard)


def _ulimits_merged(current, added) -> list:
    """Docker keeps one ulimit per name (the last given wins), sorted by name."""
    by_name = {u.name: u for u in current}
    by_name.update({u.name: u for u in added})
    return [by_name[n] for n in sorted(by_name)]


def _host_name(entry: str) -> str:
    return entry.split()[1] if len(entry.split()) > 1 else entry


def _update_runtime_options(container: pb.ContainerSpec, opts: dict) -> None:
    """docker service update's --dns-add/-rm, --dns-search-add/-rm, --dns-option-add/-rm,
    --host-add/-rm, --sysctl-add/-rm and --ulimit-add/-rm."""
    dns = container.dns_config
    for field, flag, parse in (("nameservers", "dns", parse_dns), ("search", "dns_search", parse_dns_search),
                               ("options", "dns_option", None)):
        flag_name = "--" + flag.replace("_", "-")
        add = [parse(t, f"{flag_name}-add") if parse else t for t in _opt(opts, f"{flag}_add") or ()]
        remove = set(_opt(opts, f"{flag}_rm") or ())
        kept = [v for v in getattr(dns, field) if v not in remove]
        _replace(getattr(dns, field), kept + [v for v in add if v not in kept])
    hosts_add = [parse_host(t, "--host-add") for t in _opt(opts, "host_add") or ()]
    # --host-rm takes HOST or HOST:IP, as docker's
    removed = set()
    for text in _opt(opts, "host_rm") or ():
        removed.add(parse_host(text, "--host-rm") if ":" in text or "=" in text else text)
    kept = [h for h in container.hosts if h not in removed and _host_name(h) not in removed]
    _replace(container.hosts, kept + [h for h in hosts_add if h not in kept])
    for text in _opt(opts, "sysctl_rm") or ():
        container.sysctls.pop(text.partition("=")[0], None)
    for text in _opt(opts, "sysctl_add") or ():
        key, value = parse_sysctl(text, "--sysctl-add")
        container.sysctls[key] = value
    gone = {t.partition("=")[0] for t in _opt(opts, "ulimit_rm") or ()}
    added = [parse_ulimit(t, "--ulimit-add") for t in _opt(opts, "ulimit_add") or ()]
    _replace(container.ulimits, _ulimits_merged([u for u in container.ulimits if u.name not in gone], added))


def _apply_restart(task: pb.TaskSpec, opts: dict) -> None:
    given = [f for f in ("restart_condition", "restart_delay", "restart_max_attempts", "restart_window")
             if _opt(opts, f) is not None]
    if not given:
        return
    policy = task.restart
    if not task.HasField("restart"):
        policy.delay = DEFAULT_RESTART_DELAY
    if _opt(opts, "restart_condition") is not None:
        policy.condition = _choice("--restart-condition", opts["restart_condition"], CONDITIONS)
    if _opt(opts, "restart_delay") is not None:
        policy.delay = duration("--restart-delay", opts["restart_delay"])
    if _opt(opts, "restart_max_attempts") is not None:
        if opts["restart_max_attempts"] < 0:
            raise FlagError("--restart-max-attempts", opts["restart_max_attempts"], "must not be negative")
        policy.max_attempts = opts["restart_max_attempts"]
    if _opt(opts, "restart_window") is not None:
        policy.window = duration("--restart-window", opts["restart_window"])


def _apply_update_config(spec: pb.ServiceSpec, prefix: str, opts: dict) -> None:
    names = ("parallelism", "delay", "failure_action", "monitor", "max_failure_ratio", "order")
    given = {n: opts[f"{prefix}_{n}"] for n in names if _opt(opts, f"{prefix}_{n}") is not None}
    if not given:
        return
    config = getattr(spec, prefix)
    if not spec.HasField(prefix):
        config.CopyFrom(DEFAULT_UPDATE)
    flag = f"--{prefix}-"
    if "parallelism" in given:
        if given["parallelism"] < 0:
            raise FlagError(flag + "parallelism", given["parallelism"], "must not be negative")
        config.parallelism = given["parallelism"]
    if "delay" in given:
        config.delay = duration(flag + "delay", given["delay"])
    if "failure_action" in given:
        actions = FAILURE_ACTIONS if prefix == "update" else {k: v for k, v in FAILURE_ACTIONS.items()
                                                              if k != "rollback"}
        config.failure_action = _choice(flag + "failure-action", given["failure_action"], actions)
    if "monitor" in given:
        config.monitor = duration(flag + "monitor", given["monitor"])
    if "max_failure_ratio" in given:
        if not 0 <= given["max_failure_ratio"] <= 1:
            raise FlagError(flag + "max-failure-ratio", given["max_failure_ratio"], "must be between 0 and 1")
        config.max_failure_ratio = given["max_failure_ratio"]
    if "order" in given:
        config.order = _choice(flag + "order", given["order"], ORDERS)


def _apply_health(container: pb.ContainerSpec, opts: dict) -> None:
    given = [f for f in _HEALTH_FLAGS if _opt(opts, f) is not None]
    if _opt(opts, "no_healthcheck"):
        if given:
            raise FlagError("--no-healthcheck", "true", "conflicts with --health-* options")
        container.healthcheck.CopyFrom(pb.HealthConfig(test=["NONE"]))
        return
    if not given:
        return
    health = container.healthcheck
    if list(health.test) == ["NONE"]:
        health.ClearField("test")
    if _opt(opts, "health_cmd") is not None:
        health.ClearField("test")
        if opts["health_cmd"]:
            health.test.extend(["CMD-SHELL", opts["health_cmd"]])
    for flag in ("interval", "timeout", "start_period", "start_interval"):
        if _opt(opts, f"health_{flag}") is not None:
            setattr(health, flag, duration(f"--health-{flag.replace('_', '-')}", opts[f"health_{flag}"]))
    if _opt(opts, "health_retries") is not None:
        if opts["health_retries"] < 0:
            raise FlagError("--health-retries", opts["health_retries"], "must not be negative")
        health.retries = opts["health_retries"]


# ---- list edits for update -------------------------------------------------------------------

def _replace(repeated, items: list) -> None:
    items = [_copy(i) for i in items]
    del repeated[:]
    repeated.extend(items)


def _copy(message):
    if isinstance(message, str):
        return message
    out = type(message)()
    out.CopyFrom(message)
    return out


def _update_list(repeated, add, remove, key) -> None:
    removed = set(remove or ())
    kept = [x for x in repeated if key(x) not in removed]
    for item in add or ():
        if item not in kept:
            kept.append(item)
    _replace(repeated, kept)


def _update_map(mapping, flag: str, add, remove) -> None:
    for key in remove or ():
        mapping.pop(key, None)
    for text in add or ():
        key, value = parse_kv(text, flag)
        mapping[key] = value


def _update_env(container: pb.ContainerSpec, add, remove) -> None:
    drop = set(remove) | {e.partition("=")[0] for e in add}
    _replace(container.env, [e for e in container.env if e.partition("=")[0] not in drop] + list(add))


def _update_ports(endpoint: pb.EndpointSpec, add, remove) -> None:
    """--publish-rm TARGET[/PROTOCOL] (or a full port spec) drops the ports with that target;
    --publish-add replaces a port with the same published port and protocol."""
    drop = []
    for text in remove:
        port = parse_port(text, "--publish-rm")
        explicit_protocol = "/" in text or "protocol=" in text
        drop.append((port.target_port, port.protocol if explicit_protocol else None))
    added = [parse_port(t, "--publish-add") for t in add]
    added_keys = {(p.published_port, p.protocol) for p in added if p.published_port}

    def dropped(p):
        if (p.published_port, p.protocol) in added_keys:
            return True
        return any(p.target_port == target and (protocol is None or p.protocol == protocol)
                   for target, protocol in drop)

    _replace(endpoint.ports, [p for p in endpoint.ports if not dropped(p)] + added)
