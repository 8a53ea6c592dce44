"""The orchestrator component (leader only): reconciles every service with the pure
``reconcile()`` whenever services, tasks, nodes or the cluster change, applies each plan as
one store change (a compare-and-set: a conflict means reconcile again from fresh state), and
wakes up for the timers plans ask for (restart delays, update delays and monitors)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from typing import Callable

from manager.changes import ChangeSignal
from manager.ids import new_id
from manager.orchestrator.reconcile import history_retention, reconcile, reconcile_removed
from manager.state import Kind, StoreError, VersionConflict

log = logging.getLogger(__name__)

BATCH_WINDOW = 0.01
MAX_SLEEP = 2.0


class Orchestrator:
    def __init__(self, store, clock: Callable[[], float] = time.time, ids: Callable[[], str] = new_id):
        self._store = store
        self._clock = clock
        self._ids = ids

    async def run(self) -> None:
        changes = ChangeSignal(self._store, [Kind.SERVICE, Kind.TASK, Kind.NODE, Kind.CLUSTER])
        try:
            while True:
                try:
                    wake_at, again = await self._pass()
                except StoreError as err:
                    log.info("orchestrator pass failed, retrying: %s", err)
                    wake_at, again = None, True
                if not again:
                    timeout = MAX_SLEEP if wake_at is None else max(0.0, min(MAX_SLEEP, wake_at - self._clock()))
                    await changes.wait(timeout=timeout)
                await asyncio.sleep(BATCH_WINDOW)
        finally:
            changes.close()

    async def _pass(self) -> tuple[float | None, bool]:
        view = self._store.view()
        now = self._clock()
        nodes = view.nodes()
        by_service = defaultdict(list)
        for task in view.tasks():
            by_service[task.service_id].append(task)
        retention = history_retention(view.cluster())
        plans = []
        services = {s.id: s for s in view.services()}
        for service in services.values():
            plans.append(reconcile(service, by_service.get(service.id, []), nodes, now, ids=self._ids,
                                   retention=retention))
        for service_id, tasks in by_service.items():
            if service_id not in services:
                plans.append(reconcile_removed(service_id, tasks, nodes, now))
        wake_at = min((p.wake_at for p in plans if p.wake_at is not None), default=None)
        again = False
        for plan in plans:
            if not plan:
                continue
            for decision in plan.decisions:
                log.info("service %s: %s", plan.service_id, decision)

            def fn(tx, plan=plan):
                for task in plan.create:
                    tx.create(task)
                for task in plan.update:
                    tx.update(task)
                for task_id in plan.delete:
                    if tx.get(Kind.TASK, task_id) is not None:
                        tx.delete(Kind.TASK, task_id)
                if plan.service is not None:
                    tx.update(plan.service)
            try:
                await self._store.update(fn, allow_split=True)
            except VersionConflict as err:
                log.debug("service %s: plan conflicted (%s); reconciling again", plan.service_id, err)
                again = True
        return wake_at, again
