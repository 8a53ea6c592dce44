"""A validated StackSpec to the cluster's protobuf specs, named as `docker stack deploy` names them.

- services are `NAME_service`, networks `NAME_net` (a service with no networks joins
  `NAME_default`, an overlay), volumes `NAME_vol`, secrets `NAME_secret`, configs `NAME_config`;
  objects declared `external` or with an explicit `name:` keep that name;
- every object carries the label `com.docker.stack.namespace=NAME`; services also carry
  `com.docker.stack.image`, and each task joins its networks with the service's short name as an
  alias (so `web` resolves inside the stack);
- `entrypoint` becomes ContainerSpec.command and `command` ContainerSpec.args, as in Docker.

Pure functions: no I/O (contents were read by the loader). Names are not resolved to ids here; the
ControlAPI does that.
"""

from __future__ import annotations

import re

from proto import objects_pb2 as pb
from shoal.stack.errors import StackError
from shoal.stack.model import (
    MountSpec, NetworkDef, ResourcesSpec, SecretDef, ServiceDef, StackSpec, UpdateConfigSpec, VolumeDef,
)

NAMESPACE_LABEL = "com.docker.stack.namespace"
IMAGE_LABEL = "com.docker.stack.image"
DEFAULT_NETWORK = "default"
_STACK_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_-]*$")

_MODES = {"replicated": pb.ServiceSpec.REPLICATED, "global": pb.ServiceSpec.GLOBAL,
          "replicated-job": pb.ServiceSpec.REPLICATED_JOB, "global-job": pb.ServiceSpec.GLOBAL_JOB}
_CONDITIONS = {"any": pb.RestartPolicy.ANY, "none": pb.RestartPolicy.NONE,
               "on-failure": pb.RestartPolicy.ON_FAILURE}
_FAILURE_ACTIONS = {"pause": pb.UpdateConfig.PAUSE, "continue": pb.UpdateConfig.CONTINUE,
                    "rollback": pb.UpdateConfig.ROLLBACK}
_ORDERS = {"stop-first": pb.UpdateConfig.STOP_FIRST, "start-first": pb.UpdateConfig.START_FIRST}
_MOUNT_TYPES = {"bind": pb.Mount.BIND, "volume": pb.Mount.VOLUME, "tmpfs": pb.Mount.TMPFS}


def check_stack_name(name: str) -> None:
    """Raise StackError unless `name` can prefix object names (letters, digits, '_', '-')."""
    if not _STACK_NAME.match(name or "") or len(name) > 40:
        raise StackError(f"invalid stack name {name!r}: use letters, digits, '_' and '-', starting "
                         f"with a letter or digit (at most 40)")


def _resource_name(definition: NetworkDef | VolumeDef | SecretDef | None, key: str, stack: str) -> str:
    if definition is not None and definition.name:
        return definition.name
    if definition is not None and definition.external:
        return key
    return f"{stack}_{key}"


def network_name(stack: StackSpec, name: str, key: str) -> str:
    """The cluster name of the stack's network `key` (`NAME_key`, or its external/explicit name)."""
    return _resource_name(stack.networks.get(key), key, name)


def service_name(name: str, service: str) -> str:
    return f"{name}_{service}"


def _namespaced(labels: dict[str, str], name: str) -> dict[str, str]:
    return {**labels, NAMESPACE_LABEL: name}


def to_service_specs(stack: StackSpec, name: str) -> list[pb.ServiceSpec]:
    """One ServiceSpec per service, in deploy order (dependencies first)."""
    check_stack_name(name)
    order = [s for wave in stack.deploy_order for s in wave] or sorted(stack.services)
    return [_service_spec(stack, name, stack.services[s]) for s in order]


_DEFAULT_DELAY = 5.0       # Swarm's restart delay when a policy does not give one


def _service_spec(stack: StackSpec, name: str, service: ServiceDef) -> pb.ServiceSpec:
    spec = pb.ServiceSpec()
    spec.annotations.name = service_name(name, service.name)
    spec.annotations.labels.update(_namespaced(service.deploy.labels, name))
    spec.annotations.labels[IMAGE_LABEL] = service.image
    container = spec.task.container
    container.image = service.image
    if service.entrypoint is not None:
        container.command.extend(service.entrypoint)
    if service.command is not None:
        container.args.extend(service.command)
    container.env.extend(f"{k}={v}" for k, v in sorted(service.environment.items()))
    container.dir = service.working_dir
    container.user = service.user
    container.hostname = service.hostname
    container.labels.update(_namespaced(service.labels, name))
    container.mounts.extend(_mount(stack, name, m) for m in service.mounts)
    if service.stop_grace_period is not None:
        container.stop_grace_period = service.stop_grace_period
    container.stop_signal = service.stop_signal
    if service.healthcheck is not None:
        health = container.healthcheck
        health.test.extend(service.healthcheck.test)
        health.interval = service.healthcheck.interval or 0.0
        health.timeout = service.healthcheck.timeout or 0.0
        health.retries = service.healthcheck.retries or 0
        health.start_period = service.healthcheck.start_period or 0.0
        health.start_interval = service.healthcheck.start_interval or 0.0
    container.cap_add.extend(service.cap_add)
    container.cap_drop.extend(service.cap_drop)
    container.init = service.init
    container.dns_config.nameservers.extend(service.dns)
    container.dns_config.search.extend(service.dns_search)
    container.dns_config.options.extend(service.dns_opt)
    container.hosts.extend(service.extra_hosts)
    container.sysctls.update(service.sysctls)
    container.ulimits.extend(pb.ContainerSpec.Ulimit(name=n, soft=soft, hard=hard) for n, soft, hard in service.ulimits)
    container.read_only = service.read_only
    container.oom_score_adj = service.oom_score_adj
    container.tty = service.tty
    container.open_stdin = service.stdin_open
    container.groups.extend(service.group_add)
    if service.logging is not None:
        driver, options = service.logging
        spec.task.log_driver.name = driver
        spec.task.log_driver.options.update(dict(options))
    for ref in service.secrets:
        container.secrets.add(secret_name=_resource_name(stack.secrets.get(ref.source), ref.source, name),
                              file=pb.FileTarget(name=ref.target, uid=ref.uid, gid=ref.gid, mode=ref.mode))
    for ref in service.configs:
        container.configs.add(config_name=_resource_name(stack.configs.get(ref.source), ref.source, name),
                              file=pb.FileTarget(name=ref.target, uid=ref.uid, gid=ref.gid, mode=ref.mode))

    deploy = service.deploy
    _resources(spec.task.resources.limits, deploy.limits)
    _resources(spec.task.resources.reservations, deploy.reservations)
    spec.task.resources.pids_limit = deploy.limits.pids
    if deploy.restart_policy is not None:
        policy = deploy.restart_policy
        spec.task.restart.condition = _CONDITIONS[policy.condition or "any"]
        spec.task.restart.delay = policy.delay or 0.0
        spec.task.restart.max_attempts = policy.max_attempts or 0
        spec.task.restart.window = policy.window or 0.0
    elif service.restart:
        # docker's convertRestartPolicy: `restart:` counts when deploy.restart_policy is absent;
        # "no" leaves Swarm's default (any, 5 s), always/unless-stopped is any, on-failure[:N]
        policy, _, count = service.restart.partition(":")
        if policy in ("always", "unless-stopped"):
            spec.task.restart.CopyFrom(pb.RestartPolicy(condition=pb.RestartPolicy.ANY, delay=_DEFAULT_DELAY))
        elif policy == "on-failure":
            spec.task.restart.CopyFrom(pb.RestartPolicy(condition=pb.RestartPolicy.ON_FAILURE,
                                                        delay=_DEFAULT_DELAY, max_attempts=int(count or 0)))
    spec.task.placement.constraints.extend(deploy.placement.constraints)
    for descriptor in deploy.placement.preferences:
        spec.task.placement.preferences.add(spread_descriptor=descriptor)
    spec.task.placement.max_replicas = deploy.placement.max_replicas_per_node
    for attachment in service.networks:
        spec.task.networks.add(target=network_name(stack, name, attachment.key),
                               aliases=[service.name, *attachment.aliases])

    spec.mode = _MODES[deploy.mode]
    if deploy.mode in ("replicated", "replicated-job"):
        spec.replicas = 1 if deploy.replicas is None else deploy.replicas
    if deploy.update_config is not None:
        _update_config(spec.update, deploy.update_config)
    if deploy.rollback_config is not None:
        _update_config(spec.rollback, deploy.rollback_config)
    spec.endpoint.mode = pb.EndpointSpec.DNSRR if deploy.endpoint_mode == "dnsrr" else pb.EndpointSpec.VIP
    for port in service.ports:
        spec.endpoint.ports.add(
            name=port.name, target_port=port.target, published_port=port.published,
            protocol=pb.PortConfig.UDP if port.protocol == "udp" else pb.PortConfig.TCP,
            publish_mode=pb.PortConfig.HOST if port.mode == "host" else pb.PortConfig.INGRESS,
            traffic_policy=pb.PortConfig.LOCAL if port.traffic_policy == "local" else pb.PortConfig.CLUSTER)
    return spec


def _mount(stack: StackSpec, name: str, mount: MountSpec) -> pb.Mount:
    source = mount.source
    definition = stack.volumes.get(source) if mount.type == "volume" and source else None
    if definition is not None:
        source = _resource_name(definition, source, name)
    out = pb.Mount(type=_MOUNT_TYPES[mount.type], source=source, target=mount.target,
                   read_only=mount.read_only, tmpfs_size_bytes=mount.tmpfs_size, tmpfs_mode=mount.tmpfs_mode,
                   bind_propagation=mount.propagation, volume_nocopy=mount.nocopy)
    if definition is not None and not definition.external:
        # docker/cli's convertVolumeToMount: the volume's driver and labels go with each mount
        out.volume_labels.update(_namespaced(definition.labels, name))
        out.volume_options.update(definition.driver_opts)
        if definition.driver not in ("", "local"):
            out.volume_driver = definition.driver
    return out


def _resources(target: pb.Resources, resources: ResourcesSpec) -> None:
    target.nano_cpus = resources.nano_cpus
    target.memory_bytes = resources.memory_bytes
    for kind, value in resources.generic:
        target.generic.add().discrete_resource_spec.CopyFrom(pb.GenericResource.DiscreteResource(kind=kind, value=value))


def _update_config(target: pb.UpdateConfig, config: UpdateConfigSpec) -> None:
    target.parallelism = 1 if config.parallelism is None else config.parallelism  # Docker's default
    target.delay = config.delay or 0.0
    target.failure_action = _FAILURE_ACTIONS[config.failure_action or "pause"]
    target.monitor = config.monitor or 0.0
    target.max_failure_ratio = config.max_failure_ratio or 0.0
    target.order = _ORDERS[config.order or "stop-first"]


def _used_networks(stack: StackSpec) -> list[str]:
    return sorted({n.key for s in stack.services.values() for n in s.networks})


def to_network_specs(stack: StackSpec, name: str) -> list[pb.NetworkSpec]:
    """The networks the stack creates: those its services use, except external ones (as Docker,
    declared but unused networks are not created). `default` is a plain overlay unless declared."""
    check_stack_name(name)
    specs = []
    for key in _used_networks(stack):
        definition = stack.networks.get(key, NetworkDef(key=key))
        if definition.external:
            continue
        spec = pb.NetworkSpec(driver=definition.driver, attachable=definition.attachable,
                              internal=definition.internal)
        spec.annotations.name = network_name(stack, name, key)
        spec.annotations.labels.update(_namespaced(definition.labels, name))
        spec.driver_opts.update(definition.driver_opts)
        for subnet, gateway in definition.ipam:
            spec.ipam.add(subnet=subnet, gateway=gateway)
        specs.append(spec)
    return specs


def to_volume_specs(stack: StackSpec, name: str) -> list[pb.VolumeSpec]:
    """The named volumes the stack's services mount, except external ones."""
    check_stack_name(name)
    used = sorted({m.source for s in stack.services.values() for m in s.mounts
                   if m.type == "volume" and m.source})
    specs = []
    for key in used:
        definition = stack.volumes[key]
        if definition.external:
            continue
        spec = pb.VolumeSpec(driver=definition.driver)
        spec.annotations.name = _resource_name(definition, key, name)
        spec.annotations.labels.update(_namespaced(definition.labels, name))
        spec.driver_opts.update(definition.driver_opts)
        specs.append(spec)
    return specs


def to_secret_specs(stack: StackSpec, name: str) -> list[pb.SecretSpec]:
    """The secrets the stack creates (declared, not external), with their contents."""
    check_stack_name(name)
    return [_data_spec(pb.SecretSpec(), d, key, name) for key, d in sorted(stack.secrets.items())
            if not d.external]


def to_config_specs(stack: StackSpec, name: str) -> list[pb.ConfigSpec]:
    """The configs the stack creates (declared, not external), with their contents."""
    check_stack_name(name)
    return [_data_spec(pb.ConfigSpec(), d, key, name) for key, d in sorted(stack.configs.items())
            if not d.external]


def _data_spec(spec, definition: SecretDef, key: str, name: str):
    spec.annotations.name = _resource_name(definition, key, name)
    spec.annotations.labels.update(_namespaced(definition.labels, name))
    spec.data = definition.data or b""
    if definition.template_driver:
        spec.templating.name = definition.template_driver
    return spec


def external_names(stack: StackSpec) -> dict[str, list[str]]:
    """Objects the stack uses but does not create, which must already exist, by kind."""
    used_networks = set(_used_networks(stack))
    used_volumes = {m.source for s in stack.services.values() for m in s.mounts if m.type == "volume"}
    used_secrets = {r.source for s in stack.services.values() for r in s.secrets}
    used_configs = {r.source for s in stack.services.values() for r in s.configs}
    result: dict[str, list[str]] = {}
    for kind, table, used in (("networks", stack.networks, used_networks), ("volumes", stack.volumes, used_volumes),
                              ("secrets", stack.secrets, used_secrets), ("configs", stack.configs, used_configs)):
        result[kind] = sorted(_resource_name(d, k, "") for k, d in table.items() if d.external and k in used)
    return result
