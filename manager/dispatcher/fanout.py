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


class Fanout:
    """Owns the one watch; ``subscribe`` / ``unsubscribe`` from the streams (same loop)."""

    def __init__(self, store) -> None:
        self._store = store
        self._subscribers: dict[str, set[Subscriber]] = {}
        self._runner: asyncio.Task | None = None
        self._watch = None
        self.commits = 0            # commits looked at (for tests and metrics)

    def subscribe(self, node_id: str) -> Subscriber:
        sub = Subscriber(node_id)
        self._subscribers.setdefault(node_id, set()).add(sub)
        if self._runner is None or self._runner.done():
            # The watch starts now, before the new stream reads its first view: no commit after
            # that view can be missed.
            self._watch = self._store.watch(kinds=WATCHED, commits=True)
            self._runner = asyncio.get_running_loop().create_task(self._run(), name="dispatcher fanout")
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        subs = self._subscribers.get(sub.node_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subscribers[sub.node_id]
        if not self._subscribers and self._runner is not None:
            self._runner.cancel()
            self._runner = None
            self._watch.close()

    def _all(self) -> Iterable[Subscriber]:
        for subs in list(self._subscribers.values()):
            yield from subs

    async def _run(self) -> None:
        while True:
            try:
                await self._consume(self._watch)
            except WatchClosed as closed:
                log.warning("dispatcher watch closed (%s); every node's state is looked at again", closed)
                self._watch.close()
                self._watch = self._store.watch(kinds=WATCHED, commits=True)
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
