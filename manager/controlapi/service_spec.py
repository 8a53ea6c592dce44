"""Validation of a ServiceSpec, and what a spec change means for the service's tasks.

``validate_spec`` is pure: it looks at one spec and raises ``SpecError`` with a message that
names the service and the offending field, using the docker CLI's flag names where a flag sets
the field ("service web: image is required", "service web: invalid --replicas for mode global:
...""). Checks that need the store (name uniqueness, published ports of other services, network
and secret names) live in ``services.py``.

Defaults are not filled in here: a spec without a restart policy or an update config gets
SwarmKit's defaults from the orchestrator.
"""

from __future__ import annotations

import json
import re
import signal

from common import hostopts
from manager.constraints import InvalidConstraint, parse_constraints
from manager.controlapi.limits import (MAX_SERVICE_SPEC_BYTES, LimitError, check_labels, check_replicas,
                                       quoted)
from proto import objects_pb2

ServiceSpec = objects_pb2.ServiceSpec
Mount = objects_pb2.Mount
PortConfig = objects_pb2.PortConfig
EndpointSpec = objects_pb2.EndpointSpec

MAX_NAME_LENGTH = 63
MIN_NANO_CPUS = 1_000_000              # 0.001 CPU, SwarmKit's lower bound
MIN_MEMORY_BYTES = 4 * 1024 * 1024     # 4 MiB, SwarmKit's lower bound
MIN_HEALTH_DURATION = 0.001            # 1 ms

_NAME_RE = re.compile(r"^[a-zA-Z0-9](?:[-_]*[A-Za-z0-9]+)*$")
_VOLUME_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
_DOMAIN = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?/)?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE_RE = re.compile(rf"^{_DOMAIN}{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
                       r"(?::[\w][\w.-]{0,127})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$")
_SIGNAL_NAMES = {s.name for s in signal.Signals} | {s.name[3:] for s in signal.Signals if s.name.startswith("SIG")}

MODE_NAMES = {ServiceSpec.REPLICATED: "replicated", ServiceSpec.GLOBAL: "global",
              ServiceSpec.REPLICATED_JOB: "replicated-job", ServiceSpec.GLOBAL_JOB: "global-job"}
PROTOCOL_NAMES = {PortConfig.TCP: "tcp", PortConfig.UDP: "udp"}


class SpecError(ValueError):
    """A spec that cannot be accepted; the message names the service and the field."""


def service_label(spec: objects_pb2.ServiceSpec) -> str:
    name = spec.annotations.name
    if len(name) > MAX_NAME_LENGTH:
        return f"service {quoted(name, 24)}"
    return f"service {name}" if name else "service"


def port_key(port: objects_pb2.PortConfig) -> str:
    """"8080/tcp": how a published port is named in messages and compared for conflicts."""
    return f"{port.published_port}/{PROTOCOL_NAMES.get(port.protocol, port.protocol)}"


def validate_spec(spec: objects_pb2.ServiceSpec) -> None:
    """Raise SpecError for the first problem found in ``spec``; return None if it is acceptable.

    Pure (no store, no I/O); the same spec always gives the same answer.
    """
    label = service_label(spec)
    try:
        _check_name(spec.annotations)
        _check_mode(spec)
        size = spec.ByteSize()
        if size > MAX_SERVICE_SPEC_BYTES:
            raise SpecError(f"the service spec is {size} bytes, over the limit of {MAX_SERVICE_SPEC_BYTES} "
                            "(each task carries a copy of it)")
        _check_container(spec.task.container)
        _check_resources(spec.task.resources)
        _check_log_driver(spec.task.log_driver)
        _check_restart(spec.task.restart)
        _check_placement(spec)
        _check_networks(spec.task.networks)
        for flag, config in (("update", spec.update), ("rollback", spec.rollback)):
            _check_update_config(flag, config)
        _check_endpoint(spec.endpoint)
    except SpecError as err:
        raise SpecError(f"{label}: {err}") from None


def changes_tasks(old: objects_pb2.ServiceSpec, new: objects_pb2.ServiceSpec) -> bool:
    """Whether going from ``old`` to ``new`` changes what the service's tasks run: the task spec
    or the endpoint. A change of replicas, labels or update config alone does not (it must not
    bump spec_version nor restart anything)."""
    return old.task != new.task or old.endpoint != new.endpoint


# ---- the checks, one concern each; messages without the "service NAME: " prefix --------------

def _check_name(annotations: objects_pb2.Annotations) -> None:
    name = annotations.name
    if not name:
        raise SpecError("name is required (--name)")
    if len(name) > MAX_NAME_LENGTH or not _NAME_RE.match(name):
        raise SpecError(f"invalid --name {quoted(name)}: a name is at most {MAX_NAME_LENGTH} letters, digits, "
                        "'-' and '_', starting and ending with a letter or digit (valid as a DNS label)")
    try:
        check_labels(annotations.labels, "--label")
    except LimitError as err:
        raise SpecError(str(err)) from None


def _check_mode(spec: objects_pb2.ServiceSpec) -> None:
    if spec.mode not in MODE_NAMES:
        raise SpecError(f"invalid --mode {spec.mode}: expected replicated, global, replicated-job or global-job")
    mode = MODE_NAMES[spec.mode]
    try:
        check_replicas(spec.replicas)
        check_replicas(spec.task.placement.max_replicas, "--max-replicas")
    except LimitError as err:
        raise SpecError(str(err)) from None
    if spec.mode in (ServiceSpec.GLOBAL, ServiceSpec.GLOBAL_JOB):
        if spec.replicas:
            raise SpecError(f"invalid --replicas for mode {mode}: replicas can only be used with "
                            "replicated or replicated-job mode")
        if spec.task.placement.max_replicas:
            raise SpecError(f"invalid --max-replicas for mode {mode}: max replicas can only be used "
                            "with replicated mode")
    if spec.max_concurrent and spec.mode != ServiceSpec.REPLICATED_JOB:
        raise SpecError(f"invalid --max-concurrent for mode {mode}: max-concurrent can only be used "
                        "with replicated-job mode")
    try:
        check_replicas(spec.max_concurrent, "--max-concurrent")
    except LimitError as err:
        raise SpecError(str(err)) from None


def _check_container(container: objects_pb2.ContainerSpec) -> None:
    image = container.image
    if not image:
        raise SpecError("image is required")
    if len(image) > 512 or not _IMAGE_RE.match(image):
        hint = " (repository names must be lowercase)" if image.lower() != image and _IMAGE_RE.match(image.lower()) else ""
        raise SpecError(f"invalid image reference {image!r}{hint}")
    for entry in container.env:
        if not entry or entry.startswith("="):
            raise SpecError(f"invalid --env {entry!r}: expected KEY=VALUE or KEY")
    try:
        check_labels(container.labels, "--container-label")
    except LimitError as err:
        raise SpecError(str(err)) from None
    if container.dir and not container.dir.startswith("/"):
        raise SpecError(f"invalid --workdir {container.dir!r}: must be an absolute path")
    if container.stop_grace_period < 0:
        raise SpecError("invalid --stop-grace-period: must not be negative")
    if container.stop_signal and not _is_signal(container.stop_signal):
        raise SpecError(f"invalid --stop-signal {container.stop_signal!r}: not a signal name or number")
    _check_mounts(container.mounts)
    _check_runtime_options(container)
    if container.HasField("privileges"):
        _check_seccomp(container.privileges.seccomp)
    if container.HasField("healthcheck"):
        _check_health(container.healthcheck)
    for kind, refs in (("secret", container.secrets), ("config", container.configs)):
        targets = set()
        for ref in refs:
            name = getattr(ref, f"{kind}_name") or getattr(ref, f"{kind}_id")
            if not name:
                raise SpecError(f"invalid --{kind}: a source name is required")
            target = ref.file.name or name
            if target in targets:
                raise SpecError(f"invalid --{kind}: target {target!r} is used more than once")
            targets.add(target)


def _check_runtime_options(container: objects_pb2.ContainerSpec) -> None:
    """--dns*, --host, --sysctl, --ulimit, --oom-score-adj, with docker's grammar and words."""
    dns = container.dns_config
    for flag, values, check in (("--dns", dns.nameservers, hostopts.check_ip),
                                ("--dns-search", dns.search, hostopts.check_dns_search),
                                ("--host", container.hosts, hostopts.check_hosts_line),
                                ("--sysctl", container.sysctls, hostopts.check_sysctl)):
        for value in values:
            try:
                check(value)
            except ValueError as err:
                raise SpecError(f"invalid {flag}: {err}") from None
    seen = set()
    for u in container.ulimits:
        try:
            hostopts.check_ulimit(u.name, u.soft, u.hard)
        except ValueError as err:
            raise SpecError(f"invalid --ulimit: {err}") from None
        if u.name in seen:
            raise SpecError(f"invalid --ulimit: {u.name} is given more than once")
        seen.add(u.name)
    try:
        hostopts.check_oom_score_adj(container.oom_score_adj)
    except ValueError as err:
        raise SpecError(f"invalid --oom-score-adj: {err}") from None
    for group in container.groups:
        if not group or ":" in group or any(c.isspace() for c in group):
            raise SpecError(f"invalid --group {group!r}: expected a group name or GID")


def _check_log_driver(driver: objects_pb2.Driver) -> None:
    """Nodes log with json-file: another driver, or an option it does not have, is refused here,
    at deploy, rather than by every task on its node."""
    try:
        hostopts.parse_log_options(driver.name, dict(driver.options))
    except ValueError as err:
        flag = "--log-driver" if driver.name not in ("", hostopts.LOG_DRIVER) else "--log-opt"
        raise SpecError(f"invalid {flag}: {err}") from None


def _check_seccomp(opts: objects_pb2.Privileges.SeccompOpts) -> None:
    """The shape only (the manager does not compile filters): a custom profile is a JSON object
    with a defaultAction; the worker's runtime checks the rest before it creates a container."""
    if opts.mode != objects_pb2.Privileges.SeccompOpts.CUSTOM:
        if opts.profile:
            raise SpecError("invalid --security-opt seccomp: a profile is given but the mode is not custom")
        return
    try:
        profile = json.loads(opts.profile)
    except ValueError as err:
        raise SpecError(f"invalid --security-opt seccomp: the profile is not JSON: {err}") from None
    if not isinstance(profile, dict) or not isinstance(profile.get("defaultAction"), str):
        raise SpecError("invalid --security-opt seccomp: the profile is not a seccomp profile (no defaultAction)")


def _is_signal(text: str) -> bool:
    if text.isdigit():
        return 0 < int(text) < 65
    return text.upper() in _SIGNAL_NAMES


def _check_mounts(mounts) -> None:
    targets = set()
    for mount in mounts:
        if mount.type not in (Mount.BIND, Mount.VOLUME, Mount.TMPFS):
            raise SpecError(f"invalid --mount type {mount.type}: expected bind, volume or tmpfs")
        if not mount.target:
            raise SpecError("invalid --mount: target is required")
        if not mount.target.startswith("/"):
            raise SpecError(f"invalid --mount target {mount.target!r}: must be an absolute path")
        if mount.target in targets:
            raise SpecError(f"invalid --mount: duplicate mount point {mount.target}")
        targets.add(mount.target)
        if mount.type == Mount.BIND:
            if not mount.source.startswith("/"):
                raise SpecError(f"invalid --mount source {mount.source!r} for bind mount {mount.target}: "
                                "must be an absolute path")
        elif mount.type == Mount.VOLUME:
            # a source with placeholders (data-{{.Task.Slot}}) is named on the worker, per task
            if mount.source and "{{" not in mount.source and not _VOLUME_NAME_RE.match(mount.source):
                raise SpecError(f"invalid --mount source {mount.source!r} for volume mount {mount.target}: "
                                "a volume name is letters, digits, '_', '.' and '-' (at least 2)")
        elif mount.source:
            raise SpecError(f"invalid --mount source {mount.source!r} for tmpfs mount {mount.target}: "
                            "tmpfs mounts take no source")
        if mount.tmpfs_size_bytes < 0:
            raise SpecError(f"invalid --mount tmpfs-size for {mount.target}: must not be negative")
        if mount.tmpfs_size_bytes and mount.type != Mount.TMPFS:
            raise SpecError(f"invalid --mount tmpfs-size for {mount.target}: only tmpfs mounts have a size")
        for option, given, kind in (("tmpfs-mode", mount.tmpfs_mode, Mount.TMPFS),
                                    ("bind-propagation", mount.bind_propagation, Mount.BIND),
                                    ("volume-nocopy", mount.volume_nocopy, Mount.VOLUME),
                                    ("volume-label", mount.volume_labels, Mount.VOLUME),
                                    ("volume-driver", mount.volume_driver, Mount.VOLUME)):
            if given and mount.type != kind:
                raise SpecError(f"invalid --mount {option} for {mount.target}: only for type "
                                f"{Mount.Type.Name(kind).lower()}")
        if mount.tmpfs_mode > 0o7777:
            raise SpecError(f"invalid --mount tmpfs-mode {mount.tmpfs_mode:o} for {mount.target}: not a file mode")
        if mount.bind_propagation not in ("", "private", "rprivate", "shared", "rshared", "slave", "rslave"):
            raise SpecError(f"invalid --mount bind-propagation {quoted(mount.bind_propagation)} for {mount.target}")


def _check_health(health: objects_pb2.HealthConfig) -> None:
    test = list(health.test)
    if test and test[0] not in ("NONE", "CMD", "CMD-SHELL"):
        raise SpecError(f"invalid health check test {test!r}: the first element is NONE, CMD or CMD-SHELL")
    if test and test[0] in ("CMD", "CMD-SHELL") and not any(part.strip() for part in test[1:]):
        raise SpecError("invalid --health-cmd: the command is empty")
    for flag, value in (("interval", health.interval), ("timeout", health.timeout),
                        ("start-period", health.start_period), ("start-interval", health.start_interval)):
        if value < 0 or 0 < value < MIN_HEALTH_DURATION:
            raise SpecError(f"invalid --health-{flag}: must be 0 (the default) or at least 1ms")
    if health.retries < 0:
        raise SpecError("invalid --health-retries: must not be negative")


def _check_resources(resources: objects_pb2.ResourceRequirements) -> None:
    for which, res in (("limit", resources.limits), ("reserve", resources.reservations)):
        if res.nano_cpus < 0 or 0 < res.nano_cpus < MIN_NANO_CPUS:
            raise SpecError(f"invalid --{which}-cpu {res.nano_cpus / 1e9:g}: must be 0 or at least 0.001")
        if res.memory_bytes < 0 or 0 < res.memory_bytes < MIN_MEMORY_BYTES:
            raise SpecError(f"invalid --{which}-memory {res.memory_bytes} bytes: must be 0 or at least 4MiB")
    limit, reserve = resources.limits, resources.reservations
    if limit.nano_cpus and reserve.nano_cpus > limit.nano_cpus:
        raise SpecError(f"--reserve-cpu {reserve.nano_cpus / 1e9:g} must not exceed "
                        f"--limit-cpu {limit.nano_cpus / 1e9:g}")
    if limit.memory_bytes and reserve.memory_bytes > limit.memory_bytes:
        raise SpecError(f"--reserve-memory {_mib(reserve.memory_bytes)} must not exceed "
                        f"--limit-memory {_mib(limit.memory_bytes)}")
    if resources.pids_limit < 0:
        raise SpecError("invalid --limit-pids: must not be negative")
    if resources.limits.generic:
        raise SpecError("invalid generic resources: generic resources are reserved (--generic-resource), "
                        "not limited")
    kinds = set()
    for r in resources.reservations.generic:
        kind = r.discrete_resource_spec.kind or r.named_resource_spec.kind
        if not r.HasField("discrete_resource_spec") or r.discrete_resource_spec.value < 1 or not kind \
                or "=" in kind or "," in kind:
            raise SpecError(f"invalid --generic-resource {quoted(kind)}: a service reserves KIND=N, "
                            "a kind and a count of at least 1")
        if kind in kinds:
            raise SpecError(f"invalid --generic-resource: {quoted(kind)} is given more than once")
        kinds.add(kind)


def _mib(n: int) -> str:
    return f"{n / 2**30:g}GiB" if n >= 2**30 else f"{n / 2**20:g}MiB"


def _check_restart(policy: objects_pb2.RestartPolicy) -> None:
    if policy.condition not in (objects_pb2.RestartPolicy.ANY, objects_pb2.RestartPolicy.NONE,
                                objects_pb2.RestartPolicy.ON_FAILURE):
        raise SpecError(f"invalid --restart-condition {policy.condition}: expected none, on-failure or any")
    if policy.delay < 0:
        raise SpecError("invalid --restart-delay: must not be negative")
    if policy.window < 0:
        raise SpecError("invalid --restart-window: must not be negative")


def _check_placement(spec: objects_pb2.ServiceSpec) -> None:
    placement = spec.task.placement
    try:
        parse_constraints(placement.constraints)
    except InvalidConstraint as err:
        raise SpecError(f"invalid --constraint: {err}") from None
    for pref in placement.preferences:
        descriptor = pref.spread_descriptor
        if not descriptor.lower().startswith("node.labels.") or len(descriptor) == len("node.labels."):
            raise SpecError(f"invalid --placement-pref spread={descriptor}: "
                            "expected spread=node.labels.<name>")


def _check_networks(networks) -> None:
    seen = set()
    for attachment in networks:
        if not attachment.target:
            raise SpecError("invalid --network: a network name or ID is required")
        if attachment.target in seen:
            raise SpecError(f"invalid --network: network {attachment.target} is attached more than once")
        seen.add(attachment.target)


def _check_update_config(flag: str, config: objects_pb2.UpdateConfig) -> None:
    if config.failure_action not in (objects_pb2.UpdateConfig.PAUSE, objects_pb2.UpdateConfig.CONTINUE,
                                     objects_pb2.UpdateConfig.ROLLBACK):
        raise SpecError(f"invalid --{flag}-failure-action {config.failure_action}")
    if flag == "rollback" and config.failure_action == objects_pb2.UpdateConfig.ROLLBACK:
        raise SpecError("invalid --rollback-failure-action rollback: expected pause or continue")
    if config.order not in (objects_pb2.UpdateConfig.STOP_FIRST, objects_pb2.UpdateConfig.START_FIRST):
        raise SpecError(f"invalid --{flag}-order {config.order}")
    if config.delay < 0:
        raise SpecError(f"invalid --{flag}-delay: must not be negative")
    if config.monitor < 0:
        raise SpecError(f"invalid --{flag}-monitor: must not be negative")
    if not 0.0 <= config.max_failure_ratio <= 1.0:
        raise SpecError(f"invalid --{flag}-max-failure-ratio {config.max_failure_ratio:g}: "
                        "must be between 0 and 1")


def _check_endpoint(endpoint: objects_pb2.EndpointSpec) -> None:
    if endpoint.mode not in (EndpointSpec.VIP, EndpointSpec.DNSRR):
        raise SpecError(f"invalid --endpoint-mode {endpoint.mode}: expected vip or dnsrr")
    published = set()
    for port in endpoint.ports:
        if port.protocol not in PROTOCOL_NAMES:
            raise SpecError(f"invalid --publish protocol {port.protocol}: expected tcp or udp")
        if port.publish_mode not in (PortConfig.INGRESS, PortConfig.HOST):
            raise SpecError(f"invalid --publish mode {port.publish_mode}: expected ingress or host")
        if not 1 <= port.target_port <= 65535:
            raise SpecError(f"invalid --publish target port {port.target_port}: ports are 1-65535")
        if port.published_port > 65535:
            raise SpecError(f"invalid --publish published port {port.published_port}: ports are 1-65535")
        if port.publish_mode == PortConfig.HOST and not port.published_port:
            raise SpecError(f"invalid --publish mode=host,target={port.target_port}: "
                            "a host-mode port needs a published port")
        if port.publish_mode == PortConfig.INGRESS and endpoint.mode == EndpointSpec.DNSRR:
            raise SpecError(f"invalid --publish {port_key(port)}: a port published in ingress mode "
                            "can't be used with --endpoint-mode dnsrr (publish it with mode=host)")
        if port.published_port:
            key = port_key(port)
            if key in published:
                raise SpecError(f"invalid --publish: duplicate published port {key}")
            published.add(key)
