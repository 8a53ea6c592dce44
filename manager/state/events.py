"""Events a store watch delivers, after the change that caused them has committed.

Objects inside events are the store's own copies: read them, never mutate them (CopyFrom into a
new message before editing).
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.message import Message

from .kinds import Kind


@dataclass(frozen=True, slots=True)
class ObjectCreated:
    """``obj`` was created by the change that made store version ``obj.meta.version``."""

    kind: Kind
    obj: Message


@dataclass(frozen=True, slots=True)
class ObjectUpdated:
    """``old`` was replaced by ``obj``."""

    kind: Kind
    obj: Message
    old: Message


@dataclass(frozen=True, slots=True)
class ObjectDeleted:
    """``obj`` (its last stored state) was removed."""

    kind: Kind
    obj: Message


@dataclass(frozen=True, slots=True)
class ChangeCommitted:
    """Every event of the change that produced store ``version`` has been delivered.

    Only sent to watches opened with ``commits=True``; lets a consumer act once per commit.
    """

    version: int


StoreEvent = ObjectCreated | ObjectUpdated | ObjectDeleted | ChangeCommitted
