"""Object kinds kept in the store, and the StoreObject envelope that carries them through Raft.

A kind is one of the oneof fields of ``store_pb2.StoreObject``. ``Kind`` maps it to its protobuf
class; ``wrap``/``unwrap`` convert between a bare object and the envelope.
"""

from __future__ import annotations

import enum
from typing import Any

from google.protobuf.message import Message

from proto import objects_pb2, store_pb2

from .errors import InvalidChange


class Kind(enum.Enum):
    """An object kind: ``kind.field`` is the StoreObject oneof field name, ``kind.cls`` the message class.

    Iteration order (NODE, SERVICE, ...) is the order snapshots list objects in.
    """

    NODE = ("node", objects_pb2.Node)
    SERVICE = ("service", objects_pb2.Service)
    TASK = ("task", objects_pb2.Task)
    NETWORK = ("network", objects_pb2.Network)
    VOLUME = ("volume", objects_pb2.Volume)
    SECRET = ("secret", objects_pb2.Secret)
    CONFIG = ("config", objects_pb2.Config)
    CLUSTER = ("cluster", objects_pb2.Cluster)

    def __init__(self, field: str, cls: type[Message]) -> None:
        self.field = field
        self.cls = cls

    def __repr__(self) -> str:
        return f"Kind.{self.name}"

    # Identity hash (C): Enum's own __hash__ is Python code, and kinds key the store's hot dicts.
    # Members are singletons compared by identity, so this changes nothing else.
    __hash__ = object.__hash__

    @classmethod
    def from_field(cls, field: str) -> Kind:
        """The kind whose StoreObject field is ``field``; InvalidChange if there is none."""
        try:
            return _BY_FIELD[field]
        except KeyError:
            raise InvalidChange(f"unknown object kind {field!r}") from None


_BY_FIELD: dict[str, Kind] = {k.field: k for k in Kind}
_BY_CLASS: dict[Any, Kind] = {k.cls: k for k in Kind}


def kind_of(obj: Message) -> Kind:
    """The kind of a bare store object; InvalidChange for any other message."""
    try:
        return _BY_CLASS[type(obj)]
    except KeyError:
        raise InvalidChange(f"{type(obj).__name__} is not a store object kind") from None


def wrap(obj: Message) -> store_pb2.StoreObject:
    """A new StoreObject envelope holding a copy of ``obj``."""
    envelope = store_pb2.StoreObject()
    getattr(envelope, kind_of(obj).field).CopyFrom(obj)
    return envelope


def unwrap(envelope: store_pb2.StoreObject) -> tuple[Kind, Message]:
    """The kind and object inside an envelope (the object is the envelope's own sub-message).

    Raises InvalidChange when the envelope is empty.
    """
    field = envelope.WhichOneof("object")
    if field is None:
        raise InvalidChange("store object envelope holds no object")
    return _BY_FIELD[field], getattr(envelope, field)


def copy_of(obj: Message) -> Message:
    """A deep copy of a protobuf message, of the same class."""
    duplicate = type(obj)()
    duplicate.CopyFrom(obj)
    return duplicate
