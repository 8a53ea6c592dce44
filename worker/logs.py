"""NodeLogs: serves the logs of this node's task containers to managers.

Every node serves it on its mutual-TLS port; only callers with a manager certificate
are answered. Containers are found by their task label, so logs of a task whose
container is gone come back empty rather than failing the whole request.
"""

from __future__ import annotations

import logging
from typing import AsyncIterator

from agent_runtime.api import NotFound, ShoalRuntimeError
from common.aiomerge import merge
from proto import cluster_pb2, cluster_pb2_grpc
from worker.executor import TASK_LABEL

log = logging.getLogger(__name__)


class NodeLogsServicer(cluster_pb2_grpc.NodeLogsServicer):
    def __init__(self, runtime, authorize):
        self._runtime = runtime
        self._authorize = authorize

    async def TaskLogs(self, request, context):
        await self._authorize(context, "swarm-manager")
        wanted = set(request.task_ids)
        containers = [c for c in await self._runtime.list(all=True) if c.config.labels.get(TASK_LABEL) in wanted]
        tail = request.tail if request.tail >= 0 else None
        since = request.since or None

        async def lines(container) -> AsyncIterator[cluster_pb2.LogLine]:
            task_id = container.config.labels[TASK_LABEL]
            try:
                async for record in self._runtime.logs(container.id, follow=request.follow, tail=tail, since=since):
                    yield cluster_pb2.LogLine(task_id=task_id, stream=record.stream, time=record.time,
                                              data=record.log.encode())
            except (NotFound, ShoalRuntimeError) as err:
                log.info("logs of task %s: %s", task_id, err)

        async for line in merge([lines(c) for c in containers], buffer=1024):
            yield line
