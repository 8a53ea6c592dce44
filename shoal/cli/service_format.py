"""How `shoal service ls | ps | inspect` render services and tasks: the docker CLI's columns,
JSON field names and `inspect` shape (durations in nanoseconds, enums in lower case).

Pure functions of the protobuf objects (and ``now`` for "Running 5 seconds ago").
"""

from __future__ import annotations

import re

from proto import objects_pb2 as pb
from shoal.dockerjson import (_UPDATE_STATES, _container, _drop_empty, _endpoint_spec, _mode,  # noqa: F401
                              _ports, _privileges, _resources, _update_config, ns, rfc3339, service_inspect,
                              spec_dict)

ServiceSpec = pb.ServiceSpec
MAX_ERROR_LENGTH = 30

MODE_LABELS = {ServiceSpec.REPLICATED: "replicated", ServiceSpec.GLOBAL: "global",
               ServiceSpec.REPLICATED_JOB: "replicated job", ServiceSpec.GLOBAL_JOB: "global job"}
_LS_UPDATE_NOTES = {pb.UpdateStatus.UPDATING: "updating", pb.UpdateStatus.PAUSED: "update paused",
                    pb.UpdateStatus.ROLLBACK_STARTED: "rolling back",
                    pb.UpdateStatus.ROLLBACK_PAUSED: "rollback paused"}


def state_name(state: int) -> str:
    """"Running", "Shutdown", ...: a TaskState as the docker CLI prints it."""
    return pb.TaskState.Name(state).capitalize()


def human_duration(seconds: float) -> str:
    """docker's units.HumanDuration: "Less than a second", "5 seconds", "About a minute"..."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


def short_image(image: str) -> str:
    """The image without its digest when it has a name to show ("busybox:1.36@sha256:..." →
    "busybox:1.36"), as the docker CLI shows images unless --no-trunc."""
    name, sep, _ = image.partition("@")
    return name if sep and name else image


def format_port(port: pb.PortConfig) -> str:
    """``*:8080->80/tcp``, with `` (local)`` when the mesh keeps the client's address."""
    protocol = "udp" if port.protocol == pb.PortConfig.UDP else "tcp"
    local = " (local)" if port.traffic_policy == pb.PortConfig.LOCAL else ""
    return f"*:{port.published_port}->{port.target_port}/{protocol}{local}"


# ---- service ls ------------------------------------------------------------------------------

def replicas_text(service: pb.Service, status) -> str:
    """The REPLICAS column: "2/3", "2/3 (max 1 per node)", "0/0 (3/3 completed)" for jobs."""
    running, desired = status.running_tasks, status.desired_tasks
    mode = service.spec.mode
    if mode == ServiceSpec.REPLICATED and service.spec.task.placement.max_replicas:
        return f"{running}/{desired} (max {service.spec.task.placement.max_replicas} per node)"
    if mode == ServiceSpec.REPLICATED_JOB:
        return f"{running}/{desired} ({status.completed_tasks}/{service.spec.replicas} completed)"
    if mode == ServiceSpec.GLOBAL_JOB:
        return f"{running}/{desired} ({status.completed_tasks}/{desired + status.completed_tasks} completed)"
    return f"{running}/{desired}"


def service_summary(service: pb.Service, status) -> dict:
    """The fields of `service ls --format json`."""
    ports = service.endpoint.ports if service.endpoint.ports else service.spec.endpoint.ports
    return {"ID": service.id[:12],
            "Name": service.spec.annotations.name,
            "Mode": MODE_LABELS.get(service.spec.mode, "replicated"),
            "Replicas": replicas_text(service, status),
            "Image": short_image(service.spec.task.container.image),
            "Ports": ", ".join(format_port(p) for p in ports if p.publish_mode == pb.PortConfig.INGRESS),
            **({"Error": service.allocation_error} if service.allocation_error else {})}


ALLOCATION_NOTE = "network allocation failed: see service inspect"


def ls_row(service: pb.Service, summary: dict) -> list[str]:
    """A table row; the REPLICAS cell notes an update or rollback in progress or paused, and
    addresses the allocator cannot give (the summary's "Error" and inspect's "AllocationError"
    hold the message)."""
    replicas = summary["Replicas"]
    note = _LS_UPDATE_NOTES.get(service.update_status.state)
    if note:
        replicas = f"{replicas} ({note})"
    if service.allocation_error:
        replicas = f"{replicas} ({ALLOCATION_NOTE})"
    return [summary["ID"], summary["Name"], summary["Mode"], replicas, summary["Image"], summary["Ports"]]


# ---- service ps ------------------------------------------------------------------------------

def _task_base_name(task: pb.Task, service: pb.Service | None) -> str:
    """docker's task name: SERVICE.SLOT, or SERVICE.NODEID for a global service's task (the
    docker CLI resolves the service's name, never the node's)."""
    name = service.spec.annotations.name if service is not None else task.service_id
    if task.slot:
        return f"{name}.{task.slot}"
    return f"{name}.{task.node_id}"


def _natural(text: str) -> tuple:
    """sortorder.NaturalLess: digit runs compare as numbers (web.2 before web.10)."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part)
                 for part in re.split(r"(\d+)", text) if part)


def sort_tasks(tasks: list[pb.Task], services: dict[str, pb.Service]) -> list[pb.Task]:
    """As docker's `service ps`: by task name (natural order), then newest first, so a slot's
    newest task heads its history wherever the tasks ran."""
    return sorted(tasks, key=lambda t: (_natural(_task_base_name(t, services.get(t.service_id))),
                                        -t.meta.created_at, t.id))


def task_error(task: pb.Task, trunc: bool) -> str:
    """The ERROR column: the task's error, or why a pending task is not placed; quoted."""
    text = task.status.err
    if not text and task.status.state == pb.PENDING and task.status.message.startswith("no suitable node"):
        text = task.status.message
    if trunc and len(text) > MAX_ERROR_LENGTH:
        text = text[:MAX_ERROR_LENGTH - 1] + "…"
    return f'"{text}"' if text else ""


def task_rows(tasks: list[pb.Task], services: dict[str, pb.Service], node_names: dict[str, str],
              now: float, trunc: bool = True) -> list[dict]:
    """The `service ps` lines, in order, as the JSON objects `--format json` prints; a slot's
    older tasks are named `` \\_ web.1`` as the docker CLI does."""
    rows = []
    previous = None
    for task in sort_tasks(tasks, services):
        base = _task_base_name(task, services.get(task.service_id))
        name = f" \\_ {base}" if base == previous else base
        previous = base
        if not trunc:
            name = f"{name}.{task.id}"
        since = task.status.timestamp or task.meta.updated_at or task.meta.created_at
        image = task.spec.container.image
        rows.append({
            "ID": task.id[:12] if trunc else task.id,
            "Name": name,
            "Image": short_image(image) if trunc else image,
            "Node": node_names.get(task.node_id, task.node_id),
            "DesiredState": state_name(task.desired_state),
            "CurrentState": f"{state_name(task.status.state)} {human_duration(max(now - since, 0)).lower()} ago",
            "Error": task_error(task, trunc),
            "Ports": ", ".join(format_port(p) for p in task.endpoint.ports
                               if p.publish_mode == pb.PortConfig.HOST and p.published_port),
        })
    return rows


PS_COLUMNS = ["ID", "NAME", "IMAGE", "NODE", "DESIRED STATE", "CURRENT STATE", "ERROR", "PORTS"]
PS_KEYS = ["ID", "Name", "Image", "Node", "DesiredState", "CurrentState", "Error", "Ports"]


# ---- service inspect -------------------------------------------------------------------------

def pretty(service: pb.Service, status=None) -> str:
    """`docker service inspect --pretty`: the human-readable summary."""
    spec, c = service.spec, service.spec.task.container
    lines = [f"ID:\t\t{service.id}", f"Name:\t\t{spec.annotations.name}"]
    if spec.annotations.labels:
        lines.append("Labels:")
        lines += [f" {k}={v}" for k, v in sorted(spec.annotations.labels.items())]
    mode = MODE_LABELS.get(spec.mode, "replicated").title().replace(" ", "")
    lines.append(f"Service Mode:\t{mode}")
    if spec.mode in (ServiceSpec.REPLICATED, ServiceSpec.REPLICATED_JOB):
        lines.append(f" Replicas:\t{spec.replicas}")
    if service.update_status.state in _UPDATE_STATES:
        u = service.update_status
        lines += ["UpdateStatus:", f" State:\t\t{_UPDATE_STATES[u.state]}"]
        if u.started_at:
            lines.append(f" Started:\t{rfc3339(u.started_at)}")
        if u.completed_at:
            lines.append(f" Completed:\t{rfc3339(u.completed_at)}")
        if u.message:
            lines.append(f" Message:\t{u.message}")
    if service.allocation_error:
        lines.append(f"Allocation Error:\t{service.allocation_error}")
    placement = spec.task.placement
    if placement.constraints or placement.preferences or placement.max_replicas:
        lines.append("Placement:")
        if placement.constraints:
            lines.append(f" Constraints:\t[{' '.join(placement.constraints)}]")
        if placement.preferences:
            lines.append(" Preferences:\t[" + " ".join(f"spread={p.spread_descriptor}"
                                                      for p in placement.preferences) + "]")
        if placement.max_replicas:
            lines.append(f" Max Replicas Per Node:\t{placement.max_replicas}")
    for title, field, word in (("UpdateConfig", "update", "Update"), ("RollbackConfig", "rollback", "Rollback")):
        if spec.HasField(field):
            cfg = _update_config(getattr(spec, field))
            lines += [f"{title}:", f" Parallelism:\t{cfg['Parallelism']}"]
            if cfg.get("Delay"):
                lines.append(f" Delay:\t\t{_seconds(getattr(spec, field).delay)}")
            lines += [f" On failure:\t{cfg['FailureAction']}",
                      f" Monitoring Period: {_seconds(getattr(spec, field).monitor)}",
                      f" Max failure ratio: {cfg['MaxFailureRatio']:g}",
                      f" {word} order:{' ' * (len('Update order:      ') - len(word + ' order:'))}{cfg['Order']}"]
    lines += ["ContainerSpec:", f" Image:\t\t{c.image}"]
    if c.command:
        lines.append(f" Command:\t{' '.join(c.command)}")
    if c.args:
        lines.append(f" Args:\t\t{' '.join(c.args)}")
    if c.env:
        lines.append(f" Env:\t\t{' '.join(c.env)}")
    for label, value in (("Dir", c.dir), ("User", c.user), ("Hostname", c.hostname)):
        if value:
            lines.append(f" {label}:\t\t{value}")
    lines.append(f" Init:\t\t{str(c.init).lower()}")
    if c.sysctls:       # docker/cli's pretty template: SysCtls, Ulimits, Log Driver
        lines.append(" SysCtls:")
        lines += [f"  {k}" + (f": {v}" if v else "") for k, v in sorted(c.sysctls.items())]
    if c.ulimits:
        lines.append(" Ulimits:")
        lines += [f"  {u.name}: {u.soft}:{u.hard}" for u in sorted(c.ulimits, key=lambda u: u.name)]
    if c.mounts:
        lines.append("Mounts:")
        for m in c.mounts:
            lines += [f" Target:\t{m.target}", f"  Source:\t{m.source}",
                      f"  ReadOnly:\t{str(m.read_only).lower()}", f"  Type:\t\t{pb.Mount.Type.Name(m.type).lower()}"]
    res = spec.task.resources
    if res.limits.nano_cpus or res.limits.memory_bytes or res.reservations.nano_cpus or res.reservations.memory_bytes:
        lines.append("Resources:")
        for title, r in (("Reservations", res.reservations), ("Limits", res.limits)):
            if r.nano_cpus or r.memory_bytes:
                lines.append(f" {title}:")
                if r.nano_cpus:
                    lines.append(f"  CPU:\t\t{r.nano_cpus / 1e9:g}")
                if r.memory_bytes:
                    lines.append(f"  Memory:\t{_size(r.memory_bytes)}")
    if spec.task.networks:
        lines.append("Networks: " + " ".join(n.target for n in spec.task.networks))
    if spec.task.HasField("log_driver"):
        lines += ["Log Driver:", f" Name:\t\t{spec.task.log_driver.name}"]
        if spec.task.log_driver.options:
            lines.append(" LogOpts:")
            lines += [f"  {k}: {v}" for k, v in sorted(spec.task.log_driver.options.items())]
    lines.append(f"Endpoint Mode:\t{'dnsrr' if spec.endpoint.mode == pb.EndpointSpec.DNSRR else 'vip'}")
    if spec.endpoint.ports:
        lines.append("Ports:")
        for p in _ports(spec.endpoint.ports):
            lines += [f" PublishedPort = {p.get('PublishedPort', 0)}", f"  Protocol = {p['Protocol']}",
                      f"  TargetPort = {p['TargetPort']}", f"  PublishMode = {p['PublishMode']}"]
            if p.get("TrafficPolicy"):
                lines.append(f"  TrafficPolicy = {p['TrafficPolicy']}")
    if c.HasField("healthcheck"):
        h = c.healthcheck
        lines += ["Healthcheck:", f" Test:\t\t{list(h.test)}"]
        for label, value in (("Interval", h.interval), ("Timeout", h.timeout), ("Start Period", h.start_period)):
            if value:
                lines.append(f" {label}:\t{_seconds(value)}")
        if h.retries:
            lines.append(f" Retries:\t{h.retries}")
    return "\n".join(lines)


def _seconds(value: float) -> str:
    return f"{value:g}s"


def _size(n: int) -> str:
    for unit, factor in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= factor:
            return f"{n / factor:g}{unit}"
    return f"{n}B"
