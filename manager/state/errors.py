"""The store's error hierarchy.

Every error names the object kind, id and operation it is about, so that the ControlAPI can pass the
message to the user unchanged. Translation to gRPC status codes happens at the server edge.

    StoreError
    ├── VersionConflict          a compare-and-set check failed; re-read and retry
    ├── NameConflict             a create (or rename) to a name another object of the kind holds
    ├── InvalidChange            the change is malformed (no id, no object, ...)
    │   └── ChangeTooLarge       over 200 actions / 1.5 MiB and splitting was not allowed
    ├── ProposalError            the change did not commit, or may not have
    │   ├── NotLeader            rejected because this node (or the node it reached) is not the leader
    │   ├── NoQuorum             no leader was reachable before the deadline; nothing was proposed
    │   └── ProposalOutcomeUnknown   sent, but whether it committed is unknown (leader changed)
    │       └── ProposalTimeout      sent, and no answer came before the deadline
    ├── WatchClosed              the watch was closed (by the caller, the store, or overflow)
    │   └── WatchOverflow        the watcher fell too far behind and was closed
    └── RaftConfigError          bad RaftNode settings (empty password, malformed address, bind failure)
"""

from __future__ import annotations


class StoreError(Exception):
    """Base class of every error raised by manager.state."""


class VersionConflict(StoreError):
    """A compare-and-set check failed: the object changed (or appeared, or vanished) since it was read.

    ``kind`` is the object kind's name ("node", "task", ...), ``object_id`` its id, ``operation`` one
    of "create", "update", "remove"; ``expected`` is the version the writer read (None for create)
    and ``actual`` the version in the store (None when the object does not exist).
    """

    def __init__(self, kind: str, object_id: str, operation: str,
                 expected: int | None, actual: int | None) -> None:
        self.kind = kind
        self.object_id = object_id
        self.operation = operation
        self.expected = expected
        self.actual = actual
        if operation == "create":
            detail = f"it already exists at version {actual}"
        elif actual is None:
            detail = f"it does not exist (expected version {expected})"
        else:
            detail = f"expected version {expected}, store has {actual}"
        super().__init__(f"cannot {operation} {kind} {object_id}: {detail}")


class NameConflict(StoreError):
    """A create (or a rename) of a service, network, secret or config to a name another object of
    that kind already holds (names are compared ignoring case). Checked when the change is
    applied, on every manager, so concurrent creates of one name leave exactly one object.

    ``kind`` ("service", ...), ``object_id`` the refused object, ``name`` the name,
    ``existing_id`` the object that holds it.
    """

    def __init__(self, kind: str, object_id: str, name: str, existing_id: str) -> None:
        self.kind = kind
        self.object_id = object_id
        self.name = name
        self.existing_id = existing_id
        super().__init__(f"name conflicts with an existing object: {kind} {name} already exists "
                         f"({existing_id})")


class InvalidChange(StoreError):
    """The change cannot be applied as written: an action without an object or an id, say."""


class ChangeTooLarge(InvalidChange):
    """The transaction exceeds one Raft entry's limits and the caller did not allow splitting."""


class ProposalError(StoreError):
    """A proposal did not commit, or may not have. Subclasses say which."""


class NotLeader(ProposalError):
    """The proposal was refused because it reached a node that is not the leader; it did not commit."""


class NoQuorum(ProposalError):
    """No leader could be reached before the deadline; the change was never submitted."""


class ProposalOutcomeUnknown(ProposalError):
    """The change was submitted but its fate is unknown: it may still commit.

    Callers that retry must re-read first; compare-and-set makes a duplicate write conflict rather
    than apply twice.
    """


class ProposalTimeout(ProposalOutcomeUnknown):
    """The change was submitted and no result arrived before the deadline; it may still commit."""


class WatchClosed(StoreError):
    """The watch is closed: by its owner, because the store shut it, or because it overflowed."""


class WatchOverflow(WatchClosed):
    """The watcher did not keep up: more than its queue bound of events were pending."""


class RaftConfigError(StoreError, ValueError):
    """A RaftNode was configured wrongly or could not start (bind failure, empty password, ...)."""
