"""RaftNode: the MemoryStore replicated by PySyncObj. The only module that imports pysyncobj.

Hosting follows Patroni: every attribute and callback is set before ``SyncObj.__init__`` runs
(it walks ``dir(self)`` and may call back at once), there is exactly one ``@replicated`` method and
it applies a serialized StoreChange deterministically, and PySyncObj's callbacks are turned into
asyncio futures with a deadline.

Security: PySyncObj unpickles what peers send, so an open Raft port without a password would be
remote code execution. The password is mandatory: our transport (raft_transport) admits only
peers that prove they know it, in a handshake before anything is buffered or unpickled, and seals
every frame with a session key (docs/raft.md). The node binds only to ``self_addr``
(PySyncObj would otherwise listen on 0.0.0.0).

Threads: PySyncObj runs on one tick thread that this class owns (``autoTick`` is off: the stock
tick thread stops when the thread that built the SyncObj exits). Commands are applied, snapshots
written and callbacks (``on_leader_change`` included) called on that thread. ``propose``,
``add_member`` and the other coroutines are called from an asyncio loop.

On disk, in ``data_dir``: ``raft.journal`` and ``raft.state`` (the log, term and vote, written by
our own ``raft_journal.Journal``, which replaces PySyncObj's unsynced mmap journal), ``raft.dump``
(the last log-compaction snapshot: our StoreSnapshot bytes, never a pickle) and ``members.json``
(the current membership, used instead of ``peers`` on restart).

Durability (docs/raft.md): appended entries are fsynced (one fdatasync per batch) before any
message leaves this node and before committed entries are applied (which is when a proposer is
answered); the term and vote are fsynced, with their directory, before ``setCurrentTerm`` returns.
"""

from __future__ import annotations

import asyncio
import codecs
import functools
import io
import logging
import pickle
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pysyncobj.syncobj
from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf, replicated
from pysyncobj.dns_resolver import globalDnsResolver
from pysyncobj.node import TCPNode
from pysyncobj.syncobj import SyncObjException
from pysyncobj.transport import TCPTransport

from proto import store_pb2

from . import raft_files, raft_journal, raft_transport
from .raft_timings import RaftTimings, timings_from_ticks
from .errors import (NoQuorum, NotLeader, ProposalError, ProposalOutcomeUnknown, ProposalTimeout,
                     RaftConfigError)
from .memory import ApplyResult, MemoryStore, Rejection
from .store import describe
from .tx import MAX_CHANGE_BYTES

log = logging.getLogger(__name__)

_FOLLOWER_STATE = 0             # pysyncobj.syncobj._RAFT_STATE.FOLLOWER
_CANDIDATE_STATE = 1            # pysyncobj.syncobj._RAFT_STATE.CANDIDATE
_LEADER_STATE = 2               # pysyncobj.syncobj._RAFT_STATE.LEADER
_RETRY_PAUSE = 0.01
_CLOSED = -1                    # our own failure code: the node was closed with the call in flight
_FAIL_NAMES = {v: k for k, v in vars(FAIL_REASON).items() if k.isupper()}
# Failures after which the change certainly did not commit, so proposing it again is safe.
_NOT_COMMITTED = {FAIL_REASON.MISSING_LEADER, FAIL_REASON.NOT_LEADER, FAIL_REASON.DISCARDED,
                  FAIL_REASON.QUEUE_FULL}

_pysyncobj_create_journal = pysyncobj.syncobj.createJournal


def _create_journal(journal_file):
    """PySyncObj builds its journal with ``createJournal(conf.journalFile)``; RaftNode passes its own
    ``raft_journal.Journal`` there, and this hands it back (anything else gets PySyncObj's own)."""
    if isinstance(journal_file, raft_journal.Journal):
        return journal_file
    return _pysyncobj_create_journal(journal_file)


pysyncobj.syncobj.createJournal = _create_journal


class _Transport(TCPTransport):
    """PySyncObj's TCP transport over raft_transport's authenticated connections.

    Connections: raft_transport.Connection and Listener replace TcpConnection and TcpServer (a
    handshake with the cluster's Raft key before anything is buffered or unpickled, bounded
    frames, a cap on connections in their handshake). The first message on an incoming connection
    must name a current member; PySyncObj's utility commands and read-only nodes are refused.

    Durability: a message leaves only once what it shows is durable. A follower's reply to
    append-entries acknowledges the entries it holds (and a vote request or reply vouches for the
    log's last entry), so the journal is synced first (group commit: one fdatasync for everything
    written since the last). A leader's append-entries may carry entries not yet on its own disk
    (Raft lets the leader write in parallel with its followers), but not a commit index past
    them: a majority must hold a committed entry durably, the leader included when it counts itself.
    """

    def _key(self) -> bytes:
        return self._syncObj._transport_key

    def _createServer(self) -> None:  # noqa: N802 (PySyncObj's names)
        host, port = self._syncObj.conf.bindAddress.rsplit(":", 1)
        self._server = raft_transport.Listener(
            self._syncObj._poller, globalDnsResolver().resolve(host.strip("[]")), int(port), self._key(),
            self._onNewIncomingConnection, timeout=self._syncObj.conf.connectionTimeout)

    def addNode(self, node) -> None:  # noqa: N802
        self._nodes.add(node)
        self._nodeAddrToNode[node.address] = node
        if self._shouldConnect(node):
            conn = raft_transport.Connection(self._syncObj._poller, self._key(),
                                             timeout=self._syncObj.conf.connectionTimeout)
            conn.setOnConnectedCallback(functools.partial(self._onOutgoingConnected, conn))
            conn.setOnMessageReceivedCallback(functools.partial(self._onMessageReceived, node))
            conn.setOnDisconnectedCallback(functools.partial(self._onDisconnected, conn))
            self._connections[node] = conn

    def _onIncomingMessageReceived(self, conn, message) -> None:  # noqa: N802
        if not isinstance(message, str) or message not in self._nodeAddrToNode:
            raft_transport.refusals.note(conn.peer, f"an authenticated peer named itself {message!r}, "
                                                    "not a current member")
            self._unknownConnections.discard(conn)
            conn.disconnect()
            return
        super()._onIncomingMessageReceived(conn, message)

    def _onTick(self) -> None:  # noqa: N802
        super()._onTick()
        now = time.monotonic()
        for conn in list(self._unknownConnections) + list(self._connections.values()):
            conn.check_timeout(now)
            conn.keepalive(now)

    def send(self, node, message) -> bool:
        journal = self._syncObj._journal
        kind = message.get("type")
        if kind == "append_entries":
            if message.get("commit_index", 0) > journal.durable_index:
                journal.sync()
        elif kind not in _NO_SYNC_NEEDED:
            journal.sync()
        return super().send(node, message)


# Messages that claim nothing about this node's journal: forwarding a proposal, telling a follower
# the index its proposal got, and a leadership hand-over.
_NO_SYNC_NEEDED = frozenset({"apply_command", "apply_command_response", "timeout_now"})


@dataclass(frozen=True)
class RaftMemberStatus:
    """One Raft member as this node sees it; ``reachable`` is True for self."""

    addr: str
    reachable: bool


@dataclass(frozen=True)
class RaftStatus:
    """This node's view of the cluster; ``leader_addr`` is None during an election."""

    term: int
    commit_index: int
    last_applied: int
    leader_addr: str | None
    self_addr: str
    is_leader: bool
    has_quorum: bool
    members: list[RaftMemberStatus] = field(default_factory=list)


class RaftNode(SyncObj):
    """A Raft member holding ``memory_store``; implements the Proposer protocol.

    ``peers`` are the other members' ``host:port`` (ignored when ``data_dir`` holds a membership
    from an earlier run). ``on_leader_change(is_leader)`` is called on the tick thread when this
    node gains or loses leadership. Raises RaftConfigError for an empty password, a malformed or
    wildcard address, or a port that cannot be bound.
    """

    def __init__(self, self_addr: str, peers: list[str], data_dir: Path, password: bytes | str,
                 memory_store: MemoryStore,
                 on_leader_change: Callable[[bool], None] | None = None, *,
                 timings: RaftTimings = RaftTimings(),
                 compaction_min_entries: int = 5000, compaction_min_time: float = 300.0,
                 bind_attempts: int = 5) -> None:
        if not password:
            raise RaftConfigError(f"raft node {self_addr}: a password is required (PySyncObj "
                                  "unpickles peer messages; an open port would run any code)")
        raft_files.check_addr(self_addr, "raft address")
        for peer in peers:
            raft_files.check_addr(peer, "raft peer address")
        # Everything PySyncObj may touch from __init__ onwards is set first (Patroni's rule).
        self.self_addr = self_addr
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)      # the journal and dump hold every secret in the store
        self._memory_store = memory_store
        self._on_leader_change = on_leader_change
        self._timings = timings
        self._ticks: tuple[int, int] | None = None    # the cluster's ticks, once it set any
        self._stopping = threading.Event()
        self._tick_thread: threading.Thread | None = None
        self._in_flight: dict[asyncio.Future, asyncio.AbstractEventLoop] = {}
        self._in_flight_lock = threading.Lock()
        self._transport_key = raft_transport.derive_key(password)
        self._members_file = self.data_dir / "members.json"
        # Pre-Vote (docs/raft.md): all touched on the tick thread only.
        self._leader_contact = float("-inf")    # monotonic time of the last leader append-entries
        self._prevote_term: int | None = None   # the term of the pre-vote round in progress
        self._prevote_grants: set = set()
        self._prevote_passed = False            # a majority granted: the next timeout is an election
        self._behind_a_leader = False           # a leader of a lower term reached us: our term is ahead
        self.elections_started = 0              # real elections this node started (term increments)
        self.pre_votes_started = 0
        self.pre_vote_refusals = 0              # refusals of this node's pre-votes it received
        self._dump_file = self.data_dir / "raft.dump"
        try:
            self._journal = raft_journal.Journal(self.data_dir)
        except raft_journal.JournalError as exc:
            raise RaftConfigError(f"raft node {self_addr}: {exc}") from exc
        remembered = raft_files.load_members(self._members_file, self_addr)
        if remembered is not None and set(remembered) != set(peers) | {self_addr}:
            log.info("raft %s: using the membership saved in %s (%s) instead of peers %s",
                     self_addr, self._members_file, ", ".join(remembered), ", ".join(peers))
        members = remembered if remembered is not None else sorted(set(peers) | {self_addr})
        # Saved on the first tick when nothing was saved before.
        self._persisted_members = frozenset(remembered or ())
        conf = SyncObjConf(
            password=None,              # PySyncObj's Fernet layer: replaced by raft_transport
            bindAddress=self_addr,
            autoTick=False,
            appendEntriesUseBatch=False,
            # One entry (<= 1.5 MiB) must fit one append-entries message: PySyncObj's chunked
            # path for larger entries can mark the wrong chunk as the last.
            appendEntriesBatchSizeBytes=MAX_CHANGE_BYTES + 512 * 1024,
            dynamicMembershipChange=True,
            commandsWaitLeader=False,
            journalFile=self._journal,
            fullDumpFile=str(self._dump_file),
            serializer=self._write_dump,
            deserializer=self._read_dump,
            logCompactionMinEntries=compaction_min_entries,
            logCompactionMinTime=compaction_min_time,
            raftMinTimeout=timings.election_min,
            raftMaxTimeout=timings.election_max,
            appendEntriesPeriod=timings.heartbeat,
            leaderFallbackTimeout=timings.leader_fallback,
            connectionTimeout=timings.connection_timeout,
            connectionRetryTime=timings.connection_retry,
            bindRetryTime=0.2,
            maxBindRetries=bind_attempts,
            onStateChanged=self._on_state_changed,
        )
        self._conf = conf
        try:
            super().__init__(self_addr, [m for m in members if m != self_addr], conf,
                             transportClass=_Transport)
        except SyncObjException as exc:
            self._doDestroy()           # close the journal PySyncObj already opened
            raise RaftConfigError(f"raft node {self_addr}: cannot listen on {self_addr} "
                                  f"({exc.errorCode})") from exc
        except AssertionError as exc:
            self._journal._destroy()
            raise RaftConfigError(f"raft node {self_addr}: inconsistent timings {timings}") from exc
        self.addOnTickCallback(self._save_members_if_changed)
        # Runs after the tick's new entries went out to the followers: the leader's fdatasync then
        # overlaps with theirs instead of waiting for their acks (see _Transport).
        self.addOnTickCallback(self._journal.sync)
        self._tick_thread = threading.Thread(target=self._run_ticks, name=f"raft-{self_addr}",
                                             daemon=True)
        self._tick_thread.start()
        log.info("raft %s started (members %s, data %s)", self_addr, ", ".join(members), self.data_dir)

    # -- the replicated state machine --------------------------------------------------------

    @replicated
    def _apply_store_change(self, data: bytes) -> ApplyResult:
        """Apply one committed entry (a serialized StoreChange) to the MemoryStore; deterministic."""
        try:
            change = store_pb2.StoreChange.FromString(data)
        except Exception as exc:  # DecodeError; must not stop the log, and must be the same everywhere
            return ApplyResult(self._memory_store.version,
                               Rejection("invalid", "", "", "apply", None, None,
                                         f"raft entry is not a StoreChange: {type(exc).__name__}"))
        result = self._memory_store.apply(change)
        if result.ok and any(a.target.WhichOneof("object") == "cluster" for a in change.actions):
            self._follow_cluster_timings()
        return result

    def _follow_cluster_timings(self) -> None:
        """Apply the cluster's ``spec.raft`` election/heartbeat ticks (on the tick thread)."""
        cluster = self._memory_store.view().cluster()
        if cluster is None:
            return
        ticks = (cluster.spec.raft.election_tick, cluster.spec.raft.heartbeat_tick)
        if ticks == self._ticks or (self._ticks is None and ticks == (0, 0)):
            return
        try:
            timings = timings_from_ticks(*ticks, base=self._timings)
        except ValueError as exc:   # the ControlAPI refuses these; an old entry may still hold them
            log.warning("raft %s: ignoring the cluster's raft ticks %s: %s", self.self_addr, ticks, exc)
            return
        self._ticks = ticks
        self.set_timings(timings)

    def set_timings(self, timings: RaftTimings) -> None:
        """Change the election, heartbeat and connection timers of a running node."""
        conf = self._conf
        conf.raftMinTimeout, conf.raftMaxTimeout = timings.election_min, timings.election_max
        conf.appendEntriesPeriod = timings.heartbeat
        conf.leaderFallbackTimeout = timings.leader_fallback
        conf.connectionTimeout = timings.connection_timeout
        transport = getattr(self, "_SyncObj__transport", None)
        if transport is not None:
            for conn in list(transport._connections.values()):
                conn.timeout = timings.connection_timeout
        self._timings = timings
        log.info("raft %s: election timeout %.1f-%.1fs, heartbeat %.2fs", self.self_addr,
                 timings.election_min, timings.election_max, timings.heartbeat)

    @property
    def timings(self) -> RaftTimings:
        return self._timings

    def _write_dump(self, filename: str, raft_data: tuple) -> None:
        """PySyncObj's serializer: the store snapshot plus the two log entries it must keep."""
        last_entry, prev_entry, cluster = raft_data
        raft_files.write_dump(filename, self._memory_store.snapshot(), last_entry, prev_entry,
                              sorted(node.id for node in cluster))

    def _read_dump(self, filename: str) -> tuple:
        """PySyncObj's deserializer: restore the store, hand back the entries and the membership."""
        raft_files.make_durable(filename)   # PySyncObj renamed a received dump into place unsynced
        snapshot, last_entry, prev_entry, members = raft_files.read_dump(filename)
        self._memory_store.restore(snapshot)
        self._follow_cluster_timings()
        log.info("raft %s: store restored from %s at log index %d", self.self_addr, filename,
                 last_entry[1])
        return last_entry, prev_entry, {TCPNode(addr) for addr in members}

    def _SyncObj__applyLogEntries(self) -> bool:  # noqa: N802 (PySyncObj's name)
        """PySyncObj's apply step, after a journal sync: applying answers proposers on this node,
        and a leader counts its own journal as one of the majority that stored an entry."""
        self._journal.sync()
        return SyncObj._SyncObj__applyLogEntries(self)

    # -- Pre-Vote (Ongaro's thesis §9.6, with the §4.2.3 leader-contact condition) -----------

    def _onTick(self, timeToWait: float = 0.0) -> None:  # noqa: N802 (PySyncObj's name)
        """PySyncObj's tick, with a Pre-Vote round before any election it would start.

        PySyncObj starts an election (term + 1, RequestVote to all) as soon as the election timer
        runs out, and every member that receives a higher term adopts it, so a leader steps down.
        A follower that restarts, or hears nothing from a busy leader for one election timeout,
        then costs the cluster a term change and a leadership gap although the leader is healthy.
        Here the timer running out starts a pre-vote instead: "would you vote for me at term + 1?"
        Nothing durable changes on either side. Only when a majority (this node included) says
        yes does the timer run out again at once and PySyncObj start the real election, unchanged.
        A member says yes only if it has not heard from a leader within the minimum election
        timeout, is not itself the leader, and the candidate's log is at least as up to date as
        its own (``_answer_pre_vote``). Two cases skip the pre-vote: a leadership transfer
        (``timeout_now`` from the leader; the target must run at once and others still hear the
        outgoing leader), and a node whose term is already ahead of a live leader's (it ignores
        that leader's appends, so only a real election at its term can bring it back).
        """
        if (self._SyncObj__raftState in (_FOLLOWER_STATE, _CANDIDATE_STATE)
                and self.selfNode is not None
                and self._SyncObj__raftElectionDeadline < time.monotonic()
                and self._SyncObj__connectedToAnyone()):
            skip = self._SyncObj__transferInProgress or self._behind_a_leader
            if not (skip or self._prevote_passed):
                self._start_pre_vote()      # passes at once only in a one-member cluster
            if skip or self._prevote_passed:
                self._prevote_term, self._prevote_passed = None, False
                self._behind_a_leader = False
                self.elections_started += 1
                log.info("raft %s: starting an election for term %d", self.self_addr,
                         self._SyncObj__raftCurrentTerm + 1)
        SyncObj._onTick(self, timeToWait)

    def _start_pre_vote(self) -> None:
        self._SyncObj__raftElectionDeadline = time.monotonic() + self._SyncObj__generateRaftTimeout()
        self._prevote_term = self._SyncObj__raftCurrentTerm + 1
        self._prevote_grants = {self.selfNode}
        self.pre_votes_started += 1
        message = {"type": "pre_vote", "term": self._prevote_term,
                   "last_log_index": self._SyncObj__getCurrentLogIndex(),
                   "last_log_term": self._SyncObj__getCurrentLogTerm()}
        for node in self._SyncObj__otherNodes:
            self._SyncObj__transport.send(node, dict(message))
        self._count_pre_votes()

    def _count_pre_votes(self) -> None:
        if len(self._prevote_grants) > (len(self._SyncObj__otherNodes) + 1) / 2:
            self._prevote_passed = True
            self._SyncObj__raftElectionDeadline = 0     # the election starts on this or the next tick

    def _answer_pre_vote(self, node, message: dict) -> None:
        now = time.monotonic()
        heard_leader = now - self._leader_contact < self._conf.raftMinTimeout
        log_term, log_index = self._SyncObj__getCurrentLogTerm(), self._SyncObj__getCurrentLogIndex()
        up_to_date = (message["last_log_term"] > log_term
                      or (message["last_log_term"] == log_term and message["last_log_index"] >= log_index))
        granted = (message["term"] > self._SyncObj__raftCurrentTerm and up_to_date
                   and self._SyncObj__raftState != _LEADER_STATE and not heard_leader)
        self._SyncObj__transport.send(node, {"type": "pre_vote_response", "term": message["term"],
                                            "granted": granted})

    def _SyncObj__onMessageReceived(self, node, message) -> None:  # noqa: N802 (PySyncObj's name)
        """PySyncObj's message handler, plus Pre-Vote (``_onTick``) and one fix: a successful ack
        never moves nextIndex back.

        PySyncObj sets a follower's nextIndex to (acked index + 1) on every successful ack that
        raises matchIndex. With appendEntriesUseBatch=False the leader sends each entry at once,
        so an ack for entry N often arrives after N+1 was sent; nextIndex then falls back to N+1,
        the next append re-sends N+1, and the follower truncates and rewrites entries it already
        applied (logging "truncating already-applied log entries"). If such a rewrite is cut short
        (a size-limited message) and the leader dies, a committed entry could be lost. Keeping
        nextIndex where it was is what Raft intends: entries already sent on the ordered
        connection need not be sent again; a follower that lacks them answers with reset=True.
        """
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "pre_vote":
            self._answer_pre_vote(node, message)
            return
        if kind == "pre_vote_response":
            if not message.get("granted"):
                if message.get("term") == self._SyncObj__raftCurrentTerm + 1:
                    self.pre_vote_refusals += 1     # counted even after the round was dropped
            elif (message.get("term") == self._prevote_term
                    and self._SyncObj__raftState != _LEADER_STATE):
                self._prevote_grants.add(node)
                self._count_pre_votes()
            return
        if kind == "append_entries":
            if message["term"] >= self._SyncObj__raftCurrentTerm:
                self._leader_contact = time.monotonic()
                self._prevote_term, self._prevote_passed = None, False
                self._behind_a_leader = False
            else:
                self._behind_a_leader = True
        if (kind == "next_node_idx"
                and message.get("success") and not message.get("reset")):
            next_index = self._SyncObj__raftNextIndex
            before = next_index.get(node)
            SyncObj._SyncObj__onMessageReceived(self, node, message)
            after = next_index.get(node)
            if before is not None and after is not None and after < before:
                next_index[node] = before
            return
        SyncObj._SyncObj__onMessageReceived(self, node, message)

    # -- Proposer ----------------------------------------------------------------------------

    def is_leader(self) -> bool:
        """Whether this node believes it leads (two nodes may briefly both believe so)."""
        return self._isLeader()

    async def propose(self, change: store_pb2.StoreChange, timeout: float) -> ApplyResult:
        """Commit ``change`` through Raft; return its ApplyResult once applied on this node.

        Works on any member (followers forward to the leader). While no leader is reachable, or
        after a failure that proves the change did not commit, it waits and tries again until the
        deadline. Raises NoQuorum (no leader in time, nothing proposed), NotLeader (refused by a
        deposed leader), ProposalOutcomeUnknown (the leader changed while it was in flight) or
        ProposalTimeout (sent, no answer in time; it may still commit).
        """
        data = change.SerializeToString()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        last_failure: int | None = None
        while True:
            if self._stopping.is_set():
                raise NotLeader(f"raft {self.self_addr} is closed; {describe(change)} was not committed")
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise self._deadline_error(change, last_failure, timeout)
            if not self._leader_reachable():
                last_failure = FAIL_REASON.MISSING_LEADER
                await asyncio.sleep(min(_RETRY_PAUSE * 2, remaining))
                continue
            future = self._submit(loop, lambda cb: self._apply_store_change(data, callback=cb))
            try:
                result, error = await asyncio.wait_for(future, remaining)
            except TimeoutError:
                raise ProposalTimeout(f"raft {self.self_addr}: no result within {timeout:.1f}s for "
                                      f"{describe(change)}; it may still commit") from None
            if error == FAIL_REASON.SUCCESS:
                return result
            if error == _CLOSED:
                raise ProposalOutcomeUnknown(f"raft {self.self_addr} was closed while {describe(change)} "
                                             "was in flight; it may have committed")
            if error not in _NOT_COMMITTED:
                raise ProposalOutcomeUnknown(
                    f"raft {self.self_addr}: {describe(change)}: {_FAIL_NAMES.get(error, error)} "
                    "(the leader changed while the change was in flight); it may have committed")
            last_failure = error
            await asyncio.sleep(min(_RETRY_PAUSE, max(0.0, deadline - loop.time())))

    def _deadline_error(self, change: store_pb2.StoreChange, failure: int | None,
                        timeout: float) -> ProposalError:
        what = f"raft {self.self_addr}: cannot commit {describe(change)} within {timeout:.1f}s"
        if failure in (FAIL_REASON.NOT_LEADER, FAIL_REASON.DISCARDED):
            return NotLeader(f"{what}: the leader it reached lost leadership")
        if failure == FAIL_REASON.QUEUE_FULL:
            return ProposalError(f"{what}: the raft command queue is full")
        return NoQuorum(f"{what}: no reachable leader (quorum lost or election in progress)")

    def _leader_reachable(self) -> bool:
        leader = self._getLeader()
        if leader is None:
            return False
        return leader == self.selfNode or self.isNodeConnected(leader)

    def _submit(self, loop: asyncio.AbstractEventLoop,
                send: Callable[[Callable[[object, int], None]], None]) -> asyncio.Future:
        """Call ``send(callback)`` and return a future resolved with (result, FAIL_REASON) on our loop.

        Futures still pending when the node is destroyed resolve with (None, _CLOSED).
        """
        future: asyncio.Future = loop.create_future()
        with self._in_flight_lock:
            self._in_flight[future] = loop
        future.add_done_callback(self._forget_future)

        def settle(result: object, error: int) -> None:
            if not future.done():
                future.set_result((result, error))

        def callback(result: object, error: int) -> None:   # runs on the tick thread
            try:
                loop.call_soon_threadsafe(settle, result, error)
            except RuntimeError:
                pass                                         # the caller's loop is gone

        try:
            send(callback)
        except BlockingIOError:
            pass    # queued; PySyncObj's wake-up pipe is full, so the tick thread is awake anyway
        return future

    def _forget_future(self, future: asyncio.Future) -> None:
        with self._in_flight_lock:
            self._in_flight.pop(future, None)

    def _fail_in_flight(self) -> None:
        with self._in_flight_lock:
            pending, self._in_flight = list(self._in_flight.items()), {}
        for future, loop in pending:
            def settle(future: asyncio.Future = future) -> None:
                if not future.done():
                    future.set_result((None, _CLOSED))
            try:
                loop.call_soon_threadsafe(settle)
            except RuntimeError:
                pass

    async def wait_ready(self, timeout: float) -> None:
        """Return once a leader exists and this node has applied everything committed before now.

        Commits an empty change (a read barrier) and waits until it is applied here. Raises
        NoQuorum or ProposalTimeout after ``timeout``.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                await self.propose(store_pb2.StoreChange(), max(0.001, deadline - loop.time()))
                return
            except ProposalOutcomeUnknown:
                if loop.time() >= deadline:
                    raise
                await asyncio.sleep(_RETRY_PAUSE)

    # -- status and membership ---------------------------------------------------------------

    def status(self) -> RaftStatus:
        """A snapshot of term, commit index, leader and members as this node sees them."""
        for _ in range(5):
            try:
                raw = self.getStatus()
                break
            except RuntimeError:    # a dict changed size under us on the tick thread; try again
                continue
        else:
            raw = self.getStatus()
        members = [RaftMemberStatus(self.self_addr, True)]
        prefix = "partner_node_status_server_"
        for key, value in raw.items():
            if key.startswith(prefix):
                members.append(RaftMemberStatus(key[len(prefix):], value == 2))
        members.sort(key=lambda m: m.addr)
        leader = raw.get("leader")
        return RaftStatus(term=raw["raft_term"], commit_index=raw["commit_idx"],
                          last_applied=raw["last_applied"],
                          leader_addr=str(leader) if leader is not None else None,
                          self_addr=self.self_addr, is_leader=raw["state"] == _LEADER_STATE,
                          has_quorum=raw["has_quorum"], members=members)

    def member_addrs(self) -> list[str]:
        """Current members (self included), as this node knows them."""
        return sorted({node.id for node in self.otherNodes} | {self.self_addr})

    async def add_member(self, addr: str, timeout: float = 10.0) -> None:
        """Add ``addr`` to the cluster and return once that change has committed.

        Idempotent: adding a member returns at once. Start the new node with the current
        members as its ``peers``; it catches up from the leader (log or snapshot).
        """
        raft_files.check_addr(addr, "raft member address")
        await self._change_membership("add", addr, timeout,
                                      lambda cb: self.addNodeToCluster(addr, callback=cb))

    async def remove_member(self, addr: str, timeout: float = 10.0) -> None:
        """Remove ``addr`` from the cluster and return once that change has committed.

        Idempotent. Call it on a node other than ``addr`` (a node cannot see its own removal
        commit). To remove the leader, call ``transfer_leadership`` on it first.
        """
        raft_files.check_addr(addr, "raft member address")
        if addr == self.self_addr:
            raise RaftConfigError(f"raft {addr}: a member cannot remove itself; "
                                  "call remove_member on another manager")
        await self._change_membership("remove", addr, timeout,
                                      lambda cb: self.removeNodeFromCluster(addr, callback=cb))

    async def _change_membership(self, operation: str, addr: str, timeout: float,
                                 send: Callable[[Callable[[object, int], None]], None]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        wanted = operation == "add"
        failure: int | None = None
        while loop.time() < deadline:
            if self._stopping.is_set():
                raise NotLeader(f"raft {self.self_addr} is closed; cannot {operation} member {addr}")
            if (addr in self.member_addrs()) == wanted and failure is not None:
                return      # an earlier attempt (or someone else) already made the change
            if not self._leader_reachable():
                failure = FAIL_REASON.MISSING_LEADER
                await asyncio.sleep(_RETRY_PAUSE * 5)
                continue
            future = self._submit(loop, send)
            try:
                _, failure = await asyncio.wait_for(future, max(0.001, deadline - loop.time()))
            except TimeoutError:
                break
            if failure == FAIL_REASON.SUCCESS:
                log.info("raft %s: %s member %s committed", self.self_addr, operation, addr)
                return
            # REQUEST_DENIED: another membership change is pending, the leader's first entry is
            # not committed yet, or the change is already made. All are worth another look.
            await asyncio.sleep(_RETRY_PAUSE * 5)
        raise ProposalTimeout(f"raft {self.self_addr}: cannot {operation} member {addr} within "
                              f"{timeout:.1f}s (last failure: {_FAIL_NAMES.get(failure, failure)})")

    async def transfer_leadership(self, timeout: float = 5.0) -> str:
        """Hand leadership to the most caught-up follower; return the new leader's address."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            leader = self._getLeader()
            if leader is not None and leader != self.selfNode and self._leader_reachable():
                return str(leader)
            if self._isLeader():
                self._submit(loop, lambda cb: self.transferLeadership(callback=cb))
            await asyncio.sleep(_RETRY_PAUSE * 5)
        raise ProposalTimeout(f"raft {self.self_addr}: leadership not transferred within {timeout:.1f}s")

    # -- the tick thread ---------------------------------------------------------------------

    def _run_ticks(self) -> None:
        period = self._timings.tick
        while not self._stopping.is_set():
            try:
                self.doTick(period)
            except Exception:
                log.exception("raft %s: tick failed", self.self_addr)
                self._stopping.wait(period)
        try:
            journal = getattr(self, "_SyncObj__raftLog", None)
            if journal is not None:
                journal.onOneSecondTimer()     # persist the commit index now, not within 1 s
            self._doDestroy()
        except Exception:
            log.exception("raft %s: shutdown failed", self.self_addr)
        log.info("raft %s stopped", self.self_addr)

    def _on_state_changed(self, old_state: int, new_state: int) -> None:
        if (old_state == _LEADER_STATE) == (new_state == _LEADER_STATE):
            return
        leading = new_state == _LEADER_STATE
        log.info("raft %s: %s leadership", self.self_addr, "gained" if leading else "lost")
        if self._on_leader_change is not None:
            try:
                self._on_leader_change(leading)
            except Exception:
                log.exception("raft %s: on_leader_change callback failed", self.self_addr)

    def _save_members_if_changed(self) -> None:
        members = frozenset(node.id for node in self.otherNodes) | {self.self_addr}
        if members != self._persisted_members:
            raft_files.save_members(self._members_file, self.self_addr, sorted(members))
            self._persisted_members = members
            log.info("raft %s: membership is now %s", self.self_addr, ", ".join(sorted(members)))

    def destroy(self) -> None:
        """Stop the tick thread, close connections and the journal. Blocks until done; idempotent."""
        self._stopping.set()
        thread = self._tick_thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        self._fail_in_flight()

    async def close(self) -> None:
        """``destroy`` without blocking the loop."""
        await asyncio.to_thread(self.destroy)

    def __repr__(self) -> str:
        return f"RaftNode({self.self_addr!r}, data_dir={str(self.data_dir)!r})"


# -- offline reading, for quorum-loss recovery (manager.state.recovery) -------------------------

@dataclass(frozen=True)
class LocalRaftState:
    """What a stopped manager's Raft files hold: the store after every entry in its journal."""

    snapshot: bytes             # StoreSnapshot bytes
    last_index: int             # index of the last journal entry read (or of the dump)
    entries_applied: int        # store changes applied on top of the dump
    dump_members: list[str]     # the membership the dump recorded ([] without a dump)


class _EntryUnpickler(pickle.Unpickler):
    """Unpickles PySyncObj's ``(method id, (data,))`` entries and nothing else.

    PySyncObj pickles with protocol 2, which spells bytes as ``_codecs.encode(text, "latin1")``
    and empty bytes (a read barrier's empty change) as ``__builtin__.bytes()``; those are the only
    callables allowed.
    """

    _ALLOWED = {("_codecs", "encode"): codecs.encode, ("__builtin__", "bytes"): bytes,
                ("builtins", "bytes"): bytes}

    def find_class(self, module: str, name: str):
        allowed = self._ALLOWED.get((module, name))
        if allowed is None:
            raise pickle.UnpicklingError(f"raft entry refers to {module}.{name}")
        return allowed


def _entry_payload(command: bytes) -> bytes | None:
    """The StoreChange bytes of a regular journal entry; None for no-op and membership entries."""
    if command[:1] != b"\x00":          # pysyncobj _COMMAND_TYPE.REGULAR
        return None
    call = _EntryUnpickler(io.BytesIO(command[1:])).load()
    if not (isinstance(call, tuple) and len(call) >= 2 and isinstance(call[1], tuple)
            and len(call[1]) == 1 and isinstance(call[1][0], bytes)):
        raise ValueError("not a store change call")
    return call[1][0]


def read_local_state(data_dir: Path) -> LocalRaftState:
    """Read a stopped manager's store from ``data_dir`` without starting Raft or touching the network.

    The dump is restored, then every store change in the journal after it is applied in order,
    whether or not this member knew it had committed: as in etcd's and SwarmKit's
    force-new-cluster, the survivor's log becomes the cluster's history, so no write the old
    cluster acknowledged (which every majority, hence possibly this member, holds) is dropped.
    Call it only while no RaftNode runs on ``data_dir``. Raises RaftConfigError when there is no
    Raft state or it cannot be read.
    """
    data_dir = Path(data_dir)
    dump, journal_path = data_dir / "raft.dump", data_dir / "raft.journal"
    if not dump.exists() and not journal_path.exists():
        raise RaftConfigError(f"no raft state in {data_dir}: this is not a manager's state directory")
    memory = MemoryStore()
    start, members = 0, []
    if dump.exists():
        snapshot, last, _prev, members = raft_files.read_dump(str(dump))
        memory.restore(snapshot)
        start = last[1]
    last_index, applied = start, 0
    if journal_path.exists():
        try:
            entries, recovery = raft_journal.read_entries(data_dir)
        except (raft_journal.JournalError, OSError) as exc:
            raise RaftConfigError(f"raft journal {journal_path} is unreadable: {exc}") from exc
        if recovery.reason:
            log.warning("raft journal %s: %s; read the %d entries before it", journal_path,
                        recovery.reason, recovery.entries)
        for command, index, _term in entries:
            if index <= start:
                continue
            last_index = index
            try:
                payload = _entry_payload(bytes(command))
            except (pickle.UnpicklingError, ValueError, EOFError) as exc:
                raise RaftConfigError(f"raft journal {journal_path}: entry {index} is not a "
                                      f"store change: {exc}") from exc
            if payload is not None:
                memory.apply(store_pb2.StoreChange.FromString(payload))
                applied += 1
    log.info("raft state in %s read: dump up to %d, %d changes after it, last entry %d",
             data_dir, start, applied, last_index)
    return LocalRaftState(snapshot=memory.snapshot(), last_index=last_index, entries_applied=applied,
                          dump_members=members)
