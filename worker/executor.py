"""Task → ContainerSpec for shoal-runtimed: a pure conversion, plus the labels by which a
restarted worker finds the containers of its tasks again.

Secrets and configs the task refers to become ``Files`` of the spec, their data taken from what
the dispatcher sent this node (kept in the worker's memory only): a secret's target is a file
name under /run/secrets (or an absolute path), a config's an absolute path (a relative one is
taken from /), as Docker places them.
"""

from __future__ import annotations

import base64
import posixpath
from collections.abc import Mapping

from agent_runtime.api import (TASK_LABEL, ContainerSpec, File, Healthcheck, LogConfig, Mount, NetworkAttachment,
                               Resources, Ulimit)
from common import genericresource
from common.hostopts import parse_log_options
from proto import objects_pb2
from worker.placeholders import expand_config, expand_container

SERVICE_LABEL = "com.docker.swarm.service.id"
SERVICE_NAME_LABEL = "com.docker.swarm.service.name"
NODE_LABEL = "com.docker.swarm.node.id"
TASK_NAME_LABEL = "com.docker.swarm.task.name"

_MOUNT_TYPES = {objects_pb2.Mount.BIND: "bind", objects_pb2.Mount.VOLUME: "volume", objects_pb2.Mount.TMPFS: "tmpfs"}
SECRETS_DIR = "/run/secrets"
DEFAULT_FILE_MODE = 0o444


def file_target(kind: str, ref) -> str:
    """Where a secret or config reference puts its file inside the container."""
    name = ref.file.name or (ref.secret_name if kind == "secret" else ref.config_name)
    if name.startswith("/"):
        return posixpath.normpath(name)
    return posixpath.normpath(posixpath.join(SECRETS_DIR if kind == "secret" else "/", name))


def _owner(value: str, what: str) -> int:
    if not value:
        return 0
    if not value.isdigit():
        raise ValueError(f"{what}: {value!r} is not a numeric ID")
    return int(value)


def container_files(task: objects_pb2.Task, secrets: Mapping[str, objects_pb2.Secret],
                    configs: Mapping[str, objects_pb2.Config], node_hostname: str = "") -> list[File]:
    """The files of ``task``'s secrets and configs, from the objects this node was sent; ValueError
    naming a secret or config the node does not have (yet). A config made with ``--template-driver
    golang`` is expanded for this task (worker/placeholders.py)."""
    out = []
    container = task.spec.container
    for kind, refs, known in (("secret", container.secrets, secrets), ("config", container.configs, configs)):
        for ref in refs:
            object_id = getattr(ref, f"{kind}_id")
            name = getattr(ref, f"{kind}_name") or object_id
            obj = known.get(object_id)
            if obj is None:
                raise ValueError(f"task {task.id}: {kind} {name} ({object_id}) was not sent to this node")
            what = f"task {task.id}: {kind} {name}"
            data = obj.spec.data
            if kind == "config" and obj.spec.templating.name:
                if obj.spec.templating.name != "golang":
                    raise ValueError(f"{what}: unsupported template driver {obj.spec.templating.name!r}")
                try:
                    data = expand_config(task, node_hostname, data, secrets, configs)
                except ValueError as err:
                    raise ValueError(f"{what}: {err}") from None
            out.append(File(target=file_target(kind, ref), data=base64.b64encode(data).decode(),
                            uid=_owner(ref.file.uid, f"{what} uid"), gid=_owner(ref.file.gid, f"{what} gid"),
                            mode=ref.file.mode or DEFAULT_FILE_MODE))
    return out


def _slot(task: objects_pb2.Task) -> str:
    return str(task.slot) if task.slot else task.node_id


def service_name(task: objects_pb2.Task) -> str:
    """The service's name; the orchestrator names tasks SERVICE.SLOT (or SERVICE.NODEID)."""
    name = task.annotations.name or task.service_id
    suffix = f".{_slot(task)}"
    return name[: -len(suffix)] if name.endswith(suffix) else name


def task_name(task: objects_pb2.Task) -> str:
    """Docker's task naming: SERVICE.SLOT.TASKID, or SERVICE.NODEID.TASKID for global services."""
    return f"{service_name(task)}.{_slot(task)}.{task.id}"


def _seccomp(opts: objects_pb2.Privileges.SeccompOpts) -> str:
    """ContainerSpec.seccomp from the task's: "" (Docker's default profile), "unconfined", or the
    custom profile's JSON."""
    modes = objects_pb2.Privileges.SeccompOpts
    if opts.mode == modes.UNCONFINED:
        return "unconfined"
    if opts.mode == modes.CUSTOM:
        return opts.profile.decode("utf-8", "replace")
    return ""


def container_spec(task: objects_pb2.Task, secrets: Mapping[str, objects_pb2.Secret] | None = None,
                   configs: Mapping[str, objects_pb2.Config] | None = None, node_hostname: str = "") -> ContainerSpec:
    """What the runtime must run for ``task``, with the data of its secrets and configs taken from
    ``secrets``/``configs`` (by ID); raises ValueError naming a field it cannot map or a secret or
    config that is missing, or a placeholder ({{.Task.Slot}} ...) that does not expand."""
    c = expand_container(task, node_hostname)
    if not c.image:
        raise ValueError(f"task {task.id}: no image")
    labels = dict(c.labels)
    labels.update({TASK_LABEL: task.id, SERVICE_LABEL: task.service_id, NODE_LABEL: task.node_id,
                   SERVICE_NAME_LABEL: service_name(task), TASK_NAME_LABEL: task_name(task)})
    limits = task.spec.resources.limits
    reservations = task.spec.resources.reservations
    health = None
    if c.HasField("healthcheck") and c.healthcheck.test and c.healthcheck.test[0] != "NONE":
        hc = c.healthcheck
        health = Healthcheck(test=list(hc.test), interval_s=hc.interval or 30.0, timeout_s=hc.timeout or 30.0,
                             retries=hc.retries or 3, start_period_s=hc.start_period,
                             start_interval_s=hc.start_interval)
    elif c.HasField("healthcheck") and c.healthcheck.test and c.healthcheck.test[0] == "NONE":
        health = Healthcheck(test=["NONE"])
    driver = task.spec.log_driver
    try:
        max_size, max_files = parse_log_options(driver.name, dict(driver.options))
    except ValueError as err:
        raise ValueError(f"task {task.id}: {err}") from None
    return ContainerSpec(
        image=c.image,
        entrypoint=list(c.command) or None,
        command=list(c.args),
        env=list(c.env) + genericresource.env(task.assigned_generic_resources),
        workdir=c.dir,
        user=c.user,
        hostname=c.hostname or task.id[:12],
        name=task_name(task),
        labels=labels,
        mounts=[Mount(type=_MOUNT_TYPES[m.type], target=m.target, source=m.source, read_only=m.read_only,
                      tmpfs_size_bytes=m.tmpfs_size_bytes, tmpfs_mode=m.tmpfs_mode or 0o1777,
                      propagation=m.bind_propagation, no_copy=m.volume_nocopy, volume_labels=dict(m.volume_labels),
                      volume_driver=m.volume_driver, volume_options=dict(m.volume_options)) for m in c.mounts],
        resources=Resources(nano_cpus=limits.nano_cpus, memory_bytes=limits.memory_bytes,
                            memory_reservation_bytes=reservations.memory_bytes,
                            pids_limit=task.spec.resources.pids_limit),
        cap_add=list(c.cap_add),
        cap_drop=list(c.cap_drop),
        no_new_privileges=c.privileges.no_new_privileges,
        seccomp=_seccomp(c.privileges.seccomp),
        init=c.init,
        stop_signal=c.stop_signal,
        stop_grace_period_s=c.stop_grace_period if c.stop_grace_period else 10.0,
        healthcheck=health,
        networks=[NetworkAttachment(network_id=a.network_id, address=a.addresses[0], aliases=list(a.aliases))
                  for a in task.networks if a.addresses],
        files=container_files(task, secrets or {}, configs or {}, node_hostname),
        dns=list(c.dns_config.nameservers),
        dns_search=list(c.dns_config.search),
        dns_options=list(c.dns_config.options),
        extra_hosts=extra_hosts(c.hosts),
        readonly_rootfs=c.read_only,
        sysctls=dict(c.sysctls),
        ulimits=[Ulimit(name=u.name, soft=u.soft, hard=u.hard) for u in c.ulimits],
        oom_score_adj=c.oom_score_adj,
        group_add=list(c.groups),
        tty=c.tty,
        open_stdin=c.open_stdin,
        log_config=LogConfig(max_size_bytes=max_size, max_files=max_files),
    )


def extra_hosts(hosts) -> list[str]:
    """SwarmKit's ``IP HOSTNAME [ALIAS...]`` entries as Docker's ``HOST:IP``, one per name (as
    dockerd's swarm executor converts them)."""
    out = []
    for line in hosts:
        fields = line.split()
        out += [f"{name}:{fields[0]}" for name in fields[1:]]
    return out
