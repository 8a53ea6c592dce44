"""Store: transactions over the MemoryStore, committed through a Proposer.

    store = Store(memory_store, proposer)
    def drain(tx):
        node = copy_of(tx.get(Kind.NODE, node_id)); node.spec.availability = DRAIN
        tx.update(node)
    await store.update_retry(drain)

``update`` runs the transaction function synchronously on the caller's loop, proposes the recorded
actions as one StoreChange, and returns once the change has committed and been applied to this
manager's MemoryStore, so a read right after ``update`` sees the write. The Proposer is the seam
between the store and consensus: RaftNode in production, LocalProposer in component tests.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Protocol, TypeVar

from proto import store_pb2

from .errors import ProposalError, VersionConflict
from .kinds import Kind
from .memory import ApplyResult, MemoryStore
from .tx import Tx
from .view import ReadView
from .watch import DEFAULT_WATCH_QUEUE, Watch

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_PROPOSAL_TIMEOUT = 5.0


class Proposer(Protocol):
    """Commits StoreChanges. ``propose`` returns once the change is committed and applied locally."""

    async def propose(self, change: store_pb2.StoreChange, timeout: float) -> ApplyResult:
        """Commit ``change`` and return its ApplyResult, or raise a ProposalError subclass."""
        ...

    def is_leader(self) -> bool:
        """Whether this manager currently leads (may be stale by the time the caller acts)."""
        ...


class LocalProposer:
    """A Proposer that applies changes in-process, at once: one manager, no consensus.

    The change goes through a serialize/parse round trip, as it would through Raft.
    """

    def __init__(self, memory_store: MemoryStore) -> None:
        self._memory_store = memory_store

    async def propose(self, change: store_pb2.StoreChange, timeout: float) -> ApplyResult:
        data = change.SerializeToString()
        return self._memory_store.apply(store_pb2.StoreChange.FromString(data), owned=True)

    def is_leader(self) -> bool:
        return True


class Store:
    """Reads from the local MemoryStore, writes through a Proposer. Use from one asyncio loop.

    ``clock`` stamps meta.created_at/updated_at (seconds, float). ``on_proposal(seconds, outcome)``,
    if given, is called after each proposal with outcome "committed", "conflict" or "error"
    (for metrics).
    """

    def __init__(self, memory_store: MemoryStore, proposer: Proposer,
                 clock: Callable[[], float] = time.time, *,
                 proposal_timeout: float = DEFAULT_PROPOSAL_TIMEOUT,
                 on_proposal: Callable[[float, str], None] | None = None) -> None:
        self.memory_store = memory_store
        self.proposer = proposer
        self.clock = clock
        self.proposal_timeout = proposal_timeout
        self._on_proposal = on_proposal

    def view(self) -> ReadView:
        """The current immutable view of this manager's store."""
        return self.memory_store.view()

    def watch(self, kinds: Iterable[Kind] | None = None, *, maxsize: int = DEFAULT_WATCH_QUEUE,
              commits: bool = False) -> Watch:
        """A Watch of commits after this call (see MemoryStore.watch)."""
        return self.memory_store.watch(kinds, maxsize=maxsize, commits=commits)

    def view_and_watch(self, kinds: Iterable[Kind] | None = None, *, maxsize: int = DEFAULT_WATCH_QUEUE,
                       commits: bool = False) -> tuple[ReadView, Watch]:
        """The current view and a Watch starting right after it (see MemoryStore.view_and_watch)."""
        return self.memory_store.view_and_watch(kinds, maxsize=maxsize, commits=commits)

    def is_leader(self) -> bool:
        return self.proposer.is_leader()

    async def update(self, fn: Callable[[Tx], T], *, allow_split: bool = False,
                     timeout: float | None = None) -> T:
        """Run ``fn(tx)``, commit what it recorded, return what it returned.

        Nothing is proposed when ``fn`` raises or records nothing. A transaction over 200 actions
        or 1.5 MiB raises ChangeTooLarge unless ``allow_split``; then it commits as several
        changes in order, each atomic on its own, and a conflict in a later one leaves the earlier
        ones committed. Raises VersionConflict (re-read and retry, or use ``update_retry``),
        InvalidChange, or a ProposalError subclass. ``timeout`` bounds each proposal.
        """
        tx = Tx(self.memory_store.view(), self.clock)
        result = fn(tx)
        if not len(tx):
            return result
        for change in tx.changes(allow_split):
            await self._propose(change, self.proposal_timeout if timeout is None else timeout)
        return result

    async def update_retry(self, fn: Callable[[Tx], T], attempts: int = 5, *,
                           allow_split: bool = False, timeout: float | None = None) -> T:
        """``update``, re-running ``fn`` on a fresh view after each VersionConflict, up to ``attempts`` times.

        ``fn`` must be safe to run more than once (decide from what it reads in the tx).
        """
        if attempts < 1:
            raise ValueError("update_retry needs at least one attempt")
        for attempt in range(1, attempts + 1):
            try:
                return await self.update(fn, allow_split=allow_split, timeout=timeout)
            except VersionConflict as conflict:
                if attempt == attempts:
                    raise
                log.debug("retrying store update (attempt %d of %d) after conflict: %s",
                          attempt + 1, attempts, conflict)
        raise AssertionError("unreachable")

    async def _propose(self, change: store_pb2.StoreChange, timeout: float) -> None:
        change.proposal_id = uuid.uuid4().hex
        started = time.monotonic()
        outcome = "error"
        try:
            result = await self.proposer.propose(change, timeout)
            outcome = "committed" if result.ok else "conflict"
        except ProposalError as exc:
            log.info("proposal %s (%s) failed: %s", change.proposal_id, describe(change), exc)
            raise
        finally:
            if self._on_proposal is not None:
                self._on_proposal(time.monotonic() - started, outcome)
        if not result.ok:
            log.debug("proposal %s rejected: %s", change.proposal_id, result.rejected)
        result.raise_for_rejection()


def describe(change: store_pb2.StoreChange, limit: int = 3) -> str:
    """A short human description of a change: 'update task abc, create task def (+3 more)'."""
    names = {0: "create", 1: "update", 2: "remove"}
    parts = []
    for action in change.actions[:limit]:
        field = action.target.WhichOneof("object") or "?"
        parts.append(f"{names.get(action.kind, '?')} {field} {getattr(action.target, field).id if field != '?' else ''}")
    more = len(change.actions) - limit
    return ", ".join(parts) + (f" (+{more} more)" if more > 0 else "")
