from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class NodeRole(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WORKER: _ClassVar[NodeRole]
    MANAGER: _ClassVar[NodeRole]

class TaskState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NEW: _ClassVar[TaskState]
    PENDING: _ClassVar[TaskState]
    ASSIGNED: _ClassVar[TaskState]
    ACCEPTED: _ClassVar[TaskState]
    PREPARING: _ClassVar[TaskState]
    READY: _ClassVar[TaskState]
    STARTING: _ClassVar[TaskState]
    RUNNING: _ClassVar[TaskState]
    COMPLETE: _ClassVar[TaskState]
    SHUTDOWN: _ClassVar[TaskState]
    FAILED: _ClassVar[TaskState]
    REJECTED: _ClassVar[TaskState]
    REMOVE: _ClassVar[TaskState]
    ORPHANED: _ClassVar[TaskState]
WORKER: NodeRole
MANAGER: NodeRole
NEW: TaskState
PENDING: TaskState
ASSIGNED: TaskState
ACCEPTED: TaskState
PREPARING: TaskState
READY: TaskState
STARTING: TaskState
RUNNING: TaskState
COMPLETE: TaskState
SHUTDOWN: TaskState
FAILED: TaskState
REJECTED: TaskState
REMOVE: TaskState
ORPHANED: TaskState

class Meta(_message.Message):
    __slots__ = ("version", "created_at", "updated_at")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    version: int
    created_at: float
    updated_at: float
    def __init__(self, version: _Optional[int] = ..., created_at: _Optional[float] = ..., updated_at: _Optional[float] = ...) -> None: ...

class Annotations(_message.Message):
    __slots__ = ("name", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    name: str
    labels: _containers.ScalarMap[str, str]
    def __init__(self, name: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Resources(_message.Message):
    __slots__ = ("nano_cpus", "memory_bytes", "generic")
    NANO_CPUS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    GENERIC_FIELD_NUMBER: _ClassVar[int]
    nano_cpus: int
    memory_bytes: int
    generic: _containers.RepeatedCompositeFieldContainer[GenericResource]
    def __init__(self, nano_cpus: _Optional[int] = ..., memory_bytes: _Optional[int] = ..., generic: _Optional[_Iterable[_Union[GenericResource, _Mapping]]] = ...) -> None: ...

class GenericResource(_message.Message):
    __slots__ = ("named_resource_spec", "discrete_resource_spec")
    class NamedResource(_message.Message):
        __slots__ = ("kind", "value")
        KIND_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        kind: str
        value: str
        def __init__(self, kind: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class DiscreteResource(_message.Message):
        __slots__ = ("kind", "value")
        KIND_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        kind: str
        value: int
        def __init__(self, kind: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    NAMED_RESOURCE_SPEC_FIELD_NUMBER: _ClassVar[int]
    DISCRETE_RESOURCE_SPEC_FIELD_NUMBER: _ClassVar[int]
    named_resource_spec: GenericResource.NamedResource
    discrete_resource_spec: GenericResource.DiscreteResource
    def __init__(self, named_resource_spec: _Optional[_Union[GenericResource.NamedResource, _Mapping]] = ..., discrete_resource_spec: _Optional[_Union[GenericResource.DiscreteResource, _Mapping]] = ...) -> None: ...

class ResourceRequirements(_message.Message):
    __slots__ = ("limits", "reservations", "pids_limit")
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    RESERVATIONS_FIELD_NUMBER: _ClassVar[int]
    PIDS_LIMIT_FIELD_NUMBER: _ClassVar[int]
    limits: Resources
    reservations: Resources
    pids_limit: int
    def __init__(self, limits: _Optional[_Union[Resources, _Mapping]] = ..., reservations: _Optional[_Union[Resources, _Mapping]] = ..., pids_limit: _Optional[int] = ...) -> None: ...

class Platform(_message.Message):
    __slots__ = ("architecture", "os")
    ARCHITECTURE_FIELD_NUMBER: _ClassVar[int]
    OS_FIELD_NUMBER: _ClassVar[int]
    architecture: str
    os: str
    def __init__(self, architecture: _Optional[str] = ..., os: _Optional[str] = ...) -> None: ...

class NodeSpec(_message.Message):
    __slots__ = ("annotations", "desired_role", "availability")
    class Availability(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        ACTIVE: _ClassVar[NodeSpec.Availability]
        PAUSE: _ClassVar[NodeSpec.Availability]
        DRAIN: _ClassVar[NodeSpec.Availability]
    ACTIVE: NodeSpec.Availability
    PAUSE: NodeSpec.Availability
    DRAIN: NodeSpec.Availability
    ANNOTATIONS_FIELD_NUMBER: _ClassVar[int]
    DESIRED_ROLE_FIELD_NUMBER: _ClassVar[int]
    AVAILABILITY_FIELD_NUMBER: _ClassVar[int]
    annotations: Annotations
    desired_role: NodeRole
    availability: NodeSpec.Availability
    def __init__(self, annotations: _Optional[_Union[Annotations, _Mapping]] = ..., desired_role: _Optional[_Union[NodeRole, str]] = ..., availability: _Optional[_Union[NodeSpec.Availability, str]] = ...) -> None: ...

class EngineDescription(_message.Message):
    __slots__ = ("engine_version", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ENGINE_VERSION_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    engine_version: str
    labels: _containers.ScalarMap[str, str]
    def __init__(self, engine_version: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class NodeDescription(_message.Message):
    __slots__ = ("hostname", "platform", "resources", "engine", "grpc_addr", "tls_info")
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    PLATFORM_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    GRPC_ADDR_FIELD_NUMBER: _ClassVar[int]
    TLS_INFO_FIELD_NUMBER: _ClassVar[int]
    hostname: str
    platform: Platform
    resources: Resources
    engine: EngineDescription
    grpc_addr: str
    tls_info: NodeTLSInfo
    def __init__(self, hostname: _Optional[str] = ..., platform: _Optional[_Union[Platform, _Mapping]] = ..., resources: _Optional[_Union[Resources, _Mapping]] = ..., engine: _Optional[_Union[EngineDescription, _Mapping]] = ..., grpc_addr: _Optional[str] = ..., tls_info: _Optional[_Union[NodeTLSInfo, _Mapping]] = ...) -> None: ...

class NodeTLSInfo(_message.Message):
    __slots__ = ("trust_root", "cert_issuer_subject", "cert_issuer_public_key", "cert_not_before", "cert_not_after", "cert_serial")
    TRUST_ROOT_FIELD_NUMBER: _ClassVar[int]
    CERT_ISSUER_SUBJECT_FIELD_NUMBER: _ClassVar[int]
    CERT_ISSUER_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    CERT_NOT_BEFORE_FIELD_NUMBER: _ClassVar[int]
    CERT_NOT_AFTER_FIELD_NUMBER: _ClassVar[int]
    CERT_SERIAL_FIELD_NUMBER: _ClassVar[int]
    trust_root: bytes
    cert_issuer_subject: bytes
    cert_issuer_public_key: bytes
    cert_not_before: float
    cert_not_after: float
    cert_serial: str
    def __init__(self, trust_root: _Optional[bytes] = ..., cert_issuer_subject: _Optional[bytes] = ..., cert_issuer_public_key: _Optional[bytes] = ..., cert_not_before: _Optional[float] = ..., cert_not_after: _Optional[float] = ..., cert_serial: _Optional[str] = ...) -> None: ...

class NodeStatus(_message.Message):
    __slots__ = ("state", "message", "addr")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        UNKNOWN: _ClassVar[NodeStatus.State]
        DOWN: _ClassVar[NodeStatus.State]
        READY: _ClassVar[NodeStatus.State]
        DISCONNECTED: _ClassVar[NodeStatus.State]
    UNKNOWN: NodeStatus.State
    DOWN: NodeStatus.State
    READY: NodeStatus.State
    DISCONNECTED: NodeStatus.State
    STATE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ADDR_FIELD_NUMBER: _ClassVar[int]
    state: NodeStatus.State
    message: str
    addr: str
    def __init__(self, state: _Optional[_Union[NodeStatus.State, str]] = ..., message: _Optional[str] = ..., addr: _Optional[str] = ...) -> None: ...

class ManagerStatus(_message.Message):
    __slots__ = ("raft_addr", "addr", "leader", "reachability")
    class Reachability(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        UNKNOWN: _ClassVar[ManagerStatus.Reachability]
        UNREACHABLE: _ClassVar[ManagerStatus.Reachability]
        REACHABLE: _ClassVar[ManagerStatus.Reachability]
    UNKNOWN: ManagerStatus.Reachability
    UNREACHABLE: ManagerStatus.Reachability
    REACHABLE: ManagerStatus.Reachability
    RAFT_ADDR_FIELD_NUMBER: _ClassVar[int]
    ADDR_FIELD_NUMBER: _ClassVar[int]
    LEADER_FIELD_NUMBER: _ClassVar[int]
    REACHABILITY_FIELD_NUMBER: _ClassVar[int]
    raft_addr: str
    addr: str
    leader: bool
    reachability: ManagerStatus.Reachability
    def __init__(self, raft_addr: _Optional[str] = ..., addr: _Optional[str] = ..., leader: _Optional[bool] = ..., reachability: _Optional[_Union[ManagerStatus.Reachability, str]] = ...) -> None: ...

class Node(_message.Message):
    __slots__ = ("id", "meta", "spec", "description", "status", "manager_status", "role", "certificate_serial", "attachments")
    ID_FIELD_NUMBER: _ClassVar[int]
    META_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MANAGER_STATUS_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_SERIAL_FIELD_NUMBER: _ClassVar[int]
    ATTACHMENTS_FIELD_NUMBER: _ClassVar[int]
    id: str
    meta: Meta
    spec: NodeSpec
    description: NodeDescription
    status: NodeStatus
    manager_status: ManagerStatus
    role: NodeRole
    certificate_serial: str
    attachments: _containers.RepeatedCompositeFieldContainer[NetworkAttachment]
    def __init__(self, id: _Optional[str] = ..., meta: _Optional[_Union[Meta, _Mapping]] = ..., spec: _Optional[_Union[NodeSpec, _Mapping]] = ..., description: _Optional[_Union[NodeDescription, _Mapping]] = ..., status: _Optional[_Union[NodeStatus, _Mapping]] = ..., manager_status: _Optional[_Union[ManagerStatus, _Mapping]] = ..., role: _Optional[_Union[NodeRole, str]] = ..., certificate_serial: _Optional[str] = ..., attachments: _Optional[_Iterable[_Union[NetworkAttachment, _Mapping]]] = ...) -> None: ...

class Mount(_message.Message):
    __slots__ = ("type", "source", "target", "read_only", "tmpfs_size_bytes", "volume_nocopy", "volume_labels", "volume_driver", "bind_propagation", "tmpfs_mode", "volume_options")
    class Type(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        BIND: _ClassVar[Mount.Type]
        VOLUME: _ClassVar[Mount.Type]
        TMPFS: _ClassVar[Mount.Type]
    BIND: Mount.Type
    VOLUME: Mount.Type
    TMPFS: Mount.Type
    class VolumeLabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class VolumeOptionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TYPE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    READ_ONLY_FIELD_NUMBER: _ClassVar[int]
    TMPFS_SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    VOLUME_NOCOPY_FIELD_NUMBER: _ClassVar[int]
    VOLUME_LABELS_FIELD_NUMBER: _ClassVar[int]
    VOLUME_DRIVER_FIELD_NUMBER: _ClassVar[int]
    BIND_PROPAGATION_FIELD_NUMBER: _ClassVar[int]
    TMPFS_MODE_FIELD_NUMBER: _ClassVar[int]
    VOLUME_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    type: Mount.Type
    source: str
    target: str
    read_only: bool
    tmpfs_size_bytes: int
    volume_nocopy: bool
    volume_labels: _containers.ScalarMap[str, str]
    volume_driver: str
    bind_propagation: str
    tmpfs_mode: int
    volume_options: _containers.ScalarMap[str, str]
    def __init__(self, type: _Optional[_Union[Mount.Type, str]] = ..., source: _Optional[str] = ..., target: _Optional[str] = ..., read_only: _Optional[bool] = ..., tmpfs_size_bytes: _Optional[int] = ..., volume_nocopy: _Optional[bool] = ..., volume_labels: _Optional[_Mapping[str, str]] = ..., volume_driver: _Optional[str] = ..., bind_propagation: _Optional[str] = ..., tmpfs_mode: _Optional[int] = ..., volume_options: _Optional[_Mapping[str, str]] = ...) -> None: ...

class HealthConfig(_message.Message):
    __slots__ = ("test", "interval", "timeout", "retries", "start_period", "start_interval")
    TEST_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    RETRIES_FIELD_NUMBER: _ClassVar[int]
    START_PERIOD_FIELD_NUMBER: _ClassVar[int]
    START_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    test: _containers.RepeatedScalarFieldContainer[str]
    interval: float
    timeout: float
    retries: int
    start_period: float
    start_interval: float
    def __init__(self, test: _Optional[_Iterable[str]] = ..., interval: _Optional[float] = ..., timeout: _Optional[float] = ..., retries: _Optional[int] = ..., start_period: _Optional[float] = ..., start_interval: _Optional[float] = ...) -> None: ...

class ContainerSpec(_message.Message):
    __slots__ = ("image", "command", "args", "env", "dir", "user", "hostname", "labels", "mounts", "stop_grace_period", "stop_signal", "healthcheck", "cap_add", "cap_drop", "init", "secrets", "configs", "privileges", "dns_config", "hosts", "read_only", "sysctls", "ulimits", "oom_score_adj", "groups", "tty", "open_stdin")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class SysctlsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class DNSConfig(_message.Message):
        __slots__ = ("nameservers", "search", "options")
        NAMESERVERS_FIELD_NUMBER: _ClassVar[int]
        SEARCH_FIELD_NUMBER: _ClassVar[int]
        OPTIONS_FIELD_NUMBER: _ClassVar[int]
        nameservers: _containers.RepeatedScalarFieldContainer[str]
        search: _containers.RepeatedScalarFieldContainer[str]
        options: _containers.RepeatedScalarFieldContainer[str]
        def __init__(self, nameservers: _Optional[_Iterable[str]] = ..., search: _Optional[_Iterable[str]] = ..., options: _Optional[_Iterable[str]] = ...) -> None: ...
    class Ulimit(_message.Message):
        __slots__ = ("name", "soft", "hard")
        NAME_FIELD_NUMBER: _ClassVar[int]
        SOFT_FIELD_NUMBER: _ClassVar[int]
        HARD_FIELD_NUMBER: _ClassVar[int]
        name: str
        soft: int
        hard: int
        def __init__(self, name: _Optional[str] = ..., soft: _Optional[int] = ..., hard: _Optional[int] = ...) -> None: ...
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    DIR_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    MOUNTS_FIELD_NUMBER: _ClassVar[int]
    STOP_GRACE_PERIOD_FIELD_NUMBER: _ClassVar[int]
    STOP_SIGNAL_FIELD_NUMBER: _ClassVar[int]
    HEALTHCHECK_FIELD_NUMBER: _ClassVar[int]
    CAP_ADD_FIELD_NUMBER: _ClassVar[int]
    CAP_DROP_FIELD_NUMBER: _ClassVar[int]
    INIT_FIELD_NUMBER: _ClassVar[int]
    SECRETS_FIELD_NUMBER: _ClassVar[int]
    CONFIGS_FIELD_NUMBER: _ClassVar[int]
    PRIVILEGES_FIELD_NUMBER: _ClassVar[int]
    DNS_CONFIG_FIELD_NUMBER: _ClassVar[int]
    HOSTS_FIELD_NUMBER: _ClassVar[int]
    READ_ONLY_FIELD_NUMBER: _ClassVar[int]
    SYSCTLS_FIELD_NUMBER: _ClassVar[int]
    ULIMITS_FIELD_NUMBER: _ClassVar[int]
    OOM_SCORE_ADJ_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    TTY_FIELD_NUMBER: _ClassVar[int]
    OPEN_STDIN_FIELD_NUMBER: _ClassVar[int]
    image: str
    command: _containers.RepeatedScalarFieldContainer[str]
    args: _containers.RepeatedScalarFieldContainer[str]
    env: _containers.RepeatedScalarFieldContainer[str]
    dir: str
    user: str
    hostname: str
    labels: _containers.ScalarMap[str, str]
    mounts: _containers.RepeatedCompositeFieldContainer[Mount]
    stop_grace_period: float
    stop_signal: str
    healthcheck: HealthConfig
    cap_add: _containers.RepeatedScalarFieldContainer[str]
    cap_drop: _containers.RepeatedScalarFieldContainer[str]
    init: bool
    secrets: _containers.RepeatedCompositeFieldContainer[SecretReference]
    configs: _containers.RepeatedCompositeFieldContainer[ConfigReference]
    privileges: Privileges
    dns_config: ContainerSpec.DNSConfig
    hosts: _containers.RepeatedScalarFieldContainer[str]
    read_only: bool
    sysctls: _containers.ScalarMap[str, str]
    ulimits: _containers.RepeatedCompositeFieldContainer[ContainerSpec.Ulimit]
    oom_score_adj: int
    groups: _containers.RepeatedScalarFieldContainer[str]
    tty: bool
    open_stdin: bool
    def __init__(self, image: _Optional[str] = ..., command: _Optional[_Iterable[str]] = ..., args: _Optional[_Iterable[str]] = ..., env: _Optional[_Iterable[str]] = ..., dir: _Optional[str] = ..., user: _Optional[str] = ..., hostname: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., mounts: _Optional[_Iterable[_Union[Mount, _Mapping]]] = ..., stop_grace_period: _Optional[float] = ..., stop_signal: _Optional[str] = ..., healthcheck: _Optional[_Union[HealthConfig, _Mapping]] = ..., cap_add: _Optional[_Iterable[str]] = ..., cap_drop: _Optional[_Iterable[str]] = ..., init: _Optional[bool] = ..., secrets: _Optional[_Iterable[_Union[SecretReference, _Mapping]]] = ..., configs: _Optional[_Iterable[_Union[ConfigReference, _Mapping]]] = ..., privileges: _Optional[_Union[Privileges, _Mapping]] = ..., dns_config: _Optional[_Union[ContainerSpec.DNSConfig, _Mapping]] = ..., hosts: _Optional[_Iterable[str]] = ..., read_only: _Optional[bool] = ..., sysctls: _Optional[_Mapping[str, str]] = ..., ulimits: _Optional[_Iterable[_Union[ContainerSpec.Ulimit, _Mapping]]] = ..., oom_score_adj: _Optional[int] = ..., groups: _Optional[_Iterable[str]] = ..., tty: _Optional[bool] = ..., open_stdin: _Optional[bool] = ...) -> None: ...

class Privileges(_message.Message):
    __slots__ = ("seccomp", "no_new_privileges")
    class SeccompOpts(_message.Message):
        __slots__ = ("mode", "profile")
        class SeccompMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
            __slots__ = ()
            DEFAULT: _ClassVar[Privileges.SeccompOpts.SeccompMode]
            UNCONFINED: _ClassVar[Privileges.SeccompOpts.SeccompMode]
            CUSTOM: _ClassVar[Privileges.SeccompOpts.SeccompMode]
        DEFAULT: Privileges.SeccompOpts.SeccompMode
        UNCONFINED: Privileges.SeccompOpts.SeccompMode
        CUSTOM: Privileges.SeccompOpts.SeccompMode
        MODE_FIELD_NUMBER: _ClassVar[int]
        PROFILE_FIELD_NUMBER: _ClassVar[int]
        mode: Privileges.SeccompOpts.SeccompMode
        profile: bytes
        def __init__(self, mode: _Optional[_Union[Privileges.SeccompOpts.SeccompMode, str]] = ..., profile: _Optional[bytes] = ...) -> None: ...
    SECCOMP_FIELD_NUMBER: _ClassVar[int]
    NO_NEW_PRIVILEGES_FIELD_NUMBER: _ClassVar[int]
    seccomp: Privileges.SeccompOpts
    no_new_privileges: bool
    def __init__(self, seccomp: _Optional[_Union[Privileges.SeccompOpts, _Mapping]] = ..., no_new_privileges: _Optional[bool] = ...) -> None: ...

class FileTarget(_message.Message):
    __slots__ = ("name", "uid", "gid", "mode")
    NAME_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    GID_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    name: str
    uid: str
    gid: str
    mode: int
    def __init__(self, name: _Optional[str] = ..., uid: _Optional[str] = ..., gid: _Optional[str] = ..., mode: _Optional[int] = ...) -> None: ...

class SecretReference(_message.Message):
    __slots__ = ("secret_id", "secret_name", "file")
    SECRET_ID_FIELD_NUMBER: _ClassVar[int]
    SECRET_NAME_FIELD_NUMBER: _ClassVar[int]
    FILE_FIELD_NUMBER: _ClassVar[int]
    secret_id: str
    secret_name: str
    file: FileTarget
    def __init__(self, secret_id: _Optional[str] = ..., secret_name: _Optional[str] = ..., file: _Optional[_Union[FileTarget, _Mapping]] = ...) -> None: ...

class ConfigReference(_message.Message):
    __slots__ = ("config_id", "config_name", "file")
    CONFIG_ID_FIELD_NUMBER: _ClassVar[int]
    CONFIG_NAME_FIELD_NUMBER: _ClassVar[int]
    FILE_FIELD_NUMBER: _ClassVar[int]
    config_id: str
    config_name: str
    file: FileTarget
    def __init__(self, config_id: _Optional[str] = ..., config_name: _Optional[str] = ..., file: _Optional[_Union[FileTarget, _Mapping]] = ...) -> None: ...

class RestartPolicy(_message.Message):
    __slots__ = ("condition", "delay", "max_attempts", "window")
    class Condition(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        ANY: _ClassVar[RestartPolicy.Condition]
        NONE: _ClassVar[RestartPolicy.Condition]
        ON_FAILURE: _ClassVar[RestartPolicy.Condition]
    ANY: RestartPolicy.Condition
    NONE: RestartPolicy.Condition
    ON_FAILURE: RestartPolicy.Condition
    CONDITION_FIELD_NUMBER: _ClassVar[int]
    DELAY_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    condition: RestartPolicy.Condition
    delay: float
    max_attempts: int
    window: float
    def __init__(self, condition: _Optional[_Union[RestartPolicy.Condition, str]] = ..., delay: _Optional[float] = ..., max_attempts: _Optional[int] = ..., window: _Optional[float] = ...) -> None: ...

class PlacementPreference(_message.Message):
    __slots__ = ("spread_descriptor",)
    SPREAD_DESCRIPTOR_FIELD_NUMBER: _ClassVar[int]
    spread_descriptor: str
    def __init__(self, spread_descriptor: _Optional[str] = ...) -> None: ...

class Placement(_message.Message):
    __slots__ = ("constraints", "preferences", "max_replicas")
    CONSTRAINTS_FIELD_NUMBER: _ClassVar[int]
    PREFERENCES_FIELD_NUMBER: _ClassVar[int]
    MAX_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    constraints: _containers.RepeatedScalarFieldContainer[str]
    preferences: _containers.RepeatedCompositeFieldContainer[PlacementPreference]
    max_replicas: int
    def __init__(self, constraints: _Optional[_Iterable[str]] = ..., preferences: _Optional[_Iterable[_Union[PlacementPreference, _Mapping]]] = ..., max_replicas: _Optional[int] = ...) -> None: ...

class TaskSpec(_message.Message):
    __slots__ = ("container", "resources", "restart", "placement", "networks", "force_update", "attachment", "log_driver")
    CONTAINER_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    RESTART_FIELD_NUMBER: _ClassVar[int]
    PLACEMENT_FIELD_NUMBER: _ClassVar[int]
    NETWORKS_FIELD_NUMBER: _ClassVar[int]
    FORCE_UPDATE_FIELD_NUMBER: _ClassVar[int]
    ATTACHMENT_FIELD_NUMBER: _ClassVar[int]
    LOG_DRIVER_FIELD_NUMBER: _ClassVar[int]
    container: ContainerSpec
    resources: ResourceRequirements
    restart: RestartPolicy
    placement: Placement
    networks: _containers.RepeatedCompositeFieldContainer[NetworkAttachmentConfig]
    force_update: int
    attachment: NetworkAttachmentSpec
    log_driver: Driver
    def __init__(self, container: _Optional[_Union[ContainerSpec, _Mapping]] = ..., resources: _Optional[_Union[ResourceRequirements, _Mapping]] = ..., restart: _Optional[_Union[RestartPolicy, _Mapping]] = ..., placement: _Optional[_Union[Placement, _Mapping]] = ..., networks: _Optional[_Iterable[_Union[NetworkAttachmentConfig, _Mapping]]] = ..., force_update: _Optional[int] = ..., attachment: _Optional[_Union[NetworkAttachmentSpec, _Mapping]] = ..., log_driver: _Optional[_Union[Driver, _Mapping]] = ...) -> None: ...

class Driver(_message.Message):
    __slots__ = ("name", "options")
    class OptionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    name: str
    options: _containers.ScalarMap[str, str]
    def __init__(self, name: _Optional[str] = ..., options: _Optional[_Mapping[str, str]] = ...) -> None: ...

class NetworkAttachmentSpec(_message.Message):
    __slots__ = ("container_id",)
    CONTAINER_ID_FIELD_NUMBER: _ClassVar[int]
    container_id: str
    def __init__(self, container_id: _Optional[str] = ...) -> None: ...

class NetworkAttachmentConfig(_message.Message):
    __slots__ = ("target", "aliases", "addresses")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    target: str
    aliases: _containers.RepeatedScalarFieldContainer[str]
    addresses: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, target: _Optional[str] = ..., aliases: _Optional[_Iterable[str]] = ..., addresses: _Optional[_Iterable[str]] = ...) -> None: ...

class UpdateConfig(_message.Message):
    __slots__ = ("parallelism", "delay", "failure_action", "monitor", "max_failure_ratio", "order")
    class FailureAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        PAUSE: _ClassVar[UpdateConfig.FailureAction]
        CONTINUE: _ClassVar[UpdateConfig.FailureAction]
        ROLLBACK: _ClassVar[UpdateConfig.FailureAction]
    PAUSE: UpdateConfig.FailureAction
    CONTINUE: UpdateConfig.FailureAction
    ROLLBACK: UpdateConfig.FailureAction
    class Order(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STOP_FIRST: _ClassVar[UpdateConfig.Order]
        START_FIRST: _ClassVar[UpdateConfig.Order]
    STOP_FIRST: UpdateConfig.Order
    START_FIRST: UpdateConfig.Order
    PARALLELISM_FIELD_NUMBER: _ClassVar[int]
    DELAY_FIELD_NUMBER: _ClassVar[int]
    FAILURE_ACTION_FIELD_NUMBER: _ClassVar[int]
    MONITOR_FIELD_NUMBER: _ClassVar[int]
    MAX_FAILURE_RATIO_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    parallelism: int
    delay: float
    failure_action: UpdateConfig.FailureAction
    monitor: float
    max_failure_ratio: float
    order: UpdateConfig.Order
    def __init__(self, parallelism: _Optional[int] = ..., delay: _Optional[float] = ..., failure_action: _Optional[_Union[UpdateConfig.FailureAction, str]] = ..., monitor: _Optional[float] = ..., max_failure_ratio: _Optional[float] = ..., order: _Optional[_Union[UpdateConfig.Order, str]] = ...) -> None: ...

class PortConfig(_message.Message):
    __slots__ = ("name", "protocol", "target_port", "published_port", "publish_mode", "traffic_policy")
    class Protocol(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        TCP: _ClassVar[PortConfig.Protocol]
        UDP: _ClassVar[PortConfig.Protocol]
    TCP: PortConfig.Protocol
    UDP: PortConfig.Protocol
    class PublishMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        INGRESS: _ClassVar[PortConfig.PublishMode]
        HOST: _ClassVar[PortConfig.PublishMode]
    INGRESS: PortConfig.PublishMode
    HOST: PortConfig.PublishMode
    class TrafficPolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        CLUSTER: _ClassVar[PortConfig.TrafficPolicy]
        LOCAL: _ClassVar[PortConfig.TrafficPolicy]
    CLUSTER: PortConfig.TrafficPolicy
    LOCAL: PortConfig.TrafficPolicy
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    TARGET_PORT_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_PORT_FIELD_NUMBER: _ClassVar[int]
    PUBLISH_MODE_FIELD_NUMBER: _ClassVar[int]
    TRAFFIC_POLICY_FIELD_NUMBER: _ClassVar[int]
    name: str
    protocol: PortConfig.Protocol
    target_port: int
    published_port: int
    publish_mode: PortConfig.PublishMode
    traffic_policy: PortConfig.TrafficPolicy
    def __init__(self, name: _Optional[str] = ..., protocol: _Optional[_Union[PortConfig.Protocol, str]] = ..., target_port: _Optional[int] = ..., published_port: _Optional[int] = ..., publish_mode: _Optional[_Union[PortConfig.PublishMode, str]] = ..., traffic_policy: _Optional[_Union[PortConfig.TrafficPolicy, str]] = ...) -> None: ...

class EndpointSpec(_message.Message):
    __slots__ = ("mode", "ports")
    class ResolutionMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        VIP: _ClassVar[EndpointSpec.ResolutionMode]
        DNSRR: _ClassVar[EndpointSpec.ResolutionMode]
    VIP: EndpointSpec.ResolutionMode
    DNSRR: EndpointSpec.ResolutionMode
    MODE_FIELD_NUMBER: _ClassVar[int]
    PORTS_FIELD_NUMBER: _ClassVar[int]
    mode: EndpointSpec.ResolutionMode
    ports: _containers.RepeatedCompositeFieldContainer[PortConfig]
    def __init__(self, mode: _Optional[_Union[EndpointSpec.ResolutionMode, str]] = ..., ports: _Optional[_Iterable[_Union[PortConfig, _Mapping]]] = ...) -> None: ...

class ServiceSpec(_message.Message):
    __slots__ = ("annotations", "task", "mode", "replicas", "update", "rollback", "endpoint", "max_concurrent")
    class Mode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        REPLICATED: _ClassVar[ServiceSpec.Mode]
        GLOBAL: _ClassVar[ServiceSpec.Mode]
        REPLICATED_JOB: _ClassVar[ServiceSpec.Mode]
        GLOBAL_JOB: _ClassVar[ServiceSpec.Mode]
    REPLICATED: ServiceSpec.Mode
    GLOBAL: ServiceSpec.Mode
    REPLICATED_JOB: ServiceSpec.Mode
    GLOBAL_JOB: ServiceSpec.Mode
    ANNOTATIONS_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    UPDATE_FIELD_NUMBER: _ClassVar[int]
    ROLLBACK_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENT_FIELD_NUMBER: _ClassVar[int]
    annotations: Annotations
    task: TaskSpec
    mode: ServiceSpec.Mode
    replicas: int
    update: UpdateConfig
    rollback: UpdateConfig
    endpoint: EndpointSpec
    max_concurrent: int
    def __init__(self, annotations: _Optional[_Union[Annotations, _Mapping]] = ..., task: _Optional[_Union[TaskSpec, _Mapping]] = ..., mode: _Optional[_Union[ServiceSpec.Mode, str]] = ..., replicas: _Optional[int] = ..., update: _Optional[_Union[UpdateConfig, _Mapping]] = ..., rollback: _Optional[_Union[UpdateConfig, _Mapping]] = ..., endpoint: _Optional[_Union[EndpointSpec, _Mapping]] = ..., max_concurrent: _Optional[int] = ...) -> None: ...

class UpdateStatus(_message.Message):
    __slots__ = ("state", "started_at", "completed_at", "message", "running_at", "failed_slots")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        UNKNOWN: _ClassVar[UpdateStatus.State]
        UPDATING: _ClassVar[UpdateStatus.State]
        PAUSED: _ClassVar[UpdateStatus.State]
        COMPLETED: _ClassVar[UpdateStatus.State]
        ROLLBACK_STARTED: _ClassVar[UpdateStatus.State]
        ROLLBACK_PAUSED: _ClassVar[UpdateStatus.State]
        ROLLBACK_COMPLETED: _ClassVar[UpdateStatus.State]
    UNKNOWN: UpdateStatus.State
    UPDATING: UpdateStatus.State
    PAUSED: UpdateStatus.State
    COMPLETED: UpdateStatus.State
    ROLLBACK_STARTED: UpdateStatus.State
    ROLLBACK_PAUSED: UpdateStatus.State
    ROLLBACK_COMPLETED: UpdateStatus.State
    class RunningAtEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    STATE_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_AT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RUNNING_AT_FIELD_NUMBER: _ClassVar[int]
    FAILED_SLOTS_FIELD_NUMBER: _ClassVar[int]
    state: UpdateStatus.State
    started_at: float
    completed_at: float
    message: str
    running_at: _containers.ScalarMap[str, float]
    failed_slots: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, state: _Optional[_Union[UpdateStatus.State, str]] = ..., started_at: _Optional[float] = ..., completed_at: _Optional[float] = ..., message: _Optional[str] = ..., running_at: _Optional[_Mapping[str, float]] = ..., failed_slots: _Optional[_Iterable[str]] = ...) -> None: ...

class Endpoint(_message.Message):
    __slots__ = ("spec", "ports", "virtual_ips")
    class VirtualIP(_message.Message):
        __slots__ = ("network_id", "addr")
        NETWORK_ID_FIELD_NUMBER: _ClassVar[int]
        ADDR_FIELD_NUMBER: _ClassVar[int]
        network_id: str
        addr: str
        def __init__(self, network_id: _Optional[str] = ..., addr: _Optional[str] = ...) -> None: ...
    SPEC_FIELD_NUMBER: _ClassVar[int]
    PORTS_FIELD_NUMBER: _ClassVar[int]
    VIRTUAL_IPS_FIELD_NUMBER: _ClassVar[int]
    spec: EndpointSpec
    ports: _containers.RepeatedCompositeFieldContainer[PortConfig]
    virtual_ips: _containers.RepeatedCompositeFieldContainer[Endpoint.VirtualIP]
    def __init__(self, spec: _Optional[_Union[EndpointSpec, _Mapping]] = ..., ports: _Optional[_Iterable[_Union[PortConfig, _Mapping]]] = ..., virtual_ips: _Optional[_Iterable[_Union[Endpoint.VirtualIP, _Mapping]]] = ...) -> None: ...

class Service(_message.Message):
    __slots__ = ("id", "meta", "spec", "previous_spec", "endpoint", "update_status", "spec_version", "allocation_error", "spec_base_version")
    ID_FIELD_NUMBER: _ClassVar[int]
    META_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_SPEC_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    UPDATE_STATUS_FIELD_NUMBER: _ClassVar[int]
    SPEC_VERSION_FIELD_NUMBER: _ClassVar[int]
    ALLOCATION_ERROR_FIELD_NUMBER: _ClassVar[int]
    SPEC_BASE_VERSION_FIELD_NUMBER: _ClassVar[int]
    id: str
    meta: Meta
    spec: ServiceSpec
    previous_spec: ServiceSpec
    endpoint: Endpoint
    update_status: UpdateStatus
    spec_version: int
    allocation_error: str
    spec_base_version: int
    def __init__(self, id: _Optional[str] = ..., meta: _Optional[_Union[Meta, _Mapping]] = ..., spec: _Optional[_Union[ServiceSpec, _Mapping]] = ..., previous_spec: _Optional[_Union[ServiceSpec, _Mapping]] = ..., endpoint: _Optional[_Union[Endpoint, _Mapping]] = ..., update_status: _Optional[_Union[UpdateStatus, _Mapping]] = ..., spec_version: _Optional[int] = ..., allocation_error: _Optional[str] = ..., spec_base_version: _Optional[int] = ...) -> None: ...

class TaskStatus(_message.Message):
    __slots__ = ("state", "timestamp", "message", "err", "exit_code", "container_id", "pid", "health", "failing_streak")
    STATE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ERR_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_ID_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    FAILING_STREAK_FIELD_NUMBER: _ClassVar[int]
    state: TaskState
    timestamp: float
    message: str
    err: str
    exit_code: int
    container_id: str
    pid: int
    health: str
    failing_streak: int
    def __init__(self, state: _Optional[_Union[TaskState, str]] = ..., timestamp: _Optional[float] = ..., message: _Optional[str] = ..., err: _Optional[str] = ..., exit_code: _Optional[int] = ..., container_id: _Optional[str] = ..., pid: _Optional[int] = ..., health: _Optional[str] = ..., failing_streak: _Optional[int] = ...) -> None: ...

class NetworkAttachment(_message.Message):
    __slots__ = ("network_id", "addresses", "aliases")
    NETWORK_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    network_id: str
    addresses: _containers.RepeatedScalarFieldContainer[str]
    aliases: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, network_id: _Optional[str] = ..., addresses: _Optional[_Iterable[str]] = ..., aliases: _Optional[_Iterable[str]] = ...) -> None: ...

class Task(_message.Message):
    __slots__ = ("id", "meta", "spec", "service_id", "slot", "node_id", "annotations", "status", "desired_state", "networks", "endpoint", "spec_version", "restart_at", "restarts", "assigned_generic_resources", "service_annotations")
    ID_FIELD_NUMBER: _ClassVar[int]
    META_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    SERVICE_ID_FIELD_NUMBER: _ClassVar[int]
    SLOT_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ANNOTATIONS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DESIRED_STATE_FIELD_NUMBER: _ClassVar[int]
    NETWORKS_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    SPEC_VERSION_FIELD_NUMBER: _ClassVar[int]
    RESTART_AT_FIELD_NUMBER: _ClassVar[int]
    RESTARTS_FIELD_NUMBER: _ClassVar[int]
    ASSIGNED_GENERIC_RESOURCES_FIELD_NUMBER: _ClassVar[int]
    SERVICE_ANNOTATIONS_FIELD_NUMBER: _ClassVar[int]
    id: str
    meta: Meta
    spec: TaskSpec
    service_id: str
    slot: int
    node_id: str
    annotations: Annotations
    status: TaskStatus
    desired_state: TaskState
    networks: _containers.RepeatedCompositeFieldContainer[NetworkAttachment]
    endpoint: Endpoint
    spec_version: int
    restart_at: float
    restarts: _containers.RepeatedScalarFieldContainer[float]
    assigned_generic_resources: _containers.RepeatedCompositeFieldContainer[GenericResource]
    service_annotations: Annotations
    def __init__(self, id: _Optional[str] = ..., meta: _Optional[_Union[Meta, _Mapping]] = ..., spec: _Optional[_Union[TaskSpec, _Mapping]] = ..., service_id: _Optional[str] = ..., slot: _Optional[int] = ..., node_id: _Optional[str] = ..., annotations: _Optional[_Union[Annotations, _Mapping]] = ..., status: _Optional[_Union[TaskStatus, _Mapping]] = ..., desired_state: _Optional[_Union[TaskState, str]] = ..., networks: _Optional[_Iterable[_Union[NetworkAttachment, _Mapping]]] = ..., endpoint: _Optional[_Union[Endpoint, _Mapping]] = ..., spec_version: _Optional[int] = ..., restart_at: _Optional[float] = ..., restarts: _Optional[_Iterable[float]] = ..., assigned_generic_resources: _Optional[_Iterable[_Union[GenericResource, _Mapping]]] = ..., service_annotations: _Optional[_Union[Annotations, _Mapping]] = ...) -> None: ...

class IPAMConfig(_message.Message):
    __slots__ = ("subnet", "gateway")
    SUBNET_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_FIELD_NUMBER: _ClassVar[int]
    subnet: str
    gateway: str
    def __init__(self, subnet: _Optional[str] = ..., gateway: _Optional[str] = ...) -> None: ...

class NetworkSpec(_message.Message):
    __slots__ = ("annotations", "driver", "driver_opts", "ipam", "attachable", "internal", "ingress")
    class DriverOptsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ANNOTATIONS_FIELD_NUMBER: _ClassVar[int]
    DRIVER_FIELD_NUMBER: _ClassVar[int]
    DRIVER_OPTS_FIELD_NUMBER: _ClassVar[int]
    IPAM_FIELD_NUMBER: _ClassVar[int]
    ATTACHABLE_FIELD_NUMBER: _ClassVar[int]
    INTERNAL_FIELD_NUMBER: _ClassVar[int]
    INGRESS_FIELD_NUMBER: _ClassVar[int]
    annotations: Annotations
    driver: str
    driver_opts: _containers.ScalarMap[str, str]
    ipam: _containers.RepeatedCompositeFieldContainer[IPAMConfig]
    attachable: bool
    internal: bool
    ingress: bool
    def __init__(self, annotations: _Optional[_Union[Annotations, _Mapping]] = ..., driver: _Optional[str] = ..., driver_opts: _Optional[_Mapping[str, str]] = ..., ipam: _Optional[_Iterable[_Union[IPAMConfig, _Mapping]]] = ..., attachable: _Optional[bool] = ..., internal: _Optional[bool] = ..., ingress: _Optional[bool] = ...) -> None: ...

class Network(_message.Message):
    __slots__ = ("id", "meta", "spec", "vni", "ipam")
    ID_FIELD_NUMBER: _ClassVar[int]
    META_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    VNI_FIELD_NUMBER: _ClassVar[int]
    IPAM_FIELD_NUMBER: _ClassVar[int]
    id: str
    meta: Meta
    spec: NetworkSpec
    vni: int
    ipam: _containers.RepeatedCompositeFieldContainer[IPAMConfig]
    def __init__(self, id: _Optional[str] = ..., meta: _Optional[_Union[Meta, _Mapping]] = ..., spec: _Optional[_Union[NetworkSpec, _Mapping]] = ..., vni: _Optional[int] = ..., ipam: _Optional[_Iterable[_Union[IPAMConfig, _Mapping]]] = ...) -> None: ...

class VolumeSpec(_message.Message):
    __slots__ = ("annotations", "driver", "driver_opts")
    class DriverOptsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ANNOTATIONS_FIELD_NUMBER: _ClassVar[int]
    DRIVER_FIELD_NUMBER: _ClassVar[int]
    DRIVER_OPTS_FIELD_NUMBER: _ClassVar[int]
    annotations: Annotations
    driver: str
    driver_opts: _containers.ScalarMap[str, str]
    def __init__(self, annotations: _Optional[_Union[Annotations, _Mapping]] = ..., driver: _Optional[str] = ..., driver_opts: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Volume(_message.Message):
    __slots__ = ("id", "meta", "spec")
    ID_FIELD_NUMBER: _ClassVar[int]
    META_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    id: str
    meta: Meta
    spec: VolumeSpec
    def __init__(self, id: _Optional[str] = ..., meta: _Optional[_Union[Meta, _Mapping]] = ..., spec: _Optional[_Union[VolumeSpec, _Mapping]] = ...) -> None: ...

class SecretSpec(_message.Message):
    __slots__ = ("annotations", "data")
    ANNOTATIONS_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    annotations: Annotations
    data: bytes
    def __init__(self, annotations: _Optional[_Union[Annotations, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class Secret(_message.Message):
    __slots__ = ("id", "meta", "spec")
    ID_FIELD_NUMBER: _ClassVar[int]
    META_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    id: str
    meta: Meta
    spec: SecretSpec
    def __init__(self, id: _Optional[str] = ..., meta: _Optional[_Union[Meta, _Mapping]] = ..., spec: _Optional[_Union[SecretSpec, _Mapping]] = ...) -> None: ...

class ConfigSpec(_message.Message):
    __slots__ = ("annotations", "data", "templating")
    ANNOTATIONS_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    TEMPLATING_FIELD_NUMBER: _ClassVar[int]
    annotations: Annotations
    data: bytes
    templating: Driver
    def __init__(self, annotations: _Optional[_Union[Annotations, _Mapping]] = ..., data: _Optional[bytes] = ..., templating: _Optional[_Union[Driver, _Mapping]] = ...) -> None: ...

class Config(_message.Message):
    __slots__ = ("id", "meta", "spec")
    ID_FIELD_NUMBER: _ClassVar[int]
    META_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    id: str
    meta: Meta
    spec: ConfigSpec
    def __init__(self, id: _Optional[str] = ..., meta: _Optional[_Union[Meta, _Mapping]] = ..., spec: _Optional[_Union[ConfigSpec, _Mapping]] = ...) -> None: ...

class DispatcherConfig(_message.Message):
    __slots__ = ("heartbeat_period",)
    HEARTBEAT_PERIOD_FIELD_NUMBER: _ClassVar[int]
    heartbeat_period: float
    def __init__(self, heartbeat_period: _Optional[float] = ...) -> None: ...

class OrchestrationConfig(_message.Message):
    __slots__ = ("task_history_retention_limit",)
    TASK_HISTORY_RETENTION_LIMIT_FIELD_NUMBER: _ClassVar[int]
    task_history_retention_limit: int
    def __init__(self, task_history_retention_limit: _Optional[int] = ...) -> None: ...

class CAConfig(_message.Message):
    __slots__ = ("node_cert_expiry", "signing_ca_cert", "signing_ca_key", "force_rotate")
    NODE_CERT_EXPIRY_FIELD_NUMBER: _ClassVar[int]
    SIGNING_CA_CERT_FIELD_NUMBER: _ClassVar[int]
    SIGNING_CA_KEY_FIELD_NUMBER: _ClassVar[int]
    FORCE_ROTATE_FIELD_NUMBER: _ClassVar[int]
    node_cert_expiry: float
    signing_ca_cert: bytes
    signing_ca_key: bytes
    force_rotate: int
    def __init__(self, node_cert_expiry: _Optional[float] = ..., signing_ca_cert: _Optional[bytes] = ..., signing_ca_key: _Optional[bytes] = ..., force_rotate: _Optional[int] = ...) -> None: ...

class RaftConfig(_message.Message):
    __slots__ = ("snapshot_interval", "election_tick", "heartbeat_tick")
    SNAPSHOT_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    ELECTION_TICK_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_TICK_FIELD_NUMBER: _ClassVar[int]
    snapshot_interval: int
    election_tick: int
    heartbeat_tick: int
    def __init__(self, snapshot_interval: _Optional[int] = ..., election_tick: _Optional[int] = ..., heartbeat_tick: _Optional[int] = ...) -> None: ...

class ClusterSpec(_message.Message):
    __slots__ = ("annotations", "dispatcher", "orchestration", "raft", "default_addr_pool", "subnet_size", "ca_config", "encryption_config")
    ANNOTATIONS_FIELD_NUMBER: _ClassVar[int]
    DISPATCHER_FIELD_NUMBER: _ClassVar[int]
    ORCHESTRATION_FIELD_NUMBER: _ClassVar[int]
    RAFT_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_ADDR_POOL_FIELD_NUMBER: _ClassVar[int]
    SUBNET_SIZE_FIELD_NUMBER: _ClassVar[int]
    CA_CONFIG_FIELD_NUMBER: _ClassVar[int]
    ENCRYPTION_CONFIG_FIELD_NUMBER: _ClassVar[int]
    annotations: Annotations
    dispatcher: DispatcherConfig
    orchestration: OrchestrationConfig
    raft: RaftConfig
    default_addr_pool: _containers.RepeatedScalarFieldContainer[str]
    subnet_size: int
    ca_config: CAConfig
    encryption_config: EncryptionConfig
    def __init__(self, annotations: _Optional[_Union[Annotations, _Mapping]] = ..., dispatcher: _Optional[_Union[DispatcherConfig, _Mapping]] = ..., orchestration: _Optional[_Union[OrchestrationConfig, _Mapping]] = ..., raft: _Optional[_Union[RaftConfig, _Mapping]] = ..., default_addr_pool: _Optional[_Iterable[str]] = ..., subnet_size: _Optional[int] = ..., ca_config: _Optional[_Union[CAConfig, _Mapping]] = ..., encryption_config: _Optional[_Union[EncryptionConfig, _Mapping]] = ...) -> None: ...

class EncryptionConfig(_message.Message):
    __slots__ = ("auto_lock_managers",)
    AUTO_LOCK_MANAGERS_FIELD_NUMBER: _ClassVar[int]
    auto_lock_managers: bool
    def __init__(self, auto_lock_managers: _Optional[bool] = ...) -> None: ...

class JoinTokens(_message.Message):
    __slots__ = ("worker", "manager")
    WORKER_FIELD_NUMBER: _ClassVar[int]
    MANAGER_FIELD_NUMBER: _ClassVar[int]
    worker: str
    manager: str
    def __init__(self, worker: _Optional[str] = ..., manager: _Optional[str] = ...) -> None: ...

class RootCA(_message.Message):
    __slots__ = ("ca_cert", "ca_key", "ca_digest", "join_tokens", "root_rotation", "last_forced_rotation")
    CA_CERT_FIELD_NUMBER: _ClassVar[int]
    CA_KEY_FIELD_NUMBER: _ClassVar[int]
    CA_DIGEST_FIELD_NUMBER: _ClassVar[int]
    JOIN_TOKENS_FIELD_NUMBER: _ClassVar[int]
    ROOT_ROTATION_FIELD_NUMBER: _ClassVar[int]
    LAST_FORCED_ROTATION_FIELD_NUMBER: _ClassVar[int]
    ca_cert: bytes
    ca_key: bytes
    ca_digest: str
    join_tokens: JoinTokens
    root_rotation: RootRotation
    last_forced_rotation: int
    def __init__(self, ca_cert: _Optional[bytes] = ..., ca_key: _Optional[bytes] = ..., ca_digest: _Optional[str] = ..., join_tokens: _Optional[_Union[JoinTokens, _Mapping]] = ..., root_rotation: _Optional[_Union[RootRotation, _Mapping]] = ..., last_forced_rotation: _Optional[int] = ...) -> None: ...

class RootRotation(_message.Message):
    __slots__ = ("ca_cert", "ca_key", "phase", "started_at")
    class Phase(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        TRUST: _ClassVar[RootRotation.Phase]
        REISSUE: _ClassVar[RootRotation.Phase]
    TRUST: RootRotation.Phase
    REISSUE: RootRotation.Phase
    CA_CERT_FIELD_NUMBER: _ClassVar[int]
    CA_KEY_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    ca_cert: bytes
    ca_key: bytes
    phase: RootRotation.Phase
    started_at: float
    def __init__(self, ca_cert: _Optional[bytes] = ..., ca_key: _Optional[bytes] = ..., phase: _Optional[_Union[RootRotation.Phase, str]] = ..., started_at: _Optional[float] = ...) -> None: ...

class EncryptionKey(_message.Message):
    __slots__ = ("subsystem", "algorithm", "key", "lamport_time", "spi", "created_at")
    class Algorithm(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        AES_128_GCM: _ClassVar[EncryptionKey.Algorithm]
    AES_128_GCM: EncryptionKey.Algorithm
    SUBSYSTEM_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    LAMPORT_TIME_FIELD_NUMBER: _ClassVar[int]
    SPI_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    subsystem: str
    algorithm: EncryptionKey.Algorithm
    key: bytes
    lamport_time: int
    spi: int
    created_at: float
    def __init__(self, subsystem: _Optional[str] = ..., algorithm: _Optional[_Union[EncryptionKey.Algorithm, str]] = ..., key: _Optional[bytes] = ..., lamport_time: _Optional[int] = ..., spi: _Optional[int] = ..., created_at: _Optional[float] = ...) -> None: ...

class Cluster(_message.Message):
    __slots__ = ("id", "meta", "spec", "root_ca", "raft_password", "network_bootstrap_keys", "encryption_key_lamport_clock", "unlock_key")
    ID_FIELD_NUMBER: _ClassVar[int]
    META_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    ROOT_CA_FIELD_NUMBER: _ClassVar[int]
    RAFT_PASSWORD_FIELD_NUMBER: _ClassVar[int]
    NETWORK_BOOTSTRAP_KEYS_FIELD_NUMBER: _ClassVar[int]
    ENCRYPTION_KEY_LAMPORT_CLOCK_FIELD_NUMBER: _ClassVar[int]
    UNLOCK_KEY_FIELD_NUMBER: _ClassVar[int]
    id: str
    meta: Meta
    spec: ClusterSpec
    root_ca: RootCA
    raft_password: bytes
    network_bootstrap_keys: _containers.RepeatedCompositeFieldContainer[EncryptionKey]
    encryption_key_lamport_clock: int
    unlock_key: bytes
    def __init__(self, id: _Optional[str] = ..., meta: _Optional[_Union[Meta, _Mapping]] = ..., spec: _Optional[_Union[ClusterSpec, _Mapping]] = ..., root_ca: _Optional[_Union[RootCA, _Mapping]] = ..., raft_password: _Optional[bytes] = ..., network_bootstrap_keys: _Optional[_Iterable[_Union[EncryptionKey, _Mapping]]] = ..., encryption_key_lamport_clock: _Optional[int] = ..., unlock_key: _Optional[bytes] = ...) -> None: ...
