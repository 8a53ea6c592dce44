"""Docker's JSON shapes of Shoal's objects: what `shoal ... inspect` and `--format` print and what
shoald's Docker Engine API (shoal/dockerapi) answers, from one set of pure functions of the protobuf
objects (durations in integer nanoseconds, RFC 3339 times, enums as Docker spells them)."""

from __future__ import annotations

import base64
import time

from common.syntax import FILE_GID, FILE_MODE, FILE_UID
from proto import objects_pb2 as pb

ServiceSpec = pb.ServiceSpec


def rfc3339(seconds: float) -> str:
    if not seconds:
        return "0001-01-01T00:00:00Z"
    frac = f"{seconds % 1:.9f}"[1:].rstrip("0").rstrip(".")
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + frac + "Z"


_UPDATE_STATES = {pb.UpdateStatus.UPDATING: "updating", pb.UpdateStatus.PAUSED: "paused",
                  pb.UpdateStatus.COMPLETED: "completed", pb.UpdateStatus.ROLLBACK_STARTED: "rollback_started",
                  pb.UpdateStatus.ROLLBACK_PAUSED: "rollback_paused",
                  pb.UpdateStatus.ROLLBACK_COMPLETED: "rollback_completed"}


def ns(seconds: float) -> int:
    return int(round(seconds * 1e9))


def _drop_empty(d: dict) -> dict:
    return {k: v for k, v in d.items() if v not in (None, "", [], {}, 0)}


def _update_config(config: pb.UpdateConfig) -> dict:
    out = {"Parallelism": config.parallelism}
    if config.delay:
        out["Delay"] = ns(config.delay)
    out["FailureAction"] = pb.UpdateConfig.FailureAction.Name(config.failure_action).lower()
    out["Monitor"] = ns(config.monitor)
    out["MaxFailureRatio"] = round(config.max_failure_ratio, 6)
    out["Order"] = pb.UpdateConfig.Order.Name(config.order).lower().replace("_", "-")
    return out


def _resources(res: pb.Resources, pids: int = 0) -> dict:
    return _drop_empty({"NanoCPUs": res.nano_cpus, "MemoryBytes": res.memory_bytes, "Pids": pids,
                        "GenericResources": generic_resources(res.generic)})


def generic_resources(resources) -> list[dict]:
    """Docker's GenericResources: [{"DiscreteResourceSpec": {"Kind", "Value"}} or {"NamedResourceSpec": ...}]."""
    out = []
    for r in resources:
        if r.HasField("named_resource_spec"):
            out.append({"NamedResourceSpec": {"Kind": r.named_resource_spec.kind, "Value": r.named_resource_spec.value}})
        else:
            out.append({"DiscreteResourceSpec": {"Kind": r.discrete_resource_spec.kind,
                                                 "Value": r.discrete_resource_spec.value}})
    return out


def _privileges(p: pb.Privileges) -> dict:
    """Docker's Privileges: Seccomp Mode default|unconfined|custom, a custom Profile in base64."""
    seccomp = {"Mode": pb.Privileges.SeccompOpts.SeccompMode.Name(p.seccomp.mode).lower()}
    if p.seccomp.profile:
        seccomp["Profile"] = base64.b64encode(p.seccomp.profile).decode()
    return {"Seccomp": seccomp, "NoNewPrivileges": p.no_new_privileges}


def _container(c: pb.ContainerSpec) -> dict:
    mounts = []
    for m in c.mounts:
        mount = {"Type": pb.Mount.Type.Name(m.type).lower(), "Source": m.source, "Target": m.target}
        if m.read_only:
            mount["ReadOnly"] = True
        if m.tmpfs_size_bytes or m.tmpfs_mode:
            mount["TmpfsOptions"] = _drop_empty({"SizeBytes": m.tmpfs_size_bytes, "Mode": m.tmpfs_mode})
        if m.bind_propagation:
            mount["BindOptions"] = {"Propagation": m.bind_propagation}
        if m.volume_nocopy or m.volume_labels or m.volume_driver or m.volume_options:
            driver = _drop_empty({"Name": m.volume_driver, "Options": dict(sorted(m.volume_options.items()))})
            mount["VolumeOptions"] = _drop_empty({"NoCopy": m.volume_nocopy, "Labels": dict(m.volume_labels),
                                                  "DriverConfig": driver})
        mounts.append(_drop_empty(mount) | {"Target": m.target})
    out = _drop_empty({"Image": c.image, "Labels": dict(c.labels), "Command": list(c.command),
                       "Args": list(c.args), "Hostname": c.hostname, "Env": list(c.env), "Dir": c.dir,
                       "User": c.user, "Mounts": mounts, "StopSignal": c.stop_signal,
                       "CapabilityAdd": list(c.cap_add), "CapabilityDrop": list(c.cap_drop)})
    if c.stop_grace_period:
        out["StopGracePeriod"] = ns(c.stop_grace_period)
    if c.HasField("healthcheck"):
        h = c.healthcheck
        out["Healthcheck"] = _drop_empty({"Test": list(h.test), "Interval": ns(h.interval), "Timeout": ns(h.timeout),
                                          "StartPeriod": ns(h.start_period), "Retries": h.retries,
                                          "StartInterval": ns(h.start_interval)})
    if c.init:
        out["Init"] = True
    out.update(_drop_empty({
        "Groups": list(c.groups), "TTY": c.tty, "OpenStdin": c.open_stdin, "ReadOnly": c.read_only,
        "Hosts": list(c.hosts), "Sysctls": dict(c.sysctls), "OomScoreAdj": c.oom_score_adj,
        "DNSConfig": _drop_empty({"Nameservers": list(c.dns_config.nameservers), "Search": list(c.dns_config.search),
                                  "Options": list(c.dns_config.options)}),
        "Ulimits": [{"Name": u.name, "Soft": u.soft, "Hard": u.hard} for u in c.ulimits]}))
    if c.HasField("privileges"):
        out["Privileges"] = _privileges(c.privileges)
    for kind, refs in (("Secret", c.secrets), ("Config", c.configs)):
        if refs:
            out[f"{kind}s"] = [{"File": _drop_empty({"Name": r.file.name, "UID": r.file.uid or FILE_UID,
                                                     "GID": r.file.gid or FILE_GID, "Mode": r.file.mode or FILE_MODE}),
                                f"{kind}ID": getattr(r, f"{kind.lower()}_id"),
                                f"{kind}Name": getattr(r, f"{kind.lower()}_name")} for r in refs]
    out["Isolation"] = "default"
    return out


def _mode(spec: pb.ServiceSpec) -> dict:
    if spec.mode == ServiceSpec.GLOBAL:
        return {"Global": {}}
    if spec.mode == ServiceSpec.GLOBAL_JOB:
        return {"GlobalJob": {}}
    if spec.mode == ServiceSpec.REPLICATED_JOB:
        return {"ReplicatedJob": {"MaxConcurrent": spec.max_concurrent or spec.replicas,
                                  "TotalCompletions": spec.replicas}}
    return {"Replicated": {"Replicas": spec.replicas}}


def _ports(ports) -> list[dict]:
    return [_drop_empty({"Name": p.name, "Protocol": "udp" if p.protocol == pb.PortConfig.UDP else "tcp",
                         "TargetPort": p.target_port, "PublishedPort": p.published_port,
                         "PublishMode": "host" if p.publish_mode == pb.PortConfig.HOST else "ingress",
                         "TrafficPolicy": "local" if p.traffic_policy == pb.PortConfig.LOCAL else ""})
            for p in ports]


def _endpoint_spec(e: pb.EndpointSpec) -> dict:
    out = {"Mode": "dnsrr" if e.mode == pb.EndpointSpec.DNSRR else "vip"}
    if e.ports:
        out["Ports"] = _ports(e.ports)
    return out


def spec_dict(spec: pb.ServiceSpec) -> dict:
    """A ServiceSpec in Docker's JSON shape."""
    task = spec.task
    template = {"ContainerSpec": _container(task.container),
                "Resources": {"Limits": _resources(task.resources.limits, task.resources.pids_limit),
                              "Reservations": _resources(task.resources.reservations)}}
    if task.HasField("restart"):
        r = task.restart
        template["RestartPolicy"] = {"Condition": pb.RestartPolicy.Condition.Name(r.condition).lower().replace("_", "-"),
                                     "Delay": ns(r.delay), "MaxAttempts": r.max_attempts}
        if r.window:
            template["RestartPolicy"]["Window"] = ns(r.window)
    placement = _drop_empty({"Constraints": list(task.placement.constraints),
                             "Preferences": [{"Spread": {"SpreadDescriptor": p.spread_descriptor}}
                                             for p in task.placement.preferences],
                             "MaxReplicas": task.placement.max_replicas})
    template["Placement"] = placement
    if task.networks:
        template["Networks"] = [_drop_empty({"Target": n.target, "Aliases": list(n.aliases)}) for n in task.networks]
    if task.HasField("log_driver"):
        template["LogDriver"] = _drop_empty({"Name": task.log_driver.name, "Options": dict(task.log_driver.options)})
    template["ForceUpdate"] = task.force_update
    template["Runtime"] = "container"
    out = {"Name": spec.annotations.name, "Labels": dict(spec.annotations.labels),
           "TaskTemplate": template, "Mode": _mode(spec)}
    if spec.HasField("update"):
        out["UpdateConfig"] = _update_config(spec.update)
    if spec.HasField("rollback"):
        out["RollbackConfig"] = _update_config(spec.rollback)
    out["EndpointSpec"] = _endpoint_spec(spec.endpoint)
    return out


def service_inspect(service: pb.Service) -> dict:
    """`docker service inspect`'s object for one service."""
    out = {"ID": service.id, "Version": {"Index": service.meta.version},
           "CreatedAt": rfc3339(service.meta.created_at), "UpdatedAt": rfc3339(service.meta.updated_at),
           "Spec": spec_dict(service.spec)}
    if service.HasField("previous_spec"):
        out["PreviousSpec"] = spec_dict(service.previous_spec)
    endpoint = {"Spec": _endpoint_spec(service.endpoint.spec if service.HasField("endpoint")
                                       else service.spec.endpoint)}
    if service.endpoint.ports:
        endpoint["Ports"] = _ports(service.endpoint.ports)
    if service.endpoint.virtual_ips:
        endpoint["VirtualIPs"] = [{"NetworkID": v.network_id, "Addr": v.addr} for v in service.endpoint.virtual_ips]
    out["Endpoint"] = endpoint
    if service.allocation_error:
        out["AllocationError"] = service.allocation_error
    status = service.update_status
    if status.state in _UPDATE_STATES:
        out["UpdateStatus"] = _drop_empty({"State": _UPDATE_STATES[status.state],
                                           "StartedAt": rfc3339(status.started_at) if status.started_at else "",
                                           "CompletedAt": rfc3339(status.completed_at) if status.completed_at else "",
                                           "Message": status.message})
    return out


_AVAILABILITY = {0: "Active", 1: "Pause", 2: "Drain"}


_STATUS = {0: "Unknown", 1: "Down", 2: "Ready", 3: "Disconnected"}


def _manager_status(n) -> str:
    from proto import objects_pb2
    if n.role != objects_pb2.MANAGER or not n.manager_status.raft_addr:
        return ""
    if n.manager_status.leader:
        return "Leader"
    return {objects_pb2.ManagerStatus.REACHABLE: "Reachable",
            objects_pb2.ManagerStatus.UNREACHABLE: "Unreachable"}.get(n.manager_status.reachability, "Unknown")


def node_inspect(n) -> dict:
    """Docker's shape of `node inspect`."""
    from proto import objects_pb2
    out = {
        "ID": n.id,
        "Version": {"Index": n.meta.version},
        "CreatedAt": rfc3339(n.meta.created_at),
        "UpdatedAt": rfc3339(n.meta.updated_at),
        "Spec": {"Labels": dict(n.spec.annotations.labels),
                 "Role": "manager" if n.spec.desired_role == objects_pb2.MANAGER else "worker",
                 "Availability": _AVAILABILITY.get(n.spec.availability, "Active").lower()},
        "Description": {"Hostname": n.description.hostname,
                        "Platform": {"Architecture": n.description.platform.architecture,
                                     "OS": n.description.platform.os},
                        "Resources": _drop_empty({"NanoCPUs": n.description.resources.nano_cpus,
                                                  "MemoryBytes": n.description.resources.memory_bytes,
                                                  "GenericResources": generic_resources(
                                                      n.description.resources.generic)}),
                        "Engine": {"EngineVersion": n.description.engine.engine_version}},
        "Status": {"State": _STATUS.get(n.status.state, "Unknown").lower(), "Addr": n.status.addr},
    }
    tls = n.description.tls_info
    if tls.cert_not_after:
        import base64
        out["Description"]["TLSInfo"] = {
            "TrustRoot": tls.trust_root.decode(errors="replace"),
            "CertIssuerSubject": base64.b64encode(tls.cert_issuer_subject).decode(),
            "CertIssuerPublicKey": base64.b64encode(tls.cert_issuer_public_key).decode(),
            "CertNotAfter": rfc3339(int(tls.cert_not_after)),   # Shoal's addition: when it expires
        }
    if n.status.message:
        out["Status"]["Message"] = n.status.message
    if n.role == objects_pb2.MANAGER and n.manager_status.raft_addr:
        out["ManagerStatus"] = {"Leader": n.manager_status.leader,
                                "Reachability": _manager_status(n).lower() if not n.manager_status.leader
                                else "reachable",
                                "Addr": n.manager_status.addr}
    return out


VXLANID_OPTION = "com.docker.network.driver.overlay.vxlanid_list"


SCOPE = "swarm"


def network_inspect(net) -> dict:
    """One element of `network inspect`'s array, in docker's shape. IPAM.Config lists the allocated
    subnets, or the requested ones while the allocator has not got to the network yet."""
    spec = net.spec
    configs = list(net.ipam) or list(spec.ipam)
    options = dict(sorted(spec.driver_opts.items()))
    if net.vni:
        options[VXLANID_OPTION] = str(net.vni)
    return {
        "Name": spec.annotations.name,
        "Id": net.id,
        "Created": rfc3339(net.meta.created_at),
        "Scope": SCOPE,
        "Driver": spec.driver or "overlay",
        "EnableIPv6": False,
        "IPAM": {"Driver": "default", "Options": None,
                 "Config": [{k: v for k, v in (("Subnet", c.subnet), ("Gateway", c.gateway)) if v}
                            for c in configs]},
        "Internal": spec.internal,
        "Attachable": spec.attachable,
        "Ingress": spec.ingress,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": False,
        "Containers": None,
        "Options": options,
        "Labels": dict(sorted(spec.annotations.labels.items())),
    }


def secret_inspect(obj, shows_data: bool) -> dict:
    """One element of `secret inspect` / `config inspect`, in docker's shape."""
    spec = {"Name": obj.spec.annotations.name, "Labels": dict(sorted(obj.spec.annotations.labels.items()))}
    if shows_data:
        spec["Data"] = base64.b64encode(obj.spec.data).decode()
    if getattr(obj.spec, "templating", None) is not None and obj.spec.templating.name:
        spec["Templating"] = {"Name": obj.spec.templating.name}
    return {"ID": obj.id, "Version": {"Index": obj.meta.version},
            "CreatedAt": rfc3339(obj.meta.created_at), "UpdatedAt": rfc3339(obj.meta.updated_at),
            "Spec": spec}


# ---- containers (shoal-runtimed's ContainerInfo) -------------------------------------------------

def unix_seconds(text: str) -> int:
    """An RFC 3339 time from the runtime as unix seconds (0 when absent or unreadable)."""
    from datetime import datetime
    if not text:
        return 0
    head, _, rest = text.replace("Z", "+00:00").partition(".")
    zone = rest[rest.find("+"):] if "+" in rest else rest[rest.find("-"):] if "-" in rest else ""
    try:   # fromisoformat takes at most 6 fractional digits; the runtime writes 9
        return int(datetime.fromisoformat((head + zone) if rest else head).timestamp())
    except ValueError:
        return 0


_HEALTH_TEXT = {"starting": "health: starting", "healthy": "healthy", "unhealthy": "unhealthy"}


def container_status(state, now: float) -> str:
    """The STATUS text of `docker ps` (moby's State.String): "Up 5 minutes (healthy)",
    "Up 3 seconds (health: starting)", "Exited (0) 2 hours ago", "Created"."""
    from shoal.cli.service_format import human_duration
    if state.restarting:
        ago = human_duration(max(now - unix_seconds(state.finished_at), 0))
        return f"Restarting ({state.exit_code}) {ago} ago"
    if state.status == "running":
        up = f"Up {human_duration(max(now - unix_seconds(state.started_at), 0))}" if state.started_at else "Up"
        health = _HEALTH_TEXT.get(state.health.status) if state.health is not None else None
        return f"{up} ({health})" if health else up
    if state.status == "exited":
        if not state.finished_at:
            return ""
        return f"Exited ({state.exit_code}) {human_duration(max(now - unix_seconds(state.finished_at), 0))} ago"
    if state.status == "created":
        return "Created"
    return state.status.capitalize()
