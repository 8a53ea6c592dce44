"""Batches task status reports to the dispatcher.

Only the newest status of each task is kept; a batch is sent at most every
``interval`` seconds, and a failed send keeps the statuses for the next session.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

from proto import cluster_pb2, objects_pb2

log = logging.getLogger(__name__)

Send = Callable[[list[cluster_pb2.TaskStatusUpdate]], Awaitable[None]]


class Reporter:
    def __init__(self, interval: float = 0.05):
        self._pending: dict[str, objects_pb2.TaskStatus] = {}
        self._interval = interval
        self._wake = asyncio.Event()

    def report(self, task_id: str, status: objects_pb2.TaskStatus) -> None:
        """Record a status; called from task managers on the daemon's loop."""
        self._pending[task_id] = status
        self._wake.set()

    async def run(self, send: Send) -> None:
        """Send batches through ``send`` until cancelled or a send fails (then raise)."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, {}
            updates = [cluster_pb2.TaskStatusUpdate(task_id=task_id, status=status)
                       for task_id, status in batch.items()]
            try:
                await send(updates)
            except BaseException:
                for task_id, status in batch.items():
                    self._pending.setdefault(task_id, status)
                self._wake.set()
                raise
            await asyncio.sleep(self._interval)
