"""Network attachments of one-off containers (`shoal run --network NET`) on this node: shoald
releases a cluster address when its container goes, and after a restart releases the addresses
whose container never came or went while shoald was down.

An attachment is a task on the manager (``spec.attachment``) holding an address of the network.
The container carries its attachment's ID in ``ATTACHMENT_LABEL``. Released here:
- when a container with that label leaves the runtime (removed by anyone: ``container rm``,
  ``run --rm``, runtimed's AutoRemove for ``run -d --rm``, ``container prune``);
- once per start of shoald, when both the full assignment set and the runtime's container list
  are known: an attachment assigned to this node that no container carries and that this
  process did not attach itself (a CLI or shoald that died between allocating the address and
  creating the container) is released.
Releases are retried with backoff until the manager confirms (a gone attachment counts).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

from common.backoff import Backoff
from worker.events import ContainerEvents, Observed

log = logging.getLogger(__name__)

RETRY = (0.5, 15.0)
PERMANENT = ("invalid", "precondition")   # ControlError codes a retry cannot change (e.g. not in a swarm)


class Attachments:
    """Use from the daemon's loop. ``detach(attachment_id)`` asks a manager to release one
    (None: nothing is released, e.g. a worker without cluster access in tests)."""

    def __init__(self, events: ContainerEvents, detach: Callable[[str], Awaitable[None]] | None,
                 retry: tuple[float, float] = RETRY) -> None:
        self._events = events
        self._detach = detach
        self._retry = retry
        self.assigned: set[str] = set()      # attachment task IDs the managers assign to this node
        self.ours: set[str] = set()          # attached by this process: their containers may be coming
        self.reconciled = False
        self._releases: dict[str, asyncio.Task] = {}
        events.on_removed(self._removed)

    def _removed(self, obs: Observed) -> None:
        for attachment_id in obs.attachment_ids():
            self.release(attachment_id, f"its container {obs.container_id[:12]} was removed")

    def reconcile(self, complete: bool) -> None:
        """Once per process: release assigned attachments without a container (see the module)."""
        if self.reconciled or not complete or not self._events.connected.is_set() or self._detach is None:
            return
        self.reconciled = True
        for attachment_id in sorted(self.assigned - self.ours):
            if not self._events.attached(attachment_id):
                self.release(attachment_id, "no container carries it (leaked before this start of shoald)")

    def release(self, attachment_id: str, why: str) -> None:
        if self._detach is None or attachment_id in self._releases:
            return
        log.info("releasing network attachment %s: %s", attachment_id, why)
        task = asyncio.create_task(self._release(attachment_id), name=f"detach-{attachment_id[:12]}")
        self._releases[attachment_id] = task
        task.add_done_callback(lambda _: self._releases.pop(attachment_id, None))

    async def _release(self, attachment_id: str) -> None:
        assert self._detach is not None
        backoff = Backoff(*self._retry)
        while True:
            try:
                await self._detach(attachment_id)
                self.assigned.discard(attachment_id)
                self.ours.discard(attachment_id)
                return
            except asyncio.CancelledError:
                raise
            except Exception as err:  # noqa: BLE001 - a manager unreachable: retried, never forgotten
                if getattr(err, "code", "") in PERMANENT:
                    log.warning("network attachment %s not released: %s", attachment_id, err)
                    return
                delay = backoff.ceiling()
                log.warning("releasing network attachment %s failed: %s; retrying in %.1f s",
                            attachment_id, err, delay)
                await asyncio.sleep(delay)
                backoff.next()

    async def close(self) -> None:
        for task in list(self._releases.values()):
            task.cancel()
        await asyncio.gather(*self._releases.values(), return_exceptions=True)
