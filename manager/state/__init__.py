"""manager.state: the replicated object store every manager holds.

Exports:
- ``Kind``, ``wrap``, ``unwrap``, ``kind_of``, ``copy_of``: object kinds and the StoreObject envelope.
- ``ReadView``: an immutable snapshot of the store (objects returned must not be mutated).
- ``MemoryStore``, ``ApplyResult``, ``Rejection``: the deterministic state machine.
- ``Watch`` and the events ``ObjectCreated``, ``ObjectUpdated``, ``ObjectDeleted``, ``ChangeCommitted``.
- ``Tx``, ``Store``, ``Proposer``, ``LocalProposer``: transactions committed through a proposer.
- Errors: ``StoreError`` and its subclasses (see errors.py).

``RaftNode`` (the PySyncObj-backed Proposer) lives in ``manager.state.raft`` and is imported from
there, so that importing the store does not import PySyncObj.
"""

from .errors import (ChangeTooLarge, InvalidChange, NameConflict, NoQuorum, NotLeader, ProposalError,
                     ProposalOutcomeUnknown, ProposalTimeout, RaftConfigError, StoreError,
                     VersionConflict, WatchClosed, WatchOverflow)
from .events import ChangeCommitted, ObjectCreated, ObjectDeleted, ObjectUpdated, StoreEvent
from .kinds import Kind, copy_of, kind_of, unwrap, wrap
from .memory import ApplyResult, MemoryStore, Rejection
from .store import LocalProposer, Proposer, Store
from .tx import MAX_ACTIONS_PER_CHANGE, MAX_CHANGE_BYTES, Tx, split_actions
from .view import ReadView
from .watch import Watch

__all__ = [
    "ApplyResult", "ChangeCommitted", "ChangeTooLarge", "InvalidChange", "Kind", "LocalProposer",
    "MAX_ACTIONS_PER_CHANGE", "MAX_CHANGE_BYTES", "MemoryStore", "NameConflict", "NoQuorum", "NotLeader",
    "ObjectCreated", "ObjectDeleted", "ObjectUpdated", "ProposalError", "ProposalOutcomeUnknown",
    "ProposalTimeout", "Proposer", "RaftConfigError", "ReadView", "Rejection", "Store", "StoreError",
    "StoreEvent", "Tx", "VersionConflict", "Watch", "WatchClosed", "WatchOverflow", "copy_of",
    "kind_of", "split_actions", "unwrap", "wrap",
]

_RAFT_NAMES = ("RaftNode", "RaftStatus", "RaftMemberStatus", "RaftTimings")


def __getattr__(name: str):
    """``from manager.state import RaftNode`` works, importing PySyncObj only on first use."""
    if name in _RAFT_NAMES:
        from . import raft
        return getattr(raft, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
