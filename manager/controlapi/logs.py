"""ServiceLogs: fan a log request out to every node that ran a task of the service and
merge what comes back. A node that cannot be reached yields one warning message and the
rest of the logs still arrive, as `docker service logs` does."""

from __future__ import annotations

import logging
from typing import AsyncIterator, Callable

import grpc

from common.aiomerge import merge
from manager.controlapi.api import ControlError
from manager.state import Kind
from proto import cluster_pb2, cluster_pb2_grpc, control_pb2, objects_pb2
from proto.ports import mtls_addr

log = logging.getLogger(__name__)


def _task_name(service_name: str, task) -> str:
    return f"{service_name}.{task.slot or task.node_id}.{task.id}"


class LogBroker:
    """``dial(addr, server_role)`` returns a grpc.aio channel to a node's mutual-TLS port
    with this manager's certificate, checking the node's certificate role."""

    def __init__(self, store, dial: Callable[[str, str], grpc.aio.Channel]):
        self._store = store
        self._dial = dial

    def _resolve(self, ref: str):
        view = self._store.view()
        services = view.services()
        for match in (lambda s: s.id == ref, lambda s: s.spec.annotations.name == ref,
                      lambda s: s.id.startswith(ref)):
            found = [s for s in services if match(s)]
            if len(found) == 1:
                return found[0], view.tasks(service_id=found[0].id)
        task = view.get(Kind.TASK, ref)
        if task is None and ref:
            # the 12-character IDs `service ps` prints, as docker takes them
            matches = [t for t in view.tasks() if t.id.startswith(ref)]
            if len(matches) > 1:
                raise ControlError("invalid", f"task ID {ref} is ambiguous ({len(matches)} tasks match)")
            task = matches[0] if matches else None
        if task is not None:
            service = view.get(Kind.SERVICE, task.service_id)
            return service, [task]
        raise ControlError("not_found", f"no such service or task: {ref}")

    async def service_logs(self, request: control_pb2.ServiceLogsRequest
                           ) -> AsyncIterator[control_pb2.ServiceLogsMessage]:
        service, tasks = self._resolve(request.service_id)
        name = service.spec.annotations.name if service is not None else ""
        view = self._store.view()
        by_node: dict[str, list] = {}
        for task in tasks:
            if task.node_id:
                by_node.setdefault(task.node_id, []).append(task)

        async def from_node(node_id: str, node_tasks: list) -> AsyncIterator[control_pb2.ServiceLogsMessage]:
            node = view.get(Kind.NODE, node_id)
            hostname = node.description.hostname if node else node_id
            names = {t.id: _task_name(name, t) for t in node_tasks}
            addr = node.description.grpc_addr if node else ""
            if not addr:
                yield control_pb2.ServiceLogsMessage(
                    node_id=node_id, node_name=hostname, warning=f"node {hostname} has no known address")
                return
            try:
                role = "swarm-manager" if node.role == objects_pb2.MANAGER else "swarm-worker"
                channel = self._dial(mtls_addr(addr), role)
                async with channel:
                    stream = cluster_pb2_grpc.NodeLogsStub(channel).TaskLogs(cluster_pb2.TaskLogsRequest(
                        task_ids=list(names), follow=request.follow, tail=request.tail, since=request.since),
                        timeout=None if request.follow else 30)
                    async for line in stream:
                        yield control_pb2.ServiceLogsMessage(
                            task_id=line.task_id, task_name=names.get(line.task_id, line.task_id), node_id=node_id,
                            node_name=hostname, stream=line.stream, time=line.time, data=line.data)
            except grpc.aio.AioRpcError as err:
                yield control_pb2.ServiceLogsMessage(
                    node_id=node_id, node_name=hostname,
                    warning=f"some logs are missing: node {hostname} is unreachable ({err.code().name})")

        async for message in merge([from_node(n, ts) for n, ts in by_node.items()], buffer=4096):
            yield message
