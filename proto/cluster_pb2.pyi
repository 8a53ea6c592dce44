from proto import objects_pb2 as _objects_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class IssueNodeCertificateRequest(_message.Message):
    __slots__ = ("csr", "token", "advertise_addr", "hostname", "availability")
    CSR_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    ADVERTISE_ADDR_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    AVAILABILITY_FIELD_NUMBER: _ClassVar[int]
    csr: bytes
    token: str
    advertise_addr: str
    hostname: str
    availability: _objects_pb2.NodeSpec.Availability
    def __init__(self, csr: _Optional[bytes] = ..., token: _Optional[str] = ..., advertise_addr: _Optional[str] = ..., hostname: _Optional[str] = ..., availability: _Optional[_Union[_objects_pb2.NodeSpec.Availability, str]] = ...) -> None: ...

class IssueNodeCertificateResponse(_message.Message):
    __slots__ = ("node_id", "role", "certificate", "root_ca", "cluster_id", "managers", "raft_password", "raft_peers", "secrets_key")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    ROOT_CA_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    MANAGERS_FIELD_NUMBER: _ClassVar[int]
    RAFT_PASSWORD_FIELD_NUMBER: _ClassVar[int]
    RAFT_PEERS_FIELD_NUMBER: _ClassVar[int]
    SECRETS_KEY_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    role: _objects_pb2.NodeRole
    certificate: bytes
    root_ca: bytes
    cluster_id: str
    managers: _containers.RepeatedScalarFieldContainer[str]
    raft_password: bytes
    raft_peers: _containers.RepeatedScalarFieldContainer[str]
    secrets_key: bytes
    def __init__(self, node_id: _Optional[str] = ..., role: _Optional[_Union[_objects_pb2.NodeRole, str]] = ..., certificate: _Optional[bytes] = ..., root_ca: _Optional[bytes] = ..., cluster_id: _Optional[str] = ..., managers: _Optional[_Iterable[str]] = ..., raft_password: _Optional[bytes] = ..., raft_peers: _Optional[_Iterable[str]] = ..., secrets_key: _Optional[bytes] = ...) -> None: ...

class RenewCertificateRequest(_message.Message):
    __slots__ = ("csr",)
    CSR_FIELD_NUMBER: _ClassVar[int]
    csr: bytes
    def __init__(self, csr: _Optional[bytes] = ...) -> None: ...

class RenewCertificateResponse(_message.Message):
    __slots__ = ("role", "certificate", "raft_password", "raft_peers", "secrets_key")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    RAFT_PASSWORD_FIELD_NUMBER: _ClassVar[int]
    RAFT_PEERS_FIELD_NUMBER: _ClassVar[int]
    SECRETS_KEY_FIELD_NUMBER: _ClassVar[int]
    role: _objects_pb2.NodeRole
    certificate: bytes
    raft_password: bytes
    raft_peers: _containers.RepeatedScalarFieldContainer[str]
    secrets_key: bytes
    def __init__(self, role: _Optional[_Union[_objects_pb2.NodeRole, str]] = ..., certificate: _Optional[bytes] = ..., raft_password: _Optional[bytes] = ..., raft_peers: _Optional[_Iterable[str]] = ..., secrets_key: _Optional[bytes] = ...) -> None: ...

class SessionRequest(_message.Message):
    __slots__ = ("description", "session_id")
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    description: _objects_pb2.NodeDescription
    session_id: str
    def __init__(self, description: _Optional[_Union[_objects_pb2.NodeDescription, _Mapping]] = ..., session_id: _Optional[str] = ...) -> None: ...

class WeightedPeer(_message.Message):
    __slots__ = ("node_id", "addr")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ADDR_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    addr: str
    def __init__(self, node_id: _Optional[str] = ..., addr: _Optional[str] = ...) -> None: ...

class SessionMessage(_message.Message):
    __slots__ = ("session_id", "managers", "role", "heartbeat_period", "root_ca", "renew_certificate")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    MANAGERS_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_PERIOD_FIELD_NUMBER: _ClassVar[int]
    ROOT_CA_FIELD_NUMBER: _ClassVar[int]
    RENEW_CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    managers: _containers.RepeatedCompositeFieldContainer[WeightedPeer]
    role: _objects_pb2.NodeRole
    heartbeat_period: float
    root_ca: bytes
    renew_certificate: bool
    def __init__(self, session_id: _Optional[str] = ..., managers: _Optional[_Iterable[_Union[WeightedPeer, _Mapping]]] = ..., role: _Optional[_Union[_objects_pb2.NodeRole, str]] = ..., heartbeat_period: _Optional[float] = ..., root_ca: _Optional[bytes] = ..., renew_certificate: _Optional[bool] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("session_id", "status_message")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    status_message: str
    def __init__(self, session_id: _Optional[str] = ..., status_message: _Optional[str] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("period",)
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    period: float
    def __init__(self, period: _Optional[float] = ...) -> None: ...

class AssignmentsRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class Assignment(_message.Message):
    __slots__ = ("task", "secret", "config")
    TASK_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    task: _objects_pb2.Task
    secret: _objects_pb2.Secret
    config: _objects_pb2.Config
    def __init__(self, task: _Optional[_Union[_objects_pb2.Task, _Mapping]] = ..., secret: _Optional[_Union[_objects_pb2.Secret, _Mapping]] = ..., config: _Optional[_Union[_objects_pb2.Config, _Mapping]] = ...) -> None: ...

class AssignmentChange(_message.Message):
    __slots__ = ("action", "assignment")
    class Action(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        UPDATE: _ClassVar[AssignmentChange.Action]
        REMOVE: _ClassVar[AssignmentChange.Action]
    UPDATE: AssignmentChange.Action
    REMOVE: AssignmentChange.Action
    ACTION_FIELD_NUMBER: _ClassVar[int]
    ASSIGNMENT_FIELD_NUMBER: _ClassVar[int]
    action: AssignmentChange.Action
    assignment: Assignment
    def __init__(self, action: _Optional[_Union[AssignmentChange.Action, str]] = ..., assignment: _Optional[_Union[Assignment, _Mapping]] = ...) -> None: ...

class AssignmentsMessage(_message.Message):
    __slots__ = ("type", "changes", "network_state")
    class Type(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        COMPLETE: _ClassVar[AssignmentsMessage.Type]
        INCREMENTAL: _ClassVar[AssignmentsMessage.Type]
    COMPLETE: AssignmentsMessage.Type
    INCREMENTAL: AssignmentsMessage.Type
    TYPE_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    NETWORK_STATE_FIELD_NUMBER: _ClassVar[int]
    type: AssignmentsMessage.Type
    changes: _containers.RepeatedCompositeFieldContainer[AssignmentChange]
    network_state: bytes
    def __init__(self, type: _Optional[_Union[AssignmentsMessage.Type, str]] = ..., changes: _Optional[_Iterable[_Union[AssignmentChange, _Mapping]]] = ..., network_state: _Optional[bytes] = ...) -> None: ...

class TaskStatusUpdate(_message.Message):
    __slots__ = ("task_id", "status")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    status: _objects_pb2.TaskStatus
    def __init__(self, task_id: _Optional[str] = ..., status: _Optional[_Union[_objects_pb2.TaskStatus, _Mapping]] = ...) -> None: ...

class UpdateTaskStatusRequest(_message.Message):
    __slots__ = ("session_id", "updates")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    UPDATES_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    updates: _containers.RepeatedCompositeFieldContainer[TaskStatusUpdate]
    def __init__(self, session_id: _Optional[str] = ..., updates: _Optional[_Iterable[_Union[TaskStatusUpdate, _Mapping]]] = ...) -> None: ...

class UpdateTaskStatusResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class LeaderRedirect(_message.Message):
    __slots__ = ("leader_addr",)
    LEADER_ADDR_FIELD_NUMBER: _ClassVar[int]
    leader_addr: str
    def __init__(self, leader_addr: _Optional[str] = ...) -> None: ...

class TaskLogsRequest(_message.Message):
    __slots__ = ("task_ids", "follow", "tail", "since")
    TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    TAIL_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    task_ids: _containers.RepeatedScalarFieldContainer[str]
    follow: bool
    tail: int
    since: float
    def __init__(self, task_ids: _Optional[_Iterable[str]] = ..., follow: _Optional[bool] = ..., tail: _Optional[int] = ..., since: _Optional[float] = ...) -> None: ...

class LogLine(_message.Message):
    __slots__ = ("task_id", "stream", "time", "data")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    stream: str
    time: str
    data: bytes
    def __init__(self, task_id: _Optional[str] = ..., stream: _Optional[str] = ..., time: _Optional[str] = ..., data: _Optional[bytes] = ...) -> None: ...

class RaftJoinRequest(_message.Message):
    __slots__ = ("raft_addr",)
    RAFT_ADDR_FIELD_NUMBER: _ClassVar[int]
    raft_addr: str
    def __init__(self, raft_addr: _Optional[str] = ...) -> None: ...

class RaftJoinResponse(_message.Message):
    __slots__ = ("raft_peers",)
    RAFT_PEERS_FIELD_NUMBER: _ClassVar[int]
    raft_peers: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, raft_peers: _Optional[_Iterable[str]] = ...) -> None: ...

class RaftLeaveRequest(_message.Message):
    __slots__ = ("node_id",)
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    def __init__(self, node_id: _Optional[str] = ...) -> None: ...

class RaftLeaveResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
