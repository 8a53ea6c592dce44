from proto import objects_pb2 as _objects_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StoreObject(_message.Message):
    __slots__ = ("node", "service", "task", "network", "volume", "secret", "config", "cluster")
    NODE_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    VOLUME_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    node: _objects_pb2.Node
    service: _objects_pb2.Service
    task: _objects_pb2.Task
    network: _objects_pb2.Network
    volume: _objects_pb2.Volume
    secret: _objects_pb2.Secret
    config: _objects_pb2.Config
    cluster: _objects_pb2.Cluster
    def __init__(self, node: _Optional[_Union[_objects_pb2.Node, _Mapping]] = ..., service: _Optional[_Union[_objects_pb2.Service, _Mapping]] = ..., task: _Optional[_Union[_objects_pb2.Task, _Mapping]] = ..., network: _Optional[_Union[_objects_pb2.Network, _Mapping]] = ..., volume: _Optional[_Union[_objects_pb2.Volume, _Mapping]] = ..., secret: _Optional[_Union[_objects_pb2.Secret, _Mapping]] = ..., config: _Optional[_Union[_objects_pb2.Config, _Mapping]] = ..., cluster: _Optional[_Union[_objects_pb2.Cluster, _Mapping]] = ...) -> None: ...

class StoreAction(_message.Message):
    __slots__ = ("kind", "target")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        CREATE: _ClassVar[StoreAction.Kind]
        UPDATE: _ClassVar[StoreAction.Kind]
        REMOVE: _ClassVar[StoreAction.Kind]
    CREATE: StoreAction.Kind
    UPDATE: StoreAction.Kind
    REMOVE: StoreAction.Kind
    KIND_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    kind: StoreAction.Kind
    target: StoreObject
    def __init__(self, kind: _Optional[_Union[StoreAction.Kind, str]] = ..., target: _Optional[_Union[StoreObject, _Mapping]] = ...) -> None: ...

class StoreChange(_message.Message):
    __slots__ = ("actions", "proposal_id")
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    PROPOSAL_ID_FIELD_NUMBER: _ClassVar[int]
    actions: _containers.RepeatedCompositeFieldContainer[StoreAction]
    proposal_id: str
    def __init__(self, actions: _Optional[_Iterable[_Union[StoreAction, _Mapping]]] = ..., proposal_id: _Optional[str] = ...) -> None: ...

class StoreSnapshot(_message.Message):
    __slots__ = ("version", "objects")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    OBJECTS_FIELD_NUMBER: _ClassVar[int]
    version: int
    objects: _containers.RepeatedCompositeFieldContainer[StoreObject]
    def __init__(self, version: _Optional[int] = ..., objects: _Optional[_Iterable[_Union[StoreObject, _Mapping]]] = ...) -> None: ...
