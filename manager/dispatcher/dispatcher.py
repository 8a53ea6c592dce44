"""The dispatcher (leader only): every node's gRPC session with the cluster.

Per node it serves four calls (SwarmKit's dispatcher API):
- ``Session``: the stream that opens a session and tells the node the managers' addresses,
  its role and the heartbeat period (and again whenever they change);
- ``Heartbeat``: liveness, below;
- ``Assignments``: what the node must run and hold: its tasks, the secrets and configs they
  use (opened from their sealed form), and the data plane (dispatcher/assignments.py,
  dispatcher/netstate.py), sent whole first and then as changes;
- ``UpdateTaskStatus``: batches of task status reports, applied to the store when allowed
  (assignments.status_update_allowed).

Nodes send ``Heartbeat`` calls every ``heartbeat_period`` seconds. The leader marks a node READY when its session opens
and DOWN when it misses heartbeats for ``GRACE_MULTIPLIER × period``. Store writes
happen only on transitions, never per heartbeat. On a follower every call is refused
with FAILED_PRECONDITION and the leader's address, so agents follow the leader.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Protocol

import grpc

from common.heartbeat import GRACE_PERIODS, call_timeout
from manager import stats
from manager import grpcutil
from manager.ca import rotation
from manager.dispatcher import assignments, netstate
from manager.dispatcher.fanout import Fanout, SessionFanout
from manager.dispatcher.liveness import HeartbeatLag, expired_nodes
from manager.secretbox import SecretBox, SecretBoxError
from manager.state import MAX_ACTIONS_PER_CHANGE, Kind, StoreError
from proto import cluster_pb2, cluster_pb2_grpc, objects_pb2

log = logging.getLogger(__name__)

DEFAULT_HEARTBEAT_PERIOD = 5.0
GRACE_MULTIPLIER = float(GRACE_PERIODS)
# A liveness check that wakes this much later than asked means the loop was not running: the
# heartbeats that came meanwhile wait unread, so the stall is not the nodes' (see _excuse_stall).
STALL_TOLERANCE = 0.25
# A session stream looks at its message at least this often, woken or not.
SESSION_RECHECK = 5.0
# Status updates written as one batch at most (whole requests; at least one request per batch).
STATUS_BATCH = 2000


class Leadership(Protocol):
    def is_leader(self) -> bool: ...
    def leader_addr(self) -> str | None: ...


@dataclass
class _Session:
    session_id: str
    node_id: str
    last_heartbeat: float
    changed: asyncio.Event = field(default_factory=asyncio.Event)


def heartbeat_period(cluster: objects_pb2.Cluster | None) -> float:
    if cluster is not None and cluster.spec.dispatcher.heartbeat_period > 0:
        return cluster.spec.dispatcher.heartbeat_period
    return DEFAULT_HEARTBEAT_PERIOD


def _time_remaining(context) -> float | None:
    """Seconds left of the call's deadline, None without one (or outside gRPC)."""
    try:
        remaining = context.time_remaining()
    except AttributeError:
        return None
    return remaining if remaining is not None and remaining < 1e6 else None


class Dispatcher(cluster_pb2_grpc.DispatcherServicer):
    """Serves the Dispatcher gRPC service; ``run()`` is the leader-only liveness loop.

    All methods run on the manager's asyncio loop.
    """

    def __init__(self, store, leadership: Leadership, authorize, clock: Callable[[], float] = time.time,
                 secrets: SecretBox | None = None):
        self._store = store
        self._secrets = secrets  # opens sealed secret data for sending (manager.secretbox)
        self._leadership = leadership
        self._authorize = authorize
        self._clock = clock
        self._sessions: dict[str, _Session] = {}
        self._last_seen: dict[str, float] = {}
        self._promised_grace: dict[str, float] = {}   # node -> grace for the period its last heartbeat was told
        self._leader_since = clock()
        self._lag = HeartbeatLag(GRACE_MULTIPLIER * DEFAULT_HEARTBEAT_PERIOD)
        self._fanout = Fanout(store)
        self._session_fanout = SessionFanout(store, self._wake_sessions)
        self._network_context: netstate.Shared | None = None
        self._managers_cache: tuple[object, list[cluster_pb2.WeightedPeer]] | None = None
        self._status_queue: deque[tuple[str, list, asyncio.Future]] = deque()    # (node, updates, answered)
        self._status_writer: asyncio.Task | None = None

    # -- gRPC ------------------------------------------------------------------
    async def Session(self, request, context):
        ident = await self._authorize(context, "swarm-worker", "swarm-manager")
        if not self._leadership.is_leader():
            await grpcutil.abort_not_leader(context, self._leadership.leader_addr(), "session")
        node_id = ident.node_id
        if self._store.view().get(Kind.NODE, node_id) is None:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                f"node {node_id} is not a member of this swarm (it was removed)")
        addr = grpcutil.peer_host(context)
        # Heard from now, before READY is written: the liveness check may run between that commit
        # and this coroutine going on, and a READY node it has never heard from is measured from
        # when this manager became leader (a node joining later than one grace after that was
        # marked Down at once; bench/scale.py saw it for nodes joining under load).
        self._last_seen[node_id] = self._clock()
        self._promised_grace[node_id] = GRACE_MULTIPLIER * heartbeat_period(self._store.view().cluster())
        try:
            await self._mark_ready(node_id, request.description, addr)
        except StoreError as err:   # no quorum, a proposal timeout: the agent retries
            await context.abort(grpc.StatusCode.UNAVAILABLE,
                                f"session of node {node_id}: could not record it ready: {err}")
        session = _Session(secrets.token_hex(12), node_id, self._clock())
        old = self._sessions.get(node_id)
        if old is not None:
            old.changed.set()  # the older stream sees it was replaced and ends
        self._sessions[node_id] = session
        self._last_seen[node_id] = session.last_heartbeat
        self._promised_grace[node_id] = GRACE_MULTIPLIER * heartbeat_period(self._store.view().cluster())
        log.info("session opened", extra={"node": node_id, "addr": addr})
        self._session_fanout.acquire()
        try:
            last = None
            while True:
                session.changed.clear()
                if self._sessions.get(node_id) is not session or not self._leadership.is_leader():
                    return
                message = self._session_message(session)
                if message != last:
                    yield message
                    last = message
                # woken by the session fanout (a change of this node, a manager or the cluster),
                # a newer session of the node, or the end of leadership; looked at again anyway
                # every SESSION_RECHECK seconds
                try:
                    await asyncio.wait_for(session.changed.wait(), SESSION_RECHECK)
                except asyncio.TimeoutError:
                    pass
        finally:
            self._session_fanout.release()
            if self._sessions.get(node_id) is session:
                del self._sessions[node_id]

    async def Heartbeat(self, request, context):
        ident = await self._authorize(context, "swarm-worker", "swarm-manager")
        if not self._leadership.is_leader():
            await grpcutil.abort_not_leader(context, self._leadership.leader_addr(), "heartbeat")
        session = self._sessions.get(ident.node_id)
        if session is None or session.session_id != request.session_id:
            await context.abort(grpc.StatusCode.NOT_FOUND,
                                f"heartbeat from node {ident.node_id}: session {request.session_id} is not current")
        now = self._clock()
        session.last_heartbeat = now
        self._last_seen[ident.node_id] = now
        remaining = _time_remaining(context)
        if remaining is not None:
            # the agent gave the call call_timeout(the period it was told): what is gone of it
            # is how long the heartbeat waited for this manager
            told = self._promised_grace.get(ident.node_id, 0.0) / GRACE_MULTIPLIER
            waited = max(0.0, call_timeout(told or DEFAULT_HEARTBEAT_PERIOD) - remaining)
            self._lag.note(now, waited)
            stats.HEARTBEAT_WAIT.observe(waited)
        node = self._store.view().get(Kind.NODE, ident.node_id)
        if node is not None and (node.status.state != objects_pb2.NodeStatus.READY
                                 or node.status.message != request.status_message):
            try:
                await self._mark_ready(ident.node_id, None, node.status.addr, request.status_message)
            except StoreError as err:
                await context.abort(grpc.StatusCode.UNAVAILABLE,
                                    f"heartbeat from node {ident.node_id}: could not record its status: {err}")
        period = heartbeat_period(self._store.view().cluster())
        self._promised_grace[ident.node_id] = GRACE_MULTIPLIER * period
        return cluster_pb2.HeartbeatResponse(period=period)

    async def Assignments(self, request, context):
        ident = await self._authorize(context, "swarm-worker", "swarm-manager")
        if not self._leadership.is_leader():
            await grpcutil.abort_not_leader(context, self._leadership.leader_addr(), "assignments")
        session = self._sessions.get(ident.node_id)
        if session is None or session.session_id != request.session_id:
            await context.abort(grpc.StatusCode.NOT_FOUND,
                                f"assignments for node {ident.node_id}: session {request.session_id} is not current")
        # The fanout says, per commit, whether this node's assignments or network state may have
        # changed (fanout.py); only that is recomputed, and only the difference is sent.
        wake = self._fanout.subscribe(ident.node_id)
        sent: assignments.Sent = {}
        sent_network_state = b""
        first = True
        open_secret = self._secret_opener()
        try:
            while self._sessions.get(ident.node_id) is session and self._leadership.is_leader():
                assignments_changed, state_changed = wake.take()
                if not (assignments_changed or state_changed):
                    await wake.wait(timeout=1.0)
                    continue
                view = self._store.view()
                delta: list = []
                if assignments_changed:
                    current = assignments.assigned_objects(view, ident.node_id, open_secret)
                    delta, sent = assignments.diff({} if first else sent, current)
                network_state = b""
                if state_changed:
                    state = netstate.network_state_for(view, ident.node_id, self._shared_network_context(view))
                    wake.networks = netstate.carried_network_ids(state)
                    network_state = netstate.encode(state)
                    if network_state == sent_network_state:
                        network_state = b""  # unchanged: the field stays empty
                if first or delta or network_state:
                    kind = cluster_pb2.AssignmentsMessage.COMPLETE if first else cluster_pb2.AssignmentsMessage.INCREMENTAL
                    if first:
                        delta = [c for c in delta if c.action == cluster_pb2.AssignmentChange.UPDATE]
                    yield cluster_pb2.AssignmentsMessage(type=kind, changes=delta, network_state=network_state)
                    sent_network_state = network_state or sent_network_state
                    first = False
        finally:
            self._fanout.unsubscribe(wake)

    async def UpdateTaskStatus(self, request, context):
        ident = await self._authorize(context, "swarm-worker", "swarm-manager")
        if not self._leadership.is_leader():
            await grpcutil.abort_not_leader(context, self._leadership.leader_addr(), "task status")
        session = self._sessions.get(ident.node_id)
        if session is None or session.session_id != request.session_id:
            await context.abort(grpc.StatusCode.NOT_FOUND,
                                f"task status from node {ident.node_id}: session {request.session_id} is not current")

        updates = list(request.updates)
        if updates:
            written = self._loop_future()
            self._status_queue.append((ident.node_id, updates, written))
            if self._status_writer is None or self._status_writer.done():
                self._status_writer = asyncio.get_running_loop().create_task(
                    self._write_statuses(), name="dispatcher status writer")
            try:
                # shielded: a caller that goes away does not cancel what others wait for
                await asyncio.shield(written)
            except StoreError as err:
                await context.abort(grpc.StatusCode.UNAVAILABLE,
                                    f"task status from node {ident.node_id}: {len(updates)} update(s) "
                                    f"not all written, send them again: {err}")
        return cluster_pb2.UpdateTaskStatusResponse()

    @staticmethod
    def _loop_future() -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        future.add_done_callback(lambda f: f.cancelled() or f.exception())  # its caller may be gone
        return future

    async def _write_statuses(self) -> None:
        """Write the queued status reports of every node together, until none is queued: each
        request is answered once its statuses are committed, and the requests that came while
        one batch was being written make the next one (group commit). One store change per
        request was one Raft round, one apply and one wake-up of every watcher per request; 300
        nodes reporting every 50 ms made the leader's Raft log the bottleneck (bench/scale.py).

        A batch takes whole requests up to STATUS_BATCH updates and is written in changes of at
        most MAX_ACTIONS_PER_CHANGE, proposed together (statuses of different tasks do not
        conflict; each change is retried on a conflict); one after the other, a batch of
        thousands took longer than the agents' deadline and every node's request failed at
        once. A failure fails every request of the batch (what was committed is skipped when
        the workers send it again: an equal status is not written twice)."""
        while self._status_queue:
            batch: list = []
            size = 0
            while self._status_queue and (not batch or size + len(self._status_queue[0][1]) <= STATUS_BATCH):
                entry = self._status_queue.popleft()
                batch.append(entry)
                size += len(entry[1])
            updates = [(node_id, update) for node_id, request, _ in batch for update in request]
            chunks = [updates[start:start + MAX_ACTIONS_PER_CHANGE]
                      for start in range(0, len(updates), MAX_ACTIONS_PER_CHANGE)]
            results = await asyncio.gather(*(
                self._store.update_retry(lambda tx, chunk=chunk: self._apply_statuses(tx, chunk), allow_split=True)
                for chunk in chunks), return_exceptions=True)
            errors = [r for r in results if isinstance(r, BaseException)]
            if errors:
                err = errors[0]
                nodes = sorted({node_id for node_id, _, _ in batch})
                log.warning("task status of %d node(s) (%s): %d update(s) not all written: %s",
                            len(nodes), ", ".join(nodes[:5]) + (", ..." if len(nodes) > 5 else ""),
                            len(updates), err)
                failure = err if isinstance(err, StoreError) else StoreError(f"{type(err).__name__}: {err}")
            for _, _, written in batch:
                if not written.done():
                    if errors:
                        written.set_exception(failure)
                    else:
                        written.set_result(None)

    @staticmethod
    def _apply_statuses(tx, updates) -> None:
        """Write each reported status (node id, update) that moves its task forward; re-running it
        after a partial commit skips what is already written (the status is then equal)."""
        for node_id, update in updates:
            task = tx.get(Kind.TASK, update.task_id)
            if task is None:
                continue
            reason = assignments.status_update_allowed(task, node_id, update.status)
            if reason is not None:
                log.debug("ignored status update: %s", reason)
                continue
            if task.status == update.status:
                continue
            new = objects_pb2.Task()
            new.CopyFrom(task)
            new.status.CopyFrom(update.status)
            tx.update(new)

    # -- leader loop -------------------------------------------------------------
    async def run(self) -> None:
        """Mark nodes down when they miss heartbeats (liveness.py). Runs while this manager leads."""
        self._leader_since = self._clock()
        self._last_seen.clear()
        self._promised_grace.clear()
        log.info("dispatcher started as leader")
        loop = asyncio.get_running_loop()
        try:
            while True:
                period = heartbeat_period(self._store.view().cluster())
                interval = min(period / 2, 0.5)
                due = loop.time() + interval
                await asyncio.sleep(interval)
                lag = loop.time() - due
                if lag > STALL_TOLERANCE:
                    self._excuse_stall(lag)
                    continue        # heartbeats queued during the stall are handled before the next look
                await self._expire(period)
        finally:
            for session in self._sessions.values():
                session.changed.set()
            self._sessions.clear()

    def _excuse_stall(self, lag: float) -> None:
        """This manager's loop ran nothing for ``lag`` seconds (a long pass, a starved process): no
        heartbeat could be handled meanwhile, so that time does not count against any node."""
        log.log(logging.WARNING if lag >= 1.0 else logging.DEBUG,
                "dispatcher: this manager's event loop stalled %.1fs; heartbeat deadlines moved by as much", lag)
        stats.COUNTERS["dispatcher_stalls"] += 1
        for node_id in self._last_seen:
            self._last_seen[node_id] += lag
        self._leader_since += lag

    async def _expire(self, period: float) -> None:
        view = self._store.view()
        now = self._clock()
        self._lag.window = GRACE_MULTIPLIER * period
        expired = expired_nodes(view.nodes(), self._last_seen, self._leader_since,
                                GRACE_MULTIPLIER * period, now, self._promised_grace, self._lag.current(now))
        for item in expired:
            log.warning("node down: %s", item.reason, extra={"node": item.node_id})
            stats.COUNTERS["heartbeat_misses"] += 1
            session = self._sessions.pop(item.node_id, None)
            if session is not None:
                session.changed.set()

            def mark_down(tx, node_id=item.node_id, reason=item.reason):
                node = tx.get(Kind.NODE, node_id)
                if node is None or node.status.state != objects_pb2.NodeStatus.READY:
                    return
                new = objects_pb2.Node()
                new.CopyFrom(node)
                new.status.state = objects_pb2.NodeStatus.DOWN
                new.status.message = reason
                tx.update(new)

            try:
                await self._store.update_retry(mark_down)
            except Exception as err:  # no quorum: try again next round
                log.warning("could not mark node %s down: %s", item.node_id, err)

    # -- helpers -----------------------------------------------------------------
    def _wake_sessions(self, node_id: str | None) -> None:
        """The session fanout: ``node_id``'s session message may have changed (None: everyone's)."""
        if node_id is None:
            for session in self._sessions.values():
                session.changed.set()
        else:
            session = self._sessions.get(node_id)
            if session is not None:
                session.changed.set()

    def _shared_network_context(self, view) -> netstate.Shared:
        """What every node's network state is computed from, once per store version."""
        shared = self._network_context
        if shared is None or shared.version != view.version:
            shared = self._network_context = netstate.Shared(view)
        return shared

    def _secret_opener(self) -> assignments.OpenSecret:
        """For one node's stream: a sealed secret → a copy with its data opened, to send; None
        (logged) if it cannot be opened. Each version is opened once per stream, not on every
        change the stream looks at."""
        opened: dict[tuple[str, int], objects_pb2.Secret | None] = {}

        def open_secret(secret: objects_pb2.Secret) -> objects_pb2.Secret | None:
            if self._secrets is None:
                return secret
            key = (secret.id, secret.meta.version)
            if key not in opened:
                if len(opened) > 1024:      # versions no longer current: start afresh
                    opened.clear()
                out = objects_pb2.Secret()
                out.CopyFrom(secret)
                try:
                    out.spec.data = self._secrets.open(secret.id, secret.spec.data)
                except SecretBoxError as err:
                    log.error("secret %s (%s) not sent: %s", secret.spec.annotations.name, secret.id, err)
                    out = None
                opened[key] = out
            return opened[key]
        return open_secret

    async def _mark_ready(self, node_id: str, description, addr: str, message: str = "") -> None:
        """READY, with the node's own status message (what keeps it from running tasks, or "")."""
        def fn(tx):
            node = tx.get(Kind.NODE, node_id)
            if node is None:
                return
            new = objects_pb2.Node()
            new.CopyFrom(node)
            new.status.state = objects_pb2.NodeStatus.READY
            new.status.message = message
            if addr:
                new.status.addr = addr
            if description is not None and description.hostname:
                new.description.CopyFrom(description)
            if new != node:
                tx.update(new)

        await self._store.update_retry(fn)

    def _managers_of(self, view) -> list[cluster_pb2.WeightedPeer]:
        """The managers' addresses, derived once per nodes table and shared by every session: each
        session stream wakes on every node change and every second, and reading every node for
        each of them cost O(nodes) per session, O(nodes^2) per node change."""
        nodes = view.table(Kind.NODE)       # the same map for as long as no node changes
        cached = self._managers_cache
        if cached is None or cached[0] is not nodes:
            managers = [cluster_pb2.WeightedPeer(node_id=n.id, addr=n.manager_status.addr)
                        for n in nodes.values() if n.role == objects_pb2.MANAGER and n.manager_status.addr]
            managers.sort(key=lambda p: p.addr)
            cached = self._managers_cache = (nodes, managers)
        return cached[1]

    def _session_message(self, session: _Session) -> cluster_pb2.SessionMessage:
        view = self._store.view()
        node = view.get(Kind.NODE, session.node_id)
        managers = self._managers_of(view)
        cluster = view.cluster()
        return cluster_pb2.SessionMessage(
            session_id=session.session_id, managers=managers,
            role=node.role if node is not None else objects_pb2.WORKER,
            heartbeat_period=heartbeat_period(cluster),
            # the roots to trust, and whether to renew now: how a CA rotation reaches the node
            root_ca=rotation.trusted_roots(cluster) if cluster is not None else b"",
            renew_certificate=cluster is not None and node is not None and rotation.needs_renewal(cluster, node))
