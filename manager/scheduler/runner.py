"""The scheduler component (leader only): places PENDING tasks on nodes with the pure
``schedule()`` and writes the decisions in batched store changes. Passes are coalesced:
many new tasks in a burst are placed in one pass. Pending tasks are retried whenever
tasks or nodes change (a node joins, resources free up)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

from manager.changes import ChangeSignal
from manager.scheduler.schedule import planned_task_changes, schedule
from manager.state import Kind, StoreError, VersionConflict
from proto import objects_pb2

log = logging.getLogger(__name__)

BATCH_WINDOW = 0.01


class Scheduler:
    def __init__(self, store, clock: Callable[[], float] = time.time):
        self._store = store
        self._clock = clock

    async def run(self) -> None:
        changes = ChangeSignal(self._store, [Kind.TASK, Kind.NODE])
        try:
            while True:
                again = False
                try:
                    again = await self._pass()
                except StoreError as err:
                    log.info("scheduler pass failed, retrying: %s", err)
                    again = True
                if not again:
                    await changes.wait(timeout=5.0)
                await asyncio.sleep(BATCH_WINDOW)
        finally:
            changes.close()

    async def _pass(self) -> bool:
        """One scheduling round; True if it should run again at once (a write conflicted)."""
        view = self._store.view()
        tasks = view.tasks()
        pending = [t for t in tasks if t.status.state == objects_pb2.PENDING]
        if not pending:
            return False
        now = self._clock()
        plan = schedule(view.nodes(), tasks, pending, now)
        changes = planned_task_changes(plan, {t.id: t for t in pending}, now)
        if not changes:
            return False
        for task_id, node_id in plan.assignments:
            log.debug("task %s assigned to node %s", task_id, node_id)

        def fn(tx):
            for task in changes:
                tx.update(task)
        try:
            await self._store.update(fn, allow_split=True)
        except VersionConflict as err:
            log.debug("scheduler write conflicted (%s); rescheduling", err)
            return True
        return False
