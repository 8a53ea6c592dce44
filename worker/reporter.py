"""Batches task status reports to the dispatcher.

Only the newest status of each task is kept; a batch is sent at most every ``interval`` seconds, in
requests of at most ``proto.limits.MAX_STATUS_UPDATES`` updates. What happens to a request the
dispatcher does not take:
- not answered in time (DEADLINE_EXCEEDED: a busy leader): its statuses stay pending and are sent
  again after a pause (``retry``, doubling up to ``MAX_RETRY``) in the same session; whether the
  leader still holds the session is for the heartbeats to tell. Ending the session instead made
  every node of a busy leader reconnect at once (one batch of all their statuses ran late), and
  each reconnection was more work for that leader (bench/scale.py);
- the session or the transport failed (UNAVAILABLE, CANCELLED, NOT_FOUND: the session is not
  current, FAILED_PRECONDITION: not the leader...): its statuses stay pending for the next session
  (a newer status of the same task wins) and ``run`` raises, ending the session;
- the dispatcher refused the request itself (any other code: INVALID_ARGUMENT, RESOURCE_EXHAUSTED,
  UNKNOWN, INTERNAL...): the request is split and its halves sent again; an update refused on its
  own ``MAX_REFUSALS`` times is logged with the refusal and dropped, so no update is retried in a
  loop and none blocks the others.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

import grpc

from proto import cluster_pb2, objects_pb2
from proto.limits import MAX_STATUS_UPDATES

log = logging.getLogger(__name__)

Send = Callable[[list[cluster_pb2.TaskStatusUpdate]], Awaitable[None]]

MAX_REFUSALS = 3
MAX_RETRY = 5.0
TRANSIENT = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED,
                       grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION,
                       grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED,
                       grpc.StatusCode.ABORTED})


def refused(err: BaseException) -> bool:
    """True if the dispatcher answered and refused the request itself (not worth sending again as is)."""
    return isinstance(err, grpc.aio.AioRpcError) and err.code() not in TRANSIENT


class Reporter:
    def __init__(self, interval: float = 0.05, max_batch: int = MAX_STATUS_UPDATES, retry: float = 0.5):
        self._pending: dict[str, objects_pb2.TaskStatus] = {}
        self._interval = interval
        self._max_batch = max_batch
        self._refusals: dict[str, int] = {}  # task id -> times its update was refused on its own
        self._wake = asyncio.Event()
        self._retry = retry
        self.dropped = 0
        self.late = 0           # requests not answered in time, sent again

    @property
    def pending(self) -> int:
        return len(self._pending)

    def report(self, task_id: str, status: objects_pb2.TaskStatus) -> None:
        """Record a status; called from task managers on the daemon's loop."""
        self._pending[task_id] = status
        self._refusals.pop(task_id, None)
        self._wake.set()

    async def run(self, send: Send) -> None:
        """Send batches through ``send`` until cancelled or the session fails (then raise)."""
        pause = self._retry
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, {}
            items = list(batch.items())
            try:
                for start in range(0, len(items), self._max_batch):
                    await self._send(send, items[start:start + self._max_batch])
            except BaseException as err:
                for task_id, status in batch.items():
                    if self._refusals.get(task_id, 0) < MAX_REFUSALS:
                        self._pending.setdefault(task_id, status)
                self._wake.set()
                if isinstance(err, grpc.aio.AioRpcError) and err.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                    self.late += 1
                    log.info("task status not answered in time; %d update(s) sent again in %.1fs",
                             len(self._pending), pause)
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, MAX_RETRY)
                    continue
                raise
            pause = self._retry
            for task_id in batch:
                self._refusals.pop(task_id, None)
            await asyncio.sleep(self._interval)

    async def _send(self, send: Send, items: list[tuple[str, objects_pb2.TaskStatus]]) -> None:
        """Send ``items``; split what the dispatcher refuses; drop an update refused too often."""
        items = [(t, s) for t, s in items if self._refusals.get(t, 0) < MAX_REFUSALS]
        if not items:
            return
        try:
            await send([cluster_pb2.TaskStatusUpdate(task_id=t, status=s) for t, s in items])
            return
        except BaseException as err:
            if not isinstance(err, grpc.aio.AioRpcError) or not refused(err):
                raise
            if len(items) > 1:
                log.info("dispatcher refused %d status updates (%s: %s); sending them in halves",
                         len(items), err.code().name, err.details())
                half = len(items) // 2
                await self._send(send, items[:half])
                await self._send(send, items[half:])
                return
            task_id, status = items[0]
            count = self._refusals[task_id] = self._refusals.get(task_id, 0) + 1
            if count < MAX_REFUSALS:
                await self._send(send, items)
                return
            self.dropped += 1
            log.error("task %s: status %s dropped: the dispatcher refused it %d times (%s: %s)", task_id,
                      objects_pb2.TaskState.Name(status.state), count, err.code().name, err.details())
