"""Validation of one service of a (merged) stack file into a ServiceDef.

Reads the swarm-relevant Compose keys; known Compose keys that Shoal stacks do not support are
reported with what to use instead, unknown keys with a "did you mean". References to top-level
networks, volumes, secrets, configs and other services are checked here.
"""

from __future__ import annotations

import os
import re

from shoal.stack.checker import Checker, Declared, describe, join
from shoal.stack.deploy import read_deploy
from shoal.stack.mounts import read_mounts
from shoal.stack.model import (
    DependencySpec, FileRef, HealthcheckSpec, PortSpec, ServiceDef, ServiceNetwork,
)
from common import hostopts
from common.syntax import parse_duration, parse_env_file, parse_file_mode
from shoal.stack.syntax import parse_port_short
from shoal.stack.yamltree import Node

SERVICE_KEYS = {
    "image", "command", "entrypoint", "environment", "env_file", "ports", "networks", "volumes",
    "tmpfs", "deploy", "healthcheck", "hostname", "user", "working_dir", "stop_grace_period",
    "stop_signal", "labels", "cap_add", "cap_drop", "secrets", "configs", "depends_on", "init",
    "restart", "logging", "dns", "dns_search", "dns_opt", "extra_hosts", "sysctls", "ulimits", "read_only",
    "oom_score_adj", "tty", "stdin_open", "group_add",
}
# docker stack deploy warns "Ignoring unsupported options: ..." about these and deploys without
# them (docker/cli compose types.UnsupportedProperties); `restart` is also converted.
IGNORED_SERVICE_KEYS = (
    "build", "cgroupns_mode", "cgroup_parent", "devices", "domainname", "external_links", "ipc", "links",
    "mac_address", "network_mode", "pid", "privileged", "restart", "security_opt", "shm_size", "userns_mode",
)
# ... and "Ignoring deprecated options" about these (types.DeprecatedProperties), with its reasons.
DEPRECATED_SERVICE_KEYS = {
    "container_name": "Setting the container name is not supported.",
    "expose": "Exposing ports is unnecessary - services on the same network can access each other's "
              "containers on any port.",
}
_NOT_YET = "not supported by Shoal yet (the runtime does not apply it; docker stack deploy does)"
UNSUPPORTED_SERVICE_KEYS = {
    # docker stack deploy refuses these too (types.ForbiddenProperties), with these reasons
    "extends": "Support for `extends` is not implemented yet.",
    "volume_driver": "Instead of setting the volume driver on the service, define a volume using the "
                     "top-level `volumes` option and specify the driver there.",
    "volumes_from": "To share a volume between services, define it using the top-level `volumes` option "
                    "and reference it from each service that shares it using the service-level `volumes` option.",
    "cpu_quota": "Set resource limits using deploy.resources",
    "cpu_shares": "Set resource limits using deploy.resources",
    "cpuset": "Set resource limits using deploy.resources",
    "mem_limit": "Set resource limits using deploy.resources",
    "memswap_limit": "Set resource limits using deploy.resources",
    # docker stack deploy applies these; Shoal's runtime does not have them yet
    "credential_spec": _NOT_YET, "isolation": _NOT_YET,
}
_SERVICE_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
_SIGNAL = re.compile(r"^(SIG)?[A-Z][A-Z0-9+-]*$|^[0-9]+$")
_CAPABILITY = re.compile(r"^(CAP_)?[A-Z][A-Z0-9_]*$")


def read_service(ck: Checker, name: str, node: Node, parent: Node, declared: Declared) -> ServiceDef | None:
    """Validate services.<name>; record problems on `ck`; return None if any were found."""
    path = join("services", name)
    before = len(ck.problems)
    if not _SERVICE_NAME.match(name) or len(name) > 63:
        ck.key_error(parent, name, path, "service names start with a letter or digit and use only "
                                         "letters, digits, '_', '.' and '-' (at most 63)")
    allowed = SERVICE_KEYS | set(IGNORED_SERVICE_KEYS) | set(DEPRECATED_SERVICE_KEYS)
    entries = ck.mapping(node, path, allowed, UNSUPPORTED_SERVICE_KEYS, nullable=False)
    if entries is None:
        return None
    ignored = tuple(key for key in entries if key in IGNORED_SERVICE_KEYS or key in DEPRECATED_SERVICE_KEYS)
    values: dict[str, object] = {}
    image_node = entries.get("image")
    if image_node is None:
        ck.error(node, join(path, "image"), "required: every service of a stack runs an image "
                                             "(build it and push it to a registry first)")
    else:
        values["image"] = _image(ck, image_node, join(path, "image"))
    for key in ("command", "entrypoint"):
        if key in entries:
            values[key] = ck.command(entries[key], join(path, key))
    values["environment"] = _environment(ck, entries, path, declared)
    values["ports"] = _ports(ck, entries.get("ports"), join(path, "ports"))
    values["networks"] = _networks(ck, entries.get("networks"), join(path, "networks"), declared)
    values["mounts"] = read_mounts(ck, entries, path, declared)
    if "deploy" in entries:
        values["deploy"] = read_deploy(ck, entries["deploy"], join(path, "deploy"))
    if "healthcheck" in entries:
        values["healthcheck"] = _healthcheck(ck, entries["healthcheck"], join(path, "healthcheck"))
    for key in ("hostname", "user", "working_dir", "stop_signal"):
        if key in entries:
            values[key] = ck.string(entries[key], join(path, key))
    if values.get("working_dir") and not str(values["working_dir"]).startswith("/"):
        ck.error(entries["working_dir"], join(path, "working_dir"), "must be an absolute path")
    if values.get("stop_signal") and not _SIGNAL.match(str(values["stop_signal"])):
        ck.error(entries["stop_signal"], join(path, "stop_signal"),
                 f"expected a signal name like SIGTERM, got {describe(values['stop_signal'])}")
    if "stop_grace_period" in entries:
        values["stop_grace_period"] = ck.attempt(entries["stop_grace_period"], join(path, "stop_grace_period"),
                                                 _duration)
    if "labels" in entries:
        values["labels"] = ck.labels(entries["labels"], join(path, "labels"))
    for key in ("cap_add", "cap_drop"):
        if key in entries:
            values[key] = _capabilities(ck, entries[key], join(path, key))
    for key, known in (("secrets", declared.secrets), ("configs", declared.configs)):
        if key in entries:
            values[key] = _file_refs(ck, entries[key], join(path, key), key, known)
    if "depends_on" in entries:
        values["depends_on"] = _depends_on(ck, entries["depends_on"], join(path, "depends_on"), name, declared)
    if "init" in entries:
        values["init"] = ck.boolean(entries["init"], join(path, "init"))
    if "restart" in entries:
        values["restart"] = ck.attempt(entries["restart"], join(path, "restart"), _restart)
    if "logging" in entries:
        logging, dropped = _logging(ck, entries["logging"], join(path, "logging"))
        values["logging"], ignored = logging, ignored + dropped
    for key in ("tty", "stdin_open"):
        if key in entries:
            values[key] = ck.boolean(entries[key], join(path, key))
    if "group_add" in entries:
        values["group_add"] = _group_add(ck, entries["group_add"], join(path, "group_add"))
    _runtime_options(ck, entries, path, values)
    values["ignored"] = ignored
    if len(ck.problems) > before:
        return None
    where = f"{node.file}:{parent.key_lines.get(name, node.line)}"
    return ServiceDef(name=name, where=where, **{k: v for k, v in values.items() if v is not None})


def _image(ck: Checker, node: Node, path: str) -> str | None:
    image = ck.string(node, path, numbers=False, empty=False)
    if image is None:
        return None
    reference = image.split("@", 1)[0]
    repository = reference if ":" not in reference.rsplit("/", 1)[-1] else reference.rsplit(":", 1)[0]
    if any(c.isspace() for c in image) or repository != repository.lower():
        ck.error(node, path, f"invalid image reference {image!r} (repository names are lowercase, "
                             f"without spaces)")
        return None
    return image


def _environment(ck: Checker, entries: dict[str, Node], path: str, declared: Declared) -> dict[str, str] | None:
    environment: dict[str, str] = {}
    if "env_file" in entries:
        for env_path, env_node, required in _env_files(ck, entries["env_file"], join(path, "env_file")):
            full = os.path.join(declared.project_dir, os.path.expanduser(env_path))
            try:
                text = declared.read_text(full)
            except OSError as exc:
                if required:
                    ck.error(env_node, join(path, "env_file"), f"cannot read {env_path}: {exc.strerror or exc}")
                continue
            try:
                for _, key, value in parse_env_file(text):
                    value = declared.env.get(key) if value is None else value
                    if value is not None:
                        environment[key] = value
            except ValueError as exc:
                ck.error(env_node, join(path, "env_file"), f"{env_path}: {exc}")
    if "environment" in entries:
        pairs = ck.assignments(entries["environment"], join(path, "environment"))
        if pairs is None:
            return None
        for key, (_, value) in pairs.items():
            value = declared.env.get(key) if value is None else value
            if value is not None:
                environment[key] = value
            else:
                environment.pop(key, None)
    return environment


def _env_files(ck: Checker, node: Node, path: str) -> list[tuple[str, Node, bool]]:
    items = [node] if isinstance(node.value, str) else (ck.sequence(node, path) or [])
    result = []
    for index, item in enumerate(items):
        item_path = path if item is node else join(path, index)
        if isinstance(item.value, str) and item.value:
            result.append((item.value, item, True))
            continue
        entries = ck.mapping(item, item_path, {"path", "required", "format"}, nullable=False)
        if entries is None:
            continue
        if "path" not in entries:
            ck.error(item, join(item_path, "path"), "required")
            continue
        env_path = ck.string(entries["path"], join(item_path, "path"), empty=False)
        required = ck.boolean(entries["required"], join(item_path, "required")) if "required" in entries else True
        if "format" in entries and entries["format"].value not in (None, "raw", ""):
            ck.error(entries["format"], join(item_path, "format"), "only the default format is supported")
        if env_path is not None and required is not None:
            result.append((env_path, entries["path"], required))
    return result


_PORT_KEYS = {"target", "published", "protocol", "mode", "name", "traffic_policy"}
_PORT_UNSUPPORTED = {"host_ip": "ports are published on every address of a node",
                     "app_protocol": "not supported"}


def _ports(ck: Checker, node: Node | None, path: str) -> tuple[PortSpec, ...] | None:
    if node is None:
        return ()
    items = ck.sequence(node, path)
    if items is None:
        return None
    ports: list[PortSpec] = []
    seen: dict[tuple[int, str], str] = {}
    for index, item in enumerate(items):
        item_path = join(path, index)
        if item.is_map:
            parsed = _port_long(ck, item, item_path)
        else:
            parsed = ck.attempt(item, item_path, parse_port_short)
        for port in parsed or ():
            if port.published:
                key = (port.published, port.protocol)
                if key in seen:
                    ck.error(item, item_path, f"published port {port.published}/{port.protocol} is "
                                              f"already published by {seen[key]}")
                seen[key] = item_path
            ports.append(port)
    return tuple(ports)


def _port_long(ck: Checker, node: Node, path: str) -> list[PortSpec] | None:
    entries = ck.mapping(node, path, _PORT_KEYS, _PORT_UNSUPPORTED)
    if entries is None:
        return None
    if "target" not in entries:
        ck.error(node, join(path, "target"), "required")
        return None
    target = ck.integer(entries["target"], join(path, "target"), minimum=1)
    published = ck.integer(entries["published"], join(path, "published"), minimum=0) \
        if "published" in entries and entries["published"].value is not None else 0
    protocol = ck.choice(entries["protocol"], join(path, "protocol"), ("tcp", "udp")) \
        if "protocol" in entries else "tcp"
    mode = ck.choice(entries["mode"], join(path, "mode"), ("ingress", "host")) if "mode" in entries else "ingress"
    name = ck.string(entries["name"], join(path, "name")) if "name" in entries else ""
    policy = ck.choice(entries["traffic_policy"], join(path, "traffic_policy"), ("cluster", "local")) \
        if "traffic_policy" in entries else "cluster"
    for key, value in (("target", target), ("published", published)):
        if value is not None and value > 65535:
            ck.error(entries[key], join(path, key), f"port {value} is outside 1-65535")
            return None
    if None in (target, published, protocol, mode, name, policy):
        return None
    if policy == "local" and mode != "ingress":
        ck.error(entries["traffic_policy"], join(path, "traffic_policy"),
                 "local applies to ingress-mode ports (host-mode ports only ever reach the local task)")
        return None
    return [PortSpec(target=target, published=published, protocol=protocol, mode=mode, name=name,  # type: ignore[arg-type]
                     traffic_policy=policy)]


def _networks(ck: Checker, node: Node | None, path: str, declared: Declared) -> tuple[ServiceNetwork, ...] | None:
    if node is None:
        return (ServiceNetwork("default"),)
    result = []
    if node.is_seq:
        named = []
        for index, item in enumerate(node.value):
            key = ck.string(item, join(path, index), numbers=False, empty=False)
            if key is not None:
                named.append((key, item, None))
    else:
        entries = ck.mapping(node, path, None, nullable=False)
        if entries is None:
            return None
        named = [(key, value, node) for key, value in entries.items()]
    for key, item, parent in named:
        item_path = join(path, key)
        if key not in declared.networks and key != "default":
            target = item if parent is None else parent
            if parent is None:
                ck.error(target, item_path, f"network {key!r} is not declared under the top-level networks key")
            else:
                ck.key_error(parent, key, item_path, f"network {key!r} is not declared under the top-level networks key")
            continue
        aliases: tuple[str, ...] = ()
        if parent is not None and item.value is not None:
            entries = ck.mapping(item, item_path, {"aliases"}, {
                "ipv4_address": "addresses are assigned by the cluster",
                "ipv6_address": "IPv6 is not supported", "link_local_ips": "not supported",
                "priority": "not supported", "mac_address": "not supported",
                "driver_opts": "not supported", "gw_priority": "not supported"})
            if entries and "aliases" in entries:
                aliases = tuple(ck.strings(entries["aliases"], join(item_path, "aliases")) or ())
        result.append(ServiceNetwork(key, aliases))
    return tuple(sorted(result, key=lambda n: n.key))


def _healthcheck(ck: Checker, node: Node, path: str) -> HealthcheckSpec | None:
    entries = ck.mapping(node, path, {"test", "interval", "timeout", "retries", "start_period", "start_interval",
                                      "disable"})
    if entries is None:
        return None
    test: tuple[str, ...] = ()
    if "test" in entries:
        t = entries["test"]
        if isinstance(t.value, str):
            test = ("CMD-SHELL", t.value)
        else:
            words = ck.strings(t, join(path, "test"))
            if words is not None:
                if not words or words[0] not in ("CMD", "CMD-SHELL", "NONE"):
                    ck.error(t, join(path, "test"), "a test list starts with CMD, CMD-SHELL or NONE")
                test = tuple(words)
    if "disable" in entries and ck.boolean(entries["disable"], join(path, "disable")):
        if "test" in entries:
            ck.key_error(node, "disable", join(path, "disable"), "cannot be combined with test")
        test = ("NONE",)
    timings = {key: ck.attempt(entries[key], join(path, key), _duration)
               for key in ("interval", "timeout", "start_period", "start_interval") if key in entries}
    retries = ck.integer(entries["retries"], join(path, "retries")) if "retries" in entries else None
    return HealthcheckSpec(test=test, retries=retries, **timings)


def _duration(value: object) -> float:
    if not isinstance(value, str):
        raise ValueError(f"expected a duration like '10s', got {describe(value)}")
    return parse_duration(value)


def _capabilities(ck: Checker, node: Node, path: str) -> tuple[str, ...] | None:
    names = ck.strings(node, path)
    if names is None:
        return None
    result = []
    for index, name in enumerate(names):
        upper = name.upper()
        if upper != "ALL" and not _CAPABILITY.match(upper):
            ck.error(node.value[index], join(path, index), f"{name!r} is not a capability name")
        result.append(upper)
    return tuple(result)


def _file_refs(ck: Checker, node: Node, path: str, kind: str, known: frozenset[str]) -> tuple[FileRef, ...] | None:
    items = ck.sequence(node, path)
    if items is None:
        return None
    refs = []
    default_prefix = "/" if kind == "configs" else ""
    for index, item in enumerate(items):
        item_path = join(path, index)
        if isinstance(item.value, str):
            source, fields, where = item.value, {}, item
        else:
            entries = ck.mapping(item, item_path, {"source", "target", "uid", "gid", "mode"}, nullable=False)
            if entries is None:
                continue
            if "source" not in entries:
                ck.error(item, join(item_path, "source"), "required")
                continue
            source = ck.string(entries["source"], join(item_path, "source"), empty=False)
            where = entries["source"]
            fields = {}
            for key in ("target", "uid", "gid"):
                if key in entries:
                    fields[key] = ck.string(entries[key], join(item_path, key), empty=False)
            if "mode" in entries:
                try:
                    fields["mode"] = _mode(entries["mode"])
                except ValueError as exc:
                    ck.error(entries["mode"], join(item_path, "mode"), str(exc))
                    fields["mode"] = None
            if source is None or None in fields.values():
                continue
        if source not in known:
            ck.error(where, item_path, f"{kind[:-1]} {source!r} is not declared under the top-level {kind} key")
            continue
        fields.setdefault("target", default_prefix + source)
        refs.append(FileRef(source=source, **fields))  # type: ignore[arg-type]
    return tuple(refs)


def _mode(node: Node) -> int:
    """A file mode as written in the file: 0440 (YAML 1.1 octal, as docker's loader reads it),
    0o440 or 288."""
    if isinstance(node.value, bool) or not isinstance(node.value, (int, str)):
        raise ValueError(f"expected a file mode like 0440, got {describe(node.value)}")
    raw = node.raw if node.raw is not None else str(node.value)
    return parse_file_mode(raw)


def _restart(value: object) -> str:
    """`restart:` as docker stack deploy reads it (opts.ParseRestartPolicy): no, always,
    unless-stopped, on-failure[:N]."""
    text = "" if value is None else str(value)
    name, _, count = text.partition(":")
    if name not in ("", "no", "always", "unless-stopped", "on-failure") or (count and name != "on-failure"):
        raise ValueError(f"invalid restart policy {text!r}: expected no, always, unless-stopped or on-failure[:N]")
    if count and not count.isdigit():
        raise ValueError(f"invalid restart policy {text!r}: maximum retry count must be an integer")
    return text


def _group_add(ck: Checker, node: Node, path: str) -> tuple[str, ...] | None:
    """group_add: supplementary groups, names (from the image's /etc/group) or GIDs (`--group`)."""
    items = ck.sequence(node, path)
    if items is None:
        return None
    out = []
    for i, item in enumerate(items):
        text = str(item.value) if isinstance(item.value, int) and not isinstance(item.value, bool) else item.value
        if not isinstance(text, str) or not text or ":" in text or any(c.isspace() for c in text):
            ck.error(item, join(path, i), f"expected a group name or GID, got {describe(item.value)}")
            continue
        out.append(text)
    return tuple(dict.fromkeys(out)) if len(out) == len(items) else None


def _runtime_options(ck: Checker, entries: dict[str, Node], path: str, values: dict[str, object]) -> None:
    """dns, dns_search, dns_opt, extra_hosts, sysctls, ulimits, read_only, oom_score_adj: read as
    docker/cli's compose loader reads them, checked with the grammar of the CLI's flags."""
    for key, check in (("dns", hostopts.check_ip), ("dns_search", hostopts.check_dns_search), ("dns_opt", None)):
        if key in entries:
            node = entries[key]
            items = ck.strings(node, join(path, key), single=key != "dns_opt")
            if items is not None and check is not None:
                items = [ck.attempt(Node(i, node.file, node.line), join(path, key), check) for i in items]
            if items is not None:
                values[key] = tuple(i for i in items if i is not None)
    if "extra_hosts" in entries:
        values["extra_hosts"] = _extra_hosts(ck, entries["extra_hosts"], join(path, "extra_hosts"))
    if "sysctls" in entries:
        sysctls = {}
        for key, (node, value) in (ck.assignments(entries["sysctls"], join(path, "sysctls")) or {}).items():
            try:
                hostopts.check_sysctl(key)
            except ValueError as err:
                ck.error(node, join(path, "sysctls", key), str(err))
            sysctls[key] = value or ""
        values["sysctls"] = sysctls
    if "ulimits" in entries:
        values["ulimits"] = _ulimits(ck, entries["ulimits"], join(path, "ulimits"))
    if "read_only" in entries:
        values["read_only"] = ck.boolean(entries["read_only"], join(path, "read_only"))
    if "oom_score_adj" in entries:
        values["oom_score_adj"] = ck.integer(entries["oom_score_adj"], join(path, "oom_score_adj"),
                                             minimum=hostopts.OOM_SCORE_ADJ_MIN, maximum=hostopts.OOM_SCORE_ADJ_MAX)


def _extra_hosts(ck: Checker, node: Node, path: str) -> tuple[str, ...] | None:
    """A list of ``HOST:IP`` (or ``HOST=IP``) or a mapping HOST: IP -> SwarmKit's ``IP HOST``
    entries (docker/cli convertExtraHosts)."""
    if node.is_map:
        texts = [(child, f"{host}:{child.value}") for host, child in node.value.items()]
    else:
        items = ck.sequence(node, path)
        if items is None:
            return None
        texts = [(item, item.value) for item in items]
    out = []
    for i, (child, text) in enumerate(texts):
        entry = ck.attempt(Node(text, child.file, child.line), join(path, i), hostopts.parse_extra_host)
        if entry is not None:
            out.append(entry)
    return tuple(out)


def _ulimits(ck: Checker, node: Node, path: str) -> tuple[tuple[str, int, int], ...] | None:
    """``nofile: 1024`` (soft and hard) or ``nofile: {soft: 1024, hard: 2048}``, sorted by name
    as docker/cli's convertUlimits sorts them."""
    entries = ck.mapping(node, path, None)
    if entries is None:
        return None
    out = []
    for name, child in sorted(entries.items()):
        where = join(path, name)
        if child.is_map:
            limits = ck.mapping(child, where, ("soft", "hard"), nullable=False) or {}
            if set(limits) != {"soft", "hard"}:
                ck.error(child, where, "expected both soft and hard")
                continue
            soft = ck.integer(limits["soft"], join(where, "soft"), minimum=None, maximum=2**63 - 1)
            hard = ck.integer(limits["hard"], join(where, "hard"), minimum=None, maximum=2**63 - 1)
        else:
            soft = hard = ck.integer(child, where, minimum=None, maximum=2**63 - 1)
        if soft is None or hard is None:
            continue
        try:
            hostopts.check_ulimit(name, soft, hard)
        except ValueError as err:
            ck.error(child, where, str(err))
            continue
        out.append((name, soft, hard))
    return tuple(out)


def _logging(ck: Checker, node: Node, path: str) -> tuple[tuple[str, tuple[tuple[str, str], ...]] | None,
                                                          tuple[str, ...]]:
    """`logging:` -> ((driver, options), ignored keys). Nodes log with json-file: max-size and
    max-file are honoured; another driver is refused naming it; json-file's other options
    (compress, tag, labels, env...) are reported as ignored, as docker stack deploy reports keys
    it does not use."""
    entries = ck.mapping(node, path, {"driver", "options"})
    if entries is None:
        return None, ()
    driver = ck.string(entries["driver"], join(path, "driver")) if "driver" in entries else hostopts.LOG_DRIVER
    if driver not in (None, hostopts.LOG_DRIVER):
        ck.error(entries["driver"], join(path, "driver"),
                 f"the {driver!r} logging driver is not available: Shoal nodes log with json-file "
                 f"(read the logs with shoal service logs)")
        return None, ()
    options = {key: ck.string(child, join(path, "options", key))
               for key, child in (ck.mapping(entries.get("options"), join(path, "options"), None) or {}).items()}
    kept = {k: v for k, v in options.items() if k in ("max-size", "max-file") and v is not None}
    for key, value in kept.items():
        try:
            hostopts.parse_log_options(hostopts.LOG_DRIVER, {key: value})
        except ValueError as err:
            ck.error(entries["options"].value[key], join(path, "options", key), str(err))
    ignored = tuple(f"logging.options.{key}" for key in options if key not in kept)
    return (hostopts.LOG_DRIVER, tuple(sorted(kept.items()))), ignored


_CONDITIONS = ("service_started", "service_healthy", "service_completed_successfully")


def _depends_on(ck: Checker, node: Node, path: str, name: str, declared: Declared) -> tuple[DependencySpec, ...] | None:
    deps: list[DependencySpec] = []
    if node.is_seq:
        listed = [(ck.string(item, join(path, i), numbers=False, empty=False), item, None)
                  for i, item in enumerate(node.value)]
    else:
        entries = ck.mapping(node, path, None, nullable=False)
        if entries is None:
            return None
        listed = [(key, value, node) for key, value in entries.items()]
    for key, item, parent in listed:
        if key is None:
            continue
        item_path = join(path, key)
        if key not in declared.services or key == name:
            problem = "a service cannot depend on itself" if key == name else f"service {key!r} is not defined"
            if parent is None:
                ck.error(item, item_path, problem)
            else:
                ck.key_error(parent, key, item_path, problem)
            continue
        condition, required = "service_started", True
        if parent is not None and item.value is not None:
            entries = ck.mapping(item, item_path, {"condition", "required"},
                                 {"restart": "dependents are not restarted with their dependencies"})
            if entries is None:
                continue
            if "condition" in entries:
                condition = ck.choice(entries["condition"], join(item_path, "condition"), _CONDITIONS)
            if "required" in entries:
                required = ck.boolean(entries["required"], join(item_path, "required"))
            if condition is None or required is None:
                continue
        deps.append(DependencySpec(service=key, condition=condition, required=required))
    return tuple(deps)
