"""The typed result of loading stack files: what `load_stack` returns and `convert` consumes.

Plain frozen dataclasses, already validated: names are resolved against the top-level keys, sizes
are bytes, durations are seconds, CPUs are nano-CPUs, relative paths are absolute, secret and
config contents are read. Optional settings are None when the file did not give them, so the
converter leaves the cluster's defaults in place.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from common.syntax import FILE_GID, FILE_MODE, FILE_UID
from shoal.stack.syntax import PortSpec

__all__ = [
    "ConfigDef", "DependencySpec", "DeploySpec", "FileRef", "HealthcheckSpec", "MountSpec",
    "NetworkDef", "PlacementSpec", "PortSpec", "ResourcesSpec", "RestartPolicySpec", "SecretDef",
    "ServiceDef", "ServiceNetwork", "StackSpec", "UpdateConfigSpec", "VolumeDef",
]


@dataclass(frozen=True)
class MountSpec:
    type: str                    # "bind" | "volume" | "tmpfs"
    target: str
    source: str = ""             # absolute path (bind), volume key (volume; "" = anonymous)
    read_only: bool = False
    tmpfs_size: int = 0
    tmpfs_mode: int = 0          # tmpfs.mode (0: 1777)
    propagation: str = ""        # bind.propagation
    nocopy: bool = False         # volume.nocopy


@dataclass(frozen=True)
class HealthcheckSpec:
    test: tuple[str, ...]        # Docker's form: ("CMD", ...), ("CMD-SHELL", "..."), ("NONE",)
    interval: float | None = None
    timeout: float | None = None
    retries: int | None = None
    start_period: float | None = None
    start_interval: float | None = None


@dataclass(frozen=True)
class RestartPolicySpec:
    condition: str | None = None       # "none" | "on-failure" | "any"
    delay: float | None = None
    max_attempts: int | None = None
    window: float | None = None


@dataclass(frozen=True)
class UpdateConfigSpec:
    parallelism: int | None = None
    delay: float | None = None
    failure_action: str | None = None  # "continue" | "pause" | "rollback"
    monitor: float | None = None
    max_failure_ratio: float | None = None
    order: str | None = None           # "stop-first" | "start-first"


@dataclass(frozen=True)
class ResourcesSpec:
    nano_cpus: int = 0
    memory_bytes: int = 0
    pids: int = 0
    generic: tuple[tuple[str, int], ...] = ()   # reservations' generic_resources: (kind, count)


@dataclass(frozen=True)
class PlacementSpec:
    constraints: tuple[str, ...] = ()
    preferences: tuple[str, ...] = ()  # spread descriptors, e.g. "node.labels.zone"
    max_replicas_per_node: int = 0


@dataclass(frozen=True)
class DeploySpec:
    mode: str = "replicated"           # replicated | global | replicated-job | global-job
    replicas: int | None = None
    limits: ResourcesSpec = ResourcesSpec()
    reservations: ResourcesSpec = ResourcesSpec()
    restart_policy: RestartPolicySpec | None = None
    update_config: UpdateConfigSpec | None = None
    rollback_config: UpdateConfigSpec | None = None
    placement: PlacementSpec = PlacementSpec()
    labels: dict[str, str] = field(default_factory=dict)
    endpoint_mode: str = "vip"         # "vip" | "dnsrr"


@dataclass(frozen=True)
class FileRef:
    """A service's use of a secret or config: which one (its key in the file) and where it lands."""

    source: str
    target: str
    uid: str = FILE_UID
    gid: str = FILE_GID
    mode: int = FILE_MODE


@dataclass(frozen=True)
class DependencySpec:
    service: str
    condition: str = "service_started"  # | "service_healthy" | "service_completed_successfully"
    required: bool = True


@dataclass(frozen=True)
class ServiceNetwork:
    key: str                            # the network's key under the top-level networks
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class ServiceDef:
    name: str                           # the key under services (without the stack prefix)
    where: str                          # "file:line" of its definition, for later messages
    image: str
    entrypoint: tuple[str, ...] | None = None
    command: tuple[str, ...] | None = None
    environment: dict[str, str] = field(default_factory=dict)
    ports: tuple[PortSpec, ...] = ()
    networks: tuple[ServiceNetwork, ...] = ()
    mounts: tuple[MountSpec, ...] = ()
    deploy: DeploySpec = DeploySpec()
    healthcheck: HealthcheckSpec | None = None
    hostname: str = ""
    user: str = ""
    working_dir: str = ""
    stop_grace_period: float | None = None
    stop_signal: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    secrets: tuple[FileRef, ...] = ()
    configs: tuple[FileRef, ...] = ()
    depends_on: tuple[DependencySpec, ...] = ()
    init: bool = False
    restart: str = ""                   # `restart:`, used when deploy.restart_policy is absent
    dns: tuple[str, ...] = ()
    dns_search: tuple[str, ...] = ()
    dns_opt: tuple[str, ...] = ()
    extra_hosts: tuple[str, ...] = ()   # SwarmKit's "IP HOST" entries
    sysctls: dict[str, str] = field(default_factory=dict)
    ulimits: tuple[tuple[str, int, int], ...] = ()   # (name, soft, hard), sorted by name
    read_only: bool = False
    oom_score_adj: int = 0
    tty: bool = False
    stdin_open: bool = False
    group_add: tuple[str, ...] = ()     # supplementary groups: names or GIDs
    logging: tuple[str, tuple[tuple[str, str], ...]] | None = None   # (driver, options) as given
    ignored: tuple[str, ...] = ()       # keys docker stack deploy ignores with a warning


@dataclass(frozen=True)
class NetworkDef:
    key: str
    name: str = ""                      # explicit `name:` (used as is, no stack prefix)
    external: bool = False
    driver: str = "overlay"
    driver_opts: dict[str, str] = field(default_factory=dict)
    attachable: bool = False
    internal: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    ipam: tuple[tuple[str, str], ...] = ()   # (subnet, gateway)


@dataclass(frozen=True)
class VolumeDef:
    key: str
    name: str = ""
    external: bool = False
    driver: str = "local"
    driver_opts: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SecretDef:
    """A top-level secret (or, with `is_config`, config). `data` is the content (None if external)."""

    key: str
    name: str = ""
    external: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    data: bytes | None = field(default=None, repr=False)
    template_driver: str = ""           # configs: "golang" expands the content per task


ConfigDef = SecretDef


@dataclass(frozen=True)
class StackSpec:
    services: dict[str, ServiceDef]
    networks: dict[str, NetworkDef]
    volumes: dict[str, VolumeDef]
    secrets: dict[str, SecretDef]
    configs: dict[str, SecretDef]
    deploy_order: tuple[tuple[str, ...], ...]   # waves: each service after all of the earlier waves
    missing_variables: tuple[str, ...] = ()     # unset variables that were substituted by ""

    def warnings(self) -> list[str]:
        """What docker stack deploy prints before deploying such files: "Ignoring unsupported
        options: build, privileged" and "Ignoring deprecated options:" with the reasons."""
        from shoal.stack.services import DEPRECATED_SERVICE_KEYS
        keys = sorted({key for s in self.services.values() for key in s.ignored})
        unsupported = [k for k in keys if k not in DEPRECATED_SERVICE_KEYS]
        deprecated = [k for k in keys if k in DEPRECATED_SERVICE_KEYS]
        out = []
        if unsupported:
            out.append(f"Ignoring unsupported options: {', '.join(unsupported)}\n")
        if deprecated:
            out.append("Ignoring deprecated options:\n\n" + "\n".join(
                f"{k}: {DEPRECATED_SERVICE_KEYS[k]}" for k in deprecated) + "\n")
        return out
