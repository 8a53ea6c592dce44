"""Reconciles the node's assignment set against shoal-runtimed.

For every assigned task a TaskManager drives the container; tasks that disappear from
the assignments have their containers removed. Secrets and configs sent with the tasks are
kept in memory only (``self.secrets``/``self.configs``, by ID) and given to the runtime when a
task's container is created; they are dropped when the dispatcher removes them. After a restart of shoald, the first
(complete) assignment set is matched against the runtime's containers by their task
label, so running containers are adopted, not restarted; containers of tasks that are
no longer assigned are removed. Network attachment tasks (one-off containers on attachable
networks, created by the CLI itself) get no task manager: they are only reported RUNNING.
"""

from __future__ import annotations

import asyncio
import logging
import time

from agent_runtime.api import ContainerSpec, NotFound, ShoalRuntimeError
from proto import cluster_pb2, objects_pb2
from worker.executor import TASK_LABEL, container_spec
from worker.network import NetworkAgent
from worker.reporter import Reporter
from worker.task_manager import TaskManager

log = logging.getLogger(__name__)

NETWORK_WAIT_TIMEOUT = 10.0  # how long a new container waits for a sync naming its networks


class Worker:
    """Use from the daemon's loop; ``close()`` cancels task managers (containers keep running)."""

    def __init__(self, runtime, reporter: Reporter, insecure_registries: tuple[str, ...] = ()):
        self._runtime = runtime
        self._reporter = reporter
        self._insecure = insecure_registries
        self._managers: dict[str, tuple[TaskManager, asyncio.Task]] = {}
        self._attachments: dict[str, int] = {}  # attachment task id -> the state reported for it
        self.network = NetworkAgent(runtime)
        self.secrets: dict[str, objects_pb2.Secret] = {}
        self.configs: dict[str, objects_pb2.Config] = {}
        self._lock = asyncio.Lock()

    def set_insecure_registries(self, registries: tuple[str, ...]) -> None:
        """Registries the task managers started from now on may pull over plain HTTP."""
        self._insecure = tuple(registries)

    async def apply(self, message: cluster_pb2.AssignmentsMessage) -> None:
        async with self._lock:
            tasks: dict[str, objects_pb2.Task] = {}
            removed: set[str] = set()
            if message.type == cluster_pb2.AssignmentsMessage.COMPLETE:
                self.secrets, self.configs = {}, {}  # the full set lists every one still wanted
            for change in message.changes:
                item = change.assignment.WhichOneof("item")
                obj = getattr(change.assignment, item)
                if change.action == cluster_pb2.AssignmentChange.REMOVE:
                    if item == "task":
                        removed.add(obj.id)
                    else:
                        getattr(self, item + "s").pop(obj.id, None)
                elif item == "task":
                    tasks[obj.id] = obj
                else:
                    getattr(self, item + "s")[obj.id] = obj
            complete = message.type == cluster_pb2.AssignmentsMessage.COMPLETE
            # The data plane first: new tasks' networks exist before their containers, and a task
            # being stopped has left the service backends before its container stops.
            await self.network.apply(message.network_state, force=complete)
            if complete:
                removed |= (set(self._managers) | set(self._attachments)) - set(tasks)
                await self._adopt(tasks)
            for task_id in removed:
                await self._remove(task_id)
            for task in tasks.values():
                self._assign(task)

    def _assign(self, task: objects_pb2.Task, container_id: str | None = None) -> None:
        if task.spec.HasField("attachment"):
            self._attach(task)
            return
        entry = self._managers.get(task.id)
        if entry is not None:
            entry[0].update(task)
            return
        manager = TaskManager(task, self._runtime, self._reporter.report, self._insecure, container_id,
                              networks_ready=self._networks_ready, make_spec=self._container_spec)
        self._managers[task.id] = (manager, asyncio.create_task(manager.run(), name=f"task-{task.id}"))

    def _attach(self, task: objects_pb2.Task) -> None:
        """A one-off container's network attachment: the container is the CLI's (created through
        the runtime with this task's address), so there is nothing to run; the task is reported
        RUNNING once (SHUTDOWN once its desired state moves past RUNNING), which keeps the
        network on this node and the address in every node's data plane until it is detached."""
        wanted = objects_pb2.RUNNING if task.desired_state <= objects_pb2.RUNNING else objects_pb2.SHUTDOWN
        if task.status.state >= wanted or self._attachments.get(task.id) == wanted:
            return
        self._attachments[task.id] = wanted
        message = "attached" if wanted == objects_pb2.RUNNING else "detached"
        self._reporter.report(task.id, objects_pb2.TaskStatus(
            state=wanted, message=message, timestamp=time.time(),
            container_id=task.spec.attachment.container_id))

    def _container_spec(self, task: objects_pb2.Task) -> ContainerSpec:
        """The task's container spec with the data of the secrets and configs this node holds."""
        return container_spec(task, self.secrets, self.configs)

    async def _networks_ready(self, network_ids: list[str]) -> bool:
        ready = await self.network.wait_for_networks(network_ids, NETWORK_WAIT_TIMEOUT)
        if not ready:
            log.warning("no network sync names networks %s after %.0f s; creating the container anyway",
                        ", ".join(sorted(set(network_ids) - self.network.synced_networks)), NETWORK_WAIT_TIMEOUT)
        return ready

    async def _adopt(self, tasks: dict[str, objects_pb2.Task]) -> None:
        """Match existing containers to tasks; remove the ones no task claims."""
        try:
            containers = await self._runtime.list(all=True)
        except ShoalRuntimeError as err:
            log.warning("cannot list containers to adopt: %s", err)
            return
        for info in containers:
            task_id = info.config.labels.get(TASK_LABEL)
            if not task_id:
                continue
            if task_id in tasks and task_id not in self._managers:
                log.info("adopting container %s of task %s", info.id[:12], task_id)
                self._assign(tasks[task_id], info.id)
            elif task_id not in tasks:
                log.info("removing container %s of task %s (no longer assigned)", info.id[:12], task_id)
                try:
                    await self._runtime.remove(info.id, force=True)
                except NotFound:
                    pass

    async def _remove(self, task_id: str) -> None:
        self._attachments.pop(task_id, None)
        entry = self._managers.pop(task_id, None)
        if entry is None:
            return
        manager, runner = entry
        runner.cancel()
        try:
            await runner
        except (asyncio.CancelledError, Exception):
            pass
        if manager.container_id:
            try:
                await self._runtime.remove(manager.container_id, force=True)
            except NotFound:
                pass
            except ShoalRuntimeError as err:
                log.warning("task %s: removing container %s failed: %s", task_id, manager.container_id, err)

    async def close(self) -> None:
        await self.network.close()
        entries = list(self._managers.values())
        self._managers.clear()
        for _, runner in entries:
            runner.cancel()
        for _, runner in entries:
            try:
                await runner
            except (asyncio.CancelledError, Exception):
                pass
