"""One store watch for every node's Assignments stream: per commit, whose assignments or network
state may have changed.

Before, each stream held its own watch of every task, secret, config, network, service, node and
cluster change and, on each commit, recomputed its node's full assignment set and network state:
O(nodes × tasks) of work on the leader's loop per commit, and every event copied into one queue
per node. Now the fanout reads each commit once and wakes only the streams it concerns:

* a task change: the task's node (old and new) for its assignments; when the task has network
  attachments (before or after), also that node's network state, and the network state of every
  node that carries one of the networks it has addresses on (its peers and service backends list
  the task). A task without networks is in no network state: each status report of such a task
  rebuilt its node's whole document (every node's address in it) for nothing;
* a node change: that node's network state, and that of every node carrying a network the node
  has a host gateway address on (peers list it); its own underlay address is in its state;
* a secret or config change: the assignments of every node (secrets and configs change rarely;
  a node gets one only while a task of it uses it);
* a network, service or cluster change: the network state of every node (rare changes: VIPs,
  published ports, aliases, the IPsec keyring).

A stream then recomputes only what it was told may have changed, from the current view (its node's
tasks come from the view's per-node index, so that costs what the node holds). A watch that falls
behind is replaced and every stream recomputes everything once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from manager.state import ChangeCommitted, Kind, ObjectUpdated, WatchClosed
from proto import objects_pb2

log = logging.getLogger(__name__)

WATCHED = (Kind.TASK, Kind.SECRET, Kind.CONFIG, Kind.NETWORK, Kind.SERVICE, Kind.NODE, Kind.CLUSTER)


class Subscriber:
    """One Assignments stream's wake-up: ``assignments`` / ``network_state`` say what to recompute.

    The stream sets ``networks`` to the network ids its node's last network state carried.
    """

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self.assignments = True
        self.network_state = True
        self.networks: frozenset[str] = frozenset()
        self._event = asyncio.Event()
        self._event.set()

    def take(self) -> tuple[bool, bool]:
        """What changed since the last call (and clear it): (assignments, network state)."""
        out = (self.assignments, self.network_state)
        self.assignments = self.network_state = False
        self._event.clear()
        return out

    def wake(self, assignments: bool, network_state: bool) -> None:
        if assignments or network_state:
            self.assignments |= assignments
            self.network_state |= network_state
            self._event.set()

    async def wait(self, timeout: float) -> bool:
        """Until woken (True) or ``timeout`` seconds (False)."""
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True


def _networks(task) -> set[str]:
    return {a.network_id for a in task.networks if a.addresses}


class _CommitWatch:
    """One store watch of ``KINDS`` with commit markers, run while anyone needs it (``_start`` /
    ``_stop``, same loop), watched again when it falls behind; subclasses say what a commit
    wakes (``_consume``) and what a lost watch wakes (``_rewatched``)."""

    KINDS: tuple[Kind, ...] = ()
    NAME = ""                   # the runner task's name
    REWATCH_LOG = ""            # logged (with the reason) when the watch is lost

    def __init__(self, store) -> None:
        self._store = store
        self._runner: asyncio.Task | None = None
        self._watch = None
        self.commits = 0            # commits looked at (for tests and metrics)

    def _start(self) -> None:
        """Before a new stream reads its first view: no commit after that view can be missed."""
        if self._runner is None or self._runner.done():
            self._watch = self._store.watch(kinds=self.KINDS, commits=True)
            self._runner = asyncio.get_running_loop().create_task(self._run(), name=self.NAME)

    def _stop(self) -> None:
        if self._runner is not None:
            self._runner.cancel()
            self._runner = None
            self._watch.close()

    async def _run(self) -> None:
        while True:
            try:
                await self._consume(self._watch)
            except WatchClosed as closed:
                log.warning(self.REWATCH_LOG, closed)
                self._watch.close()
                self._watch = self._store.watch(kinds=self.KINDS, commits=True)
                self._rewatched()

    async def _consume(self, watch) -> None:
        raise NotImplementedError

    def _rewatched(self) -> None:
        raise NotImplementedError


class Fanout(_CommitWatch):
    """Owns the one watch; ``subscribe`` / ``unsubscribe`` from the streams (same loop)."""

    KINDS = WATCHED
    NAME = "dispatcher fanout"
    REWATCH_LOG = "dispatcher watch closed (%s); every node's state is looked at again"

    def __init__(self, store) -> None:
        super().__init__(store)
        self._subscribers: dict[str, set[Subscriber]] = {}

    def subscribe(self, node_id: str) -> Subscriber:
        sub = Subscriber(node_id)
        self._subscribers.setdefault(node_id, set()).add(sub)
        self._start()
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        subs = self._subscribers.get(sub.node_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subscribers[sub.node_id]
        if not self._subscribers:
            self._stop()

    def _all(self) -> Iterable[Subscriber]:
        for subs in list(self._subscribers.values()):
            yield from subs

    def _rewatched(self) -> None:
        for sub in self._all():
            sub.wake(True, True)

    async def _consume(self, watch) -> None:
        assignments: set[str] = set()
        states: set[str] = set()
        state_networks: set[str] = set()
        everyone_assignments = everyone_states = False
        while True:
            event = await watch.get()
            if event is None:
                return
            if isinstance(event, ChangeCommitted):
                self.commits += 1
                for sub in self._all():
                    sub.wake(everyone_assignments or sub.node_id in assignments,
                             everyone_states or sub.node_id in states
                             or bool(state_networks and not state_networks.isdisjoint(sub.networks)))
                assignments.clear()
                states.clear()
                state_networks.clear()
                everyone_assignments = everyone_states = False
                continue
            kind, obj = event.kind, event.obj
            old = event.old if isinstance(event, ObjectUpdated) else None
            if kind is Kind.TASK:
                networked = bool(obj.networks or (old is not None and old.networks))
                for task in (obj, old):
                    if task is not None and task.node_id:
                        assignments.add(task.node_id)
                        if networked:
                            states.add(task.node_id)
                            state_networks.update(_networks(task))
            elif kind is Kind.NODE:
                states.add(obj.id)
                for node in (obj, old):
                    if node is not None:
                        state_networks.update(a.network_id for a in node.attachments)
            elif kind in (Kind.SECRET, Kind.CONFIG):
                everyone_assignments = True
            else:
                everyone_states = True


class SessionFanout(_CommitWatch):
    """One store watch for every Session stream: per commit, whose session message may have changed.

    A session message holds the managers' addresses, the node's role, the heartbeat period and
    the cluster's roots (dispatcher.py ``_session_message``). Each stream used to hold its own
    watch of every node and cluster change and rebuild its message on each, and every second:
    with 1,000 nodes joining, every join (a node created, then made READY) woke all the others
    for a message that had not changed (a quarter of the leader's samples, bench/scale.py). Now
    a change of a node that is or was a manager, or of the cluster, wakes every stream; a change
    of any other node wakes that node's stream only. A watch that falls behind wakes everyone.
    ``wake`` is given each affected node id (``None``: every node) once per commit.
    """

    KINDS = (Kind.NODE, Kind.CLUSTER)
    NAME = "dispatcher session fanout"
    REWATCH_LOG = "dispatcher session watch closed (%s); every session looks again"

    def __init__(self, store, wake) -> None:
        super().__init__(store)
        self._wake = wake
        self._users = 0

    def acquire(self) -> None:
        """A stream starts (before it reads its first view: no commit after it is missed)."""
        self._users += 1
        self._start()

    def release(self) -> None:
        self._users -= 1
        if self._users <= 0:
            self._users = 0
            self._stop()

    def _rewatched(self) -> None:
        self._wake(None)

    async def _consume(self, watch) -> None:
        nodes: set[str] = set()
        everyone = False
        while True:
            event = await watch.get()
            if event is None:
                return
            if isinstance(event, ChangeCommitted):
                self.commits += 1
                if everyone:
                    self._wake(None)
                else:
                    for node_id in nodes:
                        self._wake(node_id)
                nodes.clear()
                everyone = False
                continue
            if event.kind is Kind.NODE:
                old = event.old if isinstance(event, ObjectUpdated) else None
                if event.obj.role == objects_pb2.MANAGER or (old is not None and old.role == objects_pb2.MANAGER):
                    everyone = True     # the managers' list may have changed
                else:
                    nodes.add(event.obj.id)
            else:
                everyone = True
