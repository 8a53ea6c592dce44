from proto import objects_pb2 as _objects_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class InfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RaftMember(_message.Message):
    __slots__ = ("node_id", "raft_addr", "leader", "reachable")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    RAFT_ADDR_FIELD_NUMBER: _ClassVar[int]
    LEADER_FIELD_NUMBER: _ClassVar[int]
    REACHABLE_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    raft_addr: str
    leader: bool
    reachable: bool
    def __init__(self, node_id: _Optional[str] = ..., raft_addr: _Optional[str] = ..., leader: _Optional[bool] = ..., reachable: _Optional[bool] = ...) -> None: ...

class InfoResponse(_message.Message):
    __slots__ = ("node_id", "local_node_state", "control_available", "cluster_id", "node_addr", "hostname", "engine_version", "managers", "leader_addr", "raft_term", "raft_commit_index", "nodes", "managers_count", "remote_managers", "error")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    LOCAL_NODE_STATE_FIELD_NUMBER: _ClassVar[int]
    CONTROL_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_ADDR_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    ENGINE_VERSION_FIELD_NUMBER: _ClassVar[int]
    MANAGERS_FIELD_NUMBER: _ClassVar[int]
    LEADER_ADDR_FIELD_NUMBER: _ClassVar[int]
    RAFT_TERM_FIELD_NUMBER: _ClassVar[int]
    RAFT_COMMIT_INDEX_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    MANAGERS_COUNT_FIELD_NUMBER: _ClassVar[int]
    REMOTE_MANAGERS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    local_node_state: str
    control_available: bool
    cluster_id: str
    node_addr: str
    hostname: str
    engine_version: str
    managers: _containers.RepeatedCompositeFieldContainer[RaftMember]
    leader_addr: str
    raft_term: int
    raft_commit_index: int
    nodes: int
    managers_count: int
    remote_managers: _containers.RepeatedScalarFieldContainer[str]
    error: str
    def __init__(self, node_id: _Optional[str] = ..., local_node_state: _Optional[str] = ..., control_available: _Optional[bool] = ..., cluster_id: _Optional[str] = ..., node_addr: _Optional[str] = ..., hostname: _Optional[str] = ..., engine_version: _Optional[str] = ..., managers: _Optional[_Iterable[_Union[RaftMember, _Mapping]]] = ..., leader_addr: _Optional[str] = ..., raft_term: _Optional[int] = ..., raft_commit_index: _Optional[int] = ..., nodes: _Optional[int] = ..., managers_count: _Optional[int] = ..., remote_managers: _Optional[_Iterable[str]] = ..., error: _Optional[str] = ...) -> None: ...

class SwarmInitRequest(_message.Message):
    __slots__ = ("listen_addr", "advertise_addr", "dispatcher_heartbeat", "default_addr_pool", "subnet_size", "force_new_cluster", "labels", "node_cert_expiry", "election_tick", "heartbeat_tick", "restore_file", "autolock")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    LISTEN_ADDR_FIELD_NUMBER: _ClassVar[int]
    ADVERTISE_ADDR_FIELD_NUMBER: _ClassVar[int]
    DISPATCHER_HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_ADDR_POOL_FIELD_NUMBER: _ClassVar[int]
    SUBNET_SIZE_FIELD_NUMBER: _ClassVar[int]
    FORCE_NEW_CLUSTER_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    NODE_CERT_EXPIRY_FIELD_NUMBER: _ClassVar[int]
    ELECTION_TICK_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_TICK_FIELD_NUMBER: _ClassVar[int]
    RESTORE_FILE_FIELD_NUMBER: _ClassVar[int]
    AUTOLOCK_FIELD_NUMBER: _ClassVar[int]
    listen_addr: str
    advertise_addr: str
    dispatcher_heartbeat: float
    default_addr_pool: _containers.RepeatedScalarFieldContainer[str]
    subnet_size: int
    force_new_cluster: bool
    labels: _containers.ScalarMap[str, str]
    node_cert_expiry: float
    election_tick: int
    heartbeat_tick: int
    restore_file: str
    autolock: bool
    def __init__(self, listen_addr: _Optional[str] = ..., advertise_addr: _Optional[str] = ..., dispatcher_heartbeat: _Optional[float] = ..., default_addr_pool: _Optional[_Iterable[str]] = ..., subnet_size: _Optional[int] = ..., force_new_cluster: _Optional[bool] = ..., labels: _Optional[_Mapping[str, str]] = ..., node_cert_expiry: _Optional[float] = ..., election_tick: _Optional[int] = ..., heartbeat_tick: _Optional[int] = ..., restore_file: _Optional[str] = ..., autolock: _Optional[bool] = ...) -> None: ...

class SwarmBackupRequest(_message.Message):
    __slots__ = ("path",)
    PATH_FIELD_NUMBER: _ClassVar[int]
    path: str
    def __init__(self, path: _Optional[str] = ...) -> None: ...

class SwarmBackupResponse(_message.Message):
    __slots__ = ("path", "cluster_id", "store_version", "objects", "confirmed")
    class ObjectsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    PATH_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    STORE_VERSION_FIELD_NUMBER: _ClassVar[int]
    OBJECTS_FIELD_NUMBER: _ClassVar[int]
    CONFIRMED_FIELD_NUMBER: _ClassVar[int]
    path: str
    cluster_id: str
    store_version: int
    objects: _containers.ScalarMap[str, int]
    confirmed: bool
    def __init__(self, path: _Optional[str] = ..., cluster_id: _Optional[str] = ..., store_version: _Optional[int] = ..., objects: _Optional[_Mapping[str, int]] = ..., confirmed: _Optional[bool] = ...) -> None: ...

class SwarmInitResponse(_message.Message):
    __slots__ = ("node_id", "worker_token", "manager_token", "unlock_key")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_TOKEN_FIELD_NUMBER: _ClassVar[int]
    MANAGER_TOKEN_FIELD_NUMBER: _ClassVar[int]
    UNLOCK_KEY_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    worker_token: str
    manager_token: str
    unlock_key: str
    def __init__(self, node_id: _Optional[str] = ..., worker_token: _Optional[str] = ..., manager_token: _Optional[str] = ..., unlock_key: _Optional[str] = ...) -> None: ...

class SwarmJoinRequest(_message.Message):
    __slots__ = ("remote_addr", "join_token", "listen_addr", "advertise_addr", "availability")
    REMOTE_ADDR_FIELD_NUMBER: _ClassVar[int]
    JOIN_TOKEN_FIELD_NUMBER: _ClassVar[int]
    LISTEN_ADDR_FIELD_NUMBER: _ClassVar[int]
    ADVERTISE_ADDR_FIELD_NUMBER: _ClassVar[int]
    AVAILABILITY_FIELD_NUMBER: _ClassVar[int]
    remote_addr: str
    join_token: str
    listen_addr: str
    advertise_addr: str
    availability: str
    def __init__(self, remote_addr: _Optional[str] = ..., join_token: _Optional[str] = ..., listen_addr: _Optional[str] = ..., advertise_addr: _Optional[str] = ..., availability: _Optional[str] = ...) -> None: ...

class SwarmJoinResponse(_message.Message):
    __slots__ = ("node_id", "role")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    role: _objects_pb2.NodeRole
    def __init__(self, node_id: _Optional[str] = ..., role: _Optional[_Union[_objects_pb2.NodeRole, str]] = ...) -> None: ...

class SwarmLeaveRequest(_message.Message):
    __slots__ = ("force",)
    FORCE_FIELD_NUMBER: _ClassVar[int]
    force: bool
    def __init__(self, force: _Optional[bool] = ...) -> None: ...

class SwarmLeaveResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetClusterRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetClusterResponse(_message.Message):
    __slots__ = ("cluster",)
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    cluster: _objects_pb2.Cluster
    def __init__(self, cluster: _Optional[_Union[_objects_pb2.Cluster, _Mapping]] = ...) -> None: ...

class UpdateClusterRequest(_message.Message):
    __slots__ = ("version", "spec", "rotate_worker_token", "rotate_manager_token", "rotate_manager_unlock_key")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    ROTATE_WORKER_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ROTATE_MANAGER_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ROTATE_MANAGER_UNLOCK_KEY_FIELD_NUMBER: _ClassVar[int]
    version: int
    spec: _objects_pb2.ClusterSpec
    rotate_worker_token: bool
    rotate_manager_token: bool
    rotate_manager_unlock_key: bool
    def __init__(self, version: _Optional[int] = ..., spec: _Optional[_Union[_objects_pb2.ClusterSpec, _Mapping]] = ..., rotate_worker_token: _Optional[bool] = ..., rotate_manager_token: _Optional[bool] = ..., rotate_manager_unlock_key: _Optional[bool] = ...) -> None: ...

class SwarmUnlockRequest(_message.Message):
    __slots__ = ("unlock_key",)
    UNLOCK_KEY_FIELD_NUMBER: _ClassVar[int]
    unlock_key: str
    def __init__(self, unlock_key: _Optional[str] = ...) -> None: ...

class SwarmUnlockResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetUnlockKeyRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetUnlockKeyResponse(_message.Message):
    __slots__ = ("unlock_key",)
    UNLOCK_KEY_FIELD_NUMBER: _ClassVar[int]
    unlock_key: str
    def __init__(self, unlock_key: _Optional[str] = ...) -> None: ...

class IssueClientCertificateRequest(_message.Message):
    __slots__ = ("csr", "name", "expiry_seconds")
    CSR_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    EXPIRY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    csr: bytes
    name: str
    expiry_seconds: int
    def __init__(self, csr: _Optional[bytes] = ..., name: _Optional[str] = ..., expiry_seconds: _Optional[int] = ...) -> None: ...

class IssueClientCertificateResponse(_message.Message):
    __slots__ = ("certificate", "root_ca")
    CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    ROOT_CA_FIELD_NUMBER: _ClassVar[int]
    certificate: bytes
    root_ca: bytes
    def __init__(self, certificate: _Optional[bytes] = ..., root_ca: _Optional[bytes] = ...) -> None: ...

class UpdateClusterResponse(_message.Message):
    __slots__ = ("cluster",)
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    cluster: _objects_pb2.Cluster
    def __init__(self, cluster: _Optional[_Union[_objects_pb2.Cluster, _Mapping]] = ...) -> None: ...

class ListNodesRequest(_message.Message):
    __slots__ = ("filters",)
    class FiltersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    filters: _containers.ScalarMap[str, str]
    def __init__(self, filters: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ListNodesResponse(_message.Message):
    __slots__ = ("nodes",)
    NODES_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[_objects_pb2.Node]
    def __init__(self, nodes: _Optional[_Iterable[_Union[_objects_pb2.Node, _Mapping]]] = ...) -> None: ...

class GetNodeRequest(_message.Message):
    __slots__ = ("node_id",)
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    def __init__(self, node_id: _Optional[str] = ...) -> None: ...

class GetNodeResponse(_message.Message):
    __slots__ = ("node",)
    NODE_FIELD_NUMBER: _ClassVar[int]
    node: _objects_pb2.Node
    def __init__(self, node: _Optional[_Union[_objects_pb2.Node, _Mapping]] = ...) -> None: ...

class UpdateNodeRequest(_message.Message):
    __slots__ = ("node_id", "version", "spec")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    version: int
    spec: _objects_pb2.NodeSpec
    def __init__(self, node_id: _Optional[str] = ..., version: _Optional[int] = ..., spec: _Optional[_Union[_objects_pb2.NodeSpec, _Mapping]] = ...) -> None: ...

class UpdateNodeResponse(_message.Message):
    __slots__ = ("node",)
    NODE_FIELD_NUMBER: _ClassVar[int]
    node: _objects_pb2.Node
    def __init__(self, node: _Optional[_Union[_objects_pb2.Node, _Mapping]] = ...) -> None: ...

class RemoveNodeRequest(_message.Message):
    __slots__ = ("node_id", "force")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    force: bool
    def __init__(self, node_id: _Optional[str] = ..., force: _Optional[bool] = ...) -> None: ...

class RemoveNodeResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CreateServiceRequest(_message.Message):
    __slots__ = ("spec",)
    SPEC_FIELD_NUMBER: _ClassVar[int]
    spec: _objects_pb2.ServiceSpec
    def __init__(self, spec: _Optional[_Union[_objects_pb2.ServiceSpec, _Mapping]] = ...) -> None: ...

class CreateServiceResponse(_message.Message):
    __slots__ = ("service",)
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    service: _objects_pb2.Service
    def __init__(self, service: _Optional[_Union[_objects_pb2.Service, _Mapping]] = ...) -> None: ...

class GetServiceRequest(_message.Message):
    __slots__ = ("service_id",)
    SERVICE_ID_FIELD_NUMBER: _ClassVar[int]
    service_id: str
    def __init__(self, service_id: _Optional[str] = ...) -> None: ...

class GetServiceResponse(_message.Message):
    __slots__ = ("service",)
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    service: _objects_pb2.Service
    def __init__(self, service: _Optional[_Union[_objects_pb2.Service, _Mapping]] = ...) -> None: ...

class UpdateServiceRequest(_message.Message):
    __slots__ = ("service_id", "version", "spec", "rollback")
    SERVICE_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    ROLLBACK_FIELD_NUMBER: _ClassVar[int]
    service_id: str
    version: int
    spec: _objects_pb2.ServiceSpec
    rollback: bool
    def __init__(self, service_id: _Optional[str] = ..., version: _Optional[int] = ..., spec: _Optional[_Union[_objects_pb2.ServiceSpec, _Mapping]] = ..., rollback: _Optional[bool] = ...) -> None: ...

class UpdateServiceResponse(_message.Message):
    __slots__ = ("service",)
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    service: _objects_pb2.Service
    def __init__(self, service: _Optional[_Union[_objects_pb2.Service, _Mapping]] = ...) -> None: ...

class NormalizeServiceSpecRequest(_message.Message):
    __slots__ = ("spec", "service_id", "without_services")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    SERVICE_ID_FIELD_NUMBER: _ClassVar[int]
    WITHOUT_SERVICES_FIELD_NUMBER: _ClassVar[int]
    spec: _objects_pb2.ServiceSpec
    service_id: str
    without_services: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, spec: _Optional[_Union[_objects_pb2.ServiceSpec, _Mapping]] = ..., service_id: _Optional[str] = ..., without_services: _Optional[_Iterable[str]] = ...) -> None: ...

class NormalizeServiceSpecResponse(_message.Message):
    __slots__ = ("spec",)
    SPEC_FIELD_NUMBER: _ClassVar[int]
    spec: _objects_pb2.ServiceSpec
    def __init__(self, spec: _Optional[_Union[_objects_pb2.ServiceSpec, _Mapping]] = ...) -> None: ...

class RemoveServiceRequest(_message.Message):
    __slots__ = ("service_id",)
    SERVICE_ID_FIELD_NUMBER: _ClassVar[int]
    service_id: str
    def __init__(self, service_id: _Optional[str] = ...) -> None: ...

class RemoveServiceResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListServicesRequest(_message.Message):
    __slots__ = ("filters",)
    class FiltersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    filters: _containers.ScalarMap[str, str]
    def __init__(self, filters: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ServiceStatus(_message.Message):
    __slots__ = ("service_id", "running_tasks", "desired_tasks", "completed_tasks")
    SERVICE_ID_FIELD_NUMBER: _ClassVar[int]
    RUNNING_TASKS_FIELD_NUMBER: _ClassVar[int]
    DESIRED_TASKS_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_TASKS_FIELD_NUMBER: _ClassVar[int]
    service_id: str
    running_tasks: int
    desired_tasks: int
    completed_tasks: int
    def __init__(self, service_id: _Optional[str] = ..., running_tasks: _Optional[int] = ..., desired_tasks: _Optional[int] = ..., completed_tasks: _Optional[int] = ...) -> None: ...

class ListServicesResponse(_message.Message):
    __slots__ = ("services", "statuses")
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    services: _containers.RepeatedCompositeFieldContainer[_objects_pb2.Service]
    statuses: _containers.RepeatedCompositeFieldContainer[ServiceStatus]
    def __init__(self, services: _Optional[_Iterable[_Union[_objects_pb2.Service, _Mapping]]] = ..., statuses: _Optional[_Iterable[_Union[ServiceStatus, _Mapping]]] = ...) -> None: ...

class ListTasksRequest(_message.Message):
    __slots__ = ("filters",)
    class FiltersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    filters: _containers.ScalarMap[str, str]
    def __init__(self, filters: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ListTasksResponse(_message.Message):
    __slots__ = ("tasks",)
    TASKS_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[_objects_pb2.Task]
    def __init__(self, tasks: _Optional[_Iterable[_Union[_objects_pb2.Task, _Mapping]]] = ...) -> None: ...

class GetTaskRequest(_message.Message):
    __slots__ = ("task_id",)
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    def __init__(self, task_id: _Optional[str] = ...) -> None: ...

class GetTaskResponse(_message.Message):
    __slots__ = ("task",)
    TASK_FIELD_NUMBER: _ClassVar[int]
    task: _objects_pb2.Task
    def __init__(self, task: _Optional[_Union[_objects_pb2.Task, _Mapping]] = ...) -> None: ...

class ServiceLogsRequest(_message.Message):
    __slots__ = ("service_id", "follow", "tail", "since")
    SERVICE_ID_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    TAIL_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    service_id: str
    follow: bool
    tail: int
    since: float
    def __init__(self, service_id: _Optional[str] = ..., follow: _Optional[bool] = ..., tail: _Optional[int] = ..., since: _Optional[float] = ...) -> None: ...

class EventsRequest(_message.Message):
    __slots__ = ("since_ns", "until_ns", "filters")
    SINCE_NS_FIELD_NUMBER: _ClassVar[int]
    UNTIL_NS_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    since_ns: int
    until_ns: int
    filters: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, since_ns: _Optional[int] = ..., until_ns: _Optional[int] = ..., filters: _Optional[_Iterable[str]] = ...) -> None: ...

class EventMessage(_message.Message):
    __slots__ = ("json",)
    JSON_FIELD_NUMBER: _ClassVar[int]
    json: str
    def __init__(self, json: _Optional[str] = ...) -> None: ...

class ServiceLogsMessage(_message.Message):
    __slots__ = ("task_id", "task_name", "node_id", "node_name", "stream", "time", "data", "warning")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_NAME_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_NAME_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    WARNING_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    task_name: str
    node_id: str
    node_name: str
    stream: str
    time: str
    data: bytes
    warning: str
    def __init__(self, task_id: _Optional[str] = ..., task_name: _Optional[str] = ..., node_id: _Optional[str] = ..., node_name: _Optional[str] = ..., stream: _Optional[str] = ..., time: _Optional[str] = ..., data: _Optional[bytes] = ..., warning: _Optional[str] = ...) -> None: ...

class CreateNetworkRequest(_message.Message):
    __slots__ = ("spec",)
    SPEC_FIELD_NUMBER: _ClassVar[int]
    spec: _objects_pb2.NetworkSpec
    def __init__(self, spec: _Optional[_Union[_objects_pb2.NetworkSpec, _Mapping]] = ...) -> None: ...

class CreateNetworkResponse(_message.Message):
    __slots__ = ("network",)
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    network: _objects_pb2.Network
    def __init__(self, network: _Optional[_Union[_objects_pb2.Network, _Mapping]] = ...) -> None: ...

class GetNetworkRequest(_message.Message):
    __slots__ = ("network_id",)
    NETWORK_ID_FIELD_NUMBER: _ClassVar[int]
    network_id: str
    def __init__(self, network_id: _Optional[str] = ...) -> None: ...

class GetNetworkResponse(_message.Message):
    __slots__ = ("network",)
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    network: _objects_pb2.Network
    def __init__(self, network: _Optional[_Union[_objects_pb2.Network, _Mapping]] = ...) -> None: ...

class ListNetworksRequest(_message.Message):
    __slots__ = ("filters",)
    class FiltersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    filters: _containers.ScalarMap[str, str]
    def __init__(self, filters: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ListNetworksResponse(_message.Message):
    __slots__ = ("networks",)
    NETWORKS_FIELD_NUMBER: _ClassVar[int]
    networks: _containers.RepeatedCompositeFieldContainer[_objects_pb2.Network]
    def __init__(self, networks: _Optional[_Iterable[_Union[_objects_pb2.Network, _Mapping]]] = ...) -> None: ...

class RemoveNetworkRequest(_message.Message):
    __slots__ = ("network_id",)
    NETWORK_ID_FIELD_NUMBER: _ClassVar[int]
    network_id: str
    def __init__(self, network_id: _Optional[str] = ...) -> None: ...

class RemoveNetworkResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AttachNetworkRequest(_message.Message):
    __slots__ = ("network_id", "container_id", "aliases", "node_id", "container", "connect_container", "address")
    NETWORK_ID_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_ID_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_FIELD_NUMBER: _ClassVar[int]
    CONNECT_CONTAINER_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    network_id: str
    container_id: str
    aliases: _containers.RepeatedScalarFieldContainer[str]
    node_id: str
    container: bytes
    connect_container: str
    address: str
    def __init__(self, network_id: _Optional[str] = ..., container_id: _Optional[str] = ..., aliases: _Optional[_Iterable[str]] = ..., node_id: _Optional[str] = ..., container: _Optional[bytes] = ..., connect_container: _Optional[str] = ..., address: _Optional[str] = ...) -> None: ...

class AttachNetworkResponse(_message.Message):
    __slots__ = ("attachment_id", "attachment", "created_container_id")
    ATTACHMENT_ID_FIELD_NUMBER: _ClassVar[int]
    ATTACHMENT_FIELD_NUMBER: _ClassVar[int]
    CREATED_CONTAINER_ID_FIELD_NUMBER: _ClassVar[int]
    attachment_id: str
    attachment: _objects_pb2.NetworkAttachment
    created_container_id: str
    def __init__(self, attachment_id: _Optional[str] = ..., attachment: _Optional[_Union[_objects_pb2.NetworkAttachment, _Mapping]] = ..., created_container_id: _Optional[str] = ...) -> None: ...

class DetachNetworkRequest(_message.Message):
    __slots__ = ("attachment_id", "container", "network_id", "force")
    ATTACHMENT_ID_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_FIELD_NUMBER: _ClassVar[int]
    NETWORK_ID_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    attachment_id: str
    container: str
    network_id: str
    force: bool
    def __init__(self, attachment_id: _Optional[str] = ..., container: _Optional[str] = ..., network_id: _Optional[str] = ..., force: _Optional[bool] = ...) -> None: ...

class DetachNetworkResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CreateSecretRequest(_message.Message):
    __slots__ = ("spec",)
    SPEC_FIELD_NUMBER: _ClassVar[int]
    spec: _objects_pb2.SecretSpec
    def __init__(self, spec: _Optional[_Union[_objects_pb2.SecretSpec, _Mapping]] = ...) -> None: ...

class CreateSecretResponse(_message.Message):
    __slots__ = ("secret",)
    SECRET_FIELD_NUMBER: _ClassVar[int]
    secret: _objects_pb2.Secret
    def __init__(self, secret: _Optional[_Union[_objects_pb2.Secret, _Mapping]] = ...) -> None: ...

class GetSecretRequest(_message.Message):
    __slots__ = ("secret_id",)
    SECRET_ID_FIELD_NUMBER: _ClassVar[int]
    secret_id: str
    def __init__(self, secret_id: _Optional[str] = ...) -> None: ...

class GetSecretResponse(_message.Message):
    __slots__ = ("secret",)
    SECRET_FIELD_NUMBER: _ClassVar[int]
    secret: _objects_pb2.Secret
    def __init__(self, secret: _Optional[_Union[_objects_pb2.Secret, _Mapping]] = ...) -> None: ...

class ListSecretsRequest(_message.Message):
    __slots__ = ("filters",)
    class FiltersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    filters: _containers.ScalarMap[str, str]
    def __init__(self, filters: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ListSecretsResponse(_message.Message):
    __slots__ = ("secrets",)
    SECRETS_FIELD_NUMBER: _ClassVar[int]
    secrets: _containers.RepeatedCompositeFieldContainer[_objects_pb2.Secret]
    def __init__(self, secrets: _Optional[_Iterable[_Union[_objects_pb2.Secret, _Mapping]]] = ...) -> None: ...

class RemoveSecretRequest(_message.Message):
    __slots__ = ("secret_id",)
    SECRET_ID_FIELD_NUMBER: _ClassVar[int]
    secret_id: str
    def __init__(self, secret_id: _Optional[str] = ...) -> None: ...

class RemoveSecretResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class UpdateSecretRequest(_message.Message):
    __slots__ = ("secret_id", "version", "spec")
    SECRET_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    secret_id: str
    version: int
    spec: _objects_pb2.SecretSpec
    def __init__(self, secret_id: _Optional[str] = ..., version: _Optional[int] = ..., spec: _Optional[_Union[_objects_pb2.SecretSpec, _Mapping]] = ...) -> None: ...

class UpdateSecretResponse(_message.Message):
    __slots__ = ("secret",)
    SECRET_FIELD_NUMBER: _ClassVar[int]
    secret: _objects_pb2.Secret
    def __init__(self, secret: _Optional[_Union[_objects_pb2.Secret, _Mapping]] = ...) -> None: ...

class CreateConfigRequest(_message.Message):
    __slots__ = ("spec",)
    SPEC_FIELD_NUMBER: _ClassVar[int]
    spec: _objects_pb2.ConfigSpec
    def __init__(self, spec: _Optional[_Union[_objects_pb2.ConfigSpec, _Mapping]] = ...) -> None: ...

class CreateConfigResponse(_message.Message):
    __slots__ = ("config",)
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    config: _objects_pb2.Config
    def __init__(self, config: _Optional[_Union[_objects_pb2.Config, _Mapping]] = ...) -> None: ...

class GetConfigRequest(_message.Message):
    __slots__ = ("config_id",)
    CONFIG_ID_FIELD_NUMBER: _ClassVar[int]
    config_id: str
    def __init__(self, config_id: _Optional[str] = ...) -> None: ...

class GetConfigResponse(_message.Message):
    __slots__ = ("config",)
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    config: _objects_pb2.Config
    def __init__(self, config: _Optional[_Union[_objects_pb2.Config, _Mapping]] = ...) -> None: ...

class ListConfigsRequest(_message.Message):
    __slots__ = ("filters",)
    class FiltersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    filters: _containers.ScalarMap[str, str]
    def __init__(self, filters: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ListConfigsResponse(_message.Message):
    __slots__ = ("configs",)
    CONFIGS_FIELD_NUMBER: _ClassVar[int]
    configs: _containers.RepeatedCompositeFieldContainer[_objects_pb2.Config]
    def __init__(self, configs: _Optional[_Iterable[_Union[_objects_pb2.Config, _Mapping]]] = ...) -> None: ...

class RemoveConfigRequest(_message.Message):
    __slots__ = ("config_id",)
    CONFIG_ID_FIELD_NUMBER: _ClassVar[int]
    config_id: str
    def __init__(self, config_id: _Optional[str] = ...) -> None: ...

class RemoveConfigResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class UpdateConfigRequest(_message.Message):
    __slots__ = ("config_id", "version", "spec")
    CONFIG_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    config_id: str
    version: int
    spec: _objects_pb2.ConfigSpec
    def __init__(self, config_id: _Optional[str] = ..., version: _Optional[int] = ..., spec: _Optional[_Union[_objects_pb2.ConfigSpec, _Mapping]] = ...) -> None: ...

class UpdateConfigResponse(_message.Message):
    __slots__ = ("config",)
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    config: _objects_pb2.Config
    def __init__(self, config: _Optional[_Union[_objects_pb2.Config, _Mapping]] = ...) -> None: ...
