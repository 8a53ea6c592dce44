"""Reconciles the node's assignment set against shoal-runtimed.

For every assigned task a TaskManager drives the container; tasks that disappear from
the assignments have their containers removed. Secrets and configs sent with the tasks are
kept in memory only (``self.secrets``/``self.configs``, by ID) and given to the runtime when a
task's container is created; they are dropped when the dispatcher removes them.

What the node's containers do is learnt from one event stream (``self.events``, worker/events.py),
indexed by container and task ID. A task manager finds its task's container there by the task
label, so after a restart of shoald (or of runtimed) running containers are adopted, not
restarted or duplicated. Once a complete assignment set has arrived, a container whose task is not
assigned here is removed, at every resync of the stream and whenever such a container appears;
removals that fail are retried with backoff until they succeed, never forgotten. Network
attachment tasks (one-off containers on attachable networks, created by the CLI itself) get no
task manager: they are only reported RUNNING.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable

from agent_runtime.api import ContainerSpec, NotFound, ShoalRuntimeError, Unavailable
from common.backoff import Backoff
from proto import cluster_pb2, objects_pb2
from worker.attachments import Attachments
from worker.events import REMOVED, ContainerEvents, Observed
from worker.executor import container_spec
from worker.network import NetworkAgent
from worker.reporter import Reporter
from worker.task_manager import DRAIN_DELAY, TaskManager

log = logging.getLogger(__name__)

NETWORK_WAIT_TIMEOUT = 10.0  # how long a new container waits for a sync naming its networks
REMOVE_RETRY = (0.2, 5.0)     # backoff of a failed removal: first, max
PROBE_PERIOD = 5.0            # how often the runtime is asked whether it answers (GET /version)
STARTS_IN_FLIGHT = 16         # creates/starts sent to runtimed at once: a burst of 500 tasks queues
                              # here, not in runtimed, so each call's deadline measures runtimed only


class Worker:
    """Use from the daemon's loop; ``close()`` cancels task managers (containers keep running)."""

    def __init__(self, runtime, reporter: Reporter, insecure_registries: tuple[str, ...] = (),
                 retry: tuple[float, float] = REMOVE_RETRY, hostname: str = "",
                 detach: Callable[[str], Awaitable[None]] | None = None, drain_delay: float = DRAIN_DELAY):
        self._runtime = runtime
        self.hostname = hostname       # {{.Node.Hostname}} in placeholders
        self._reporter = reporter
        self._insecure = insecure_registries
        self._retry = retry
        self._drain_delay = drain_delay  # worker/task_manager.py: DRAIN_DELAY
        self._managers: dict[str, tuple[TaskManager, asyncio.Task]] = {}
        self.events = ContainerEvents(runtime)
        self.events.on_resync(self._sweep)
        self.events.on_unclaimed(self._unclaimed)
        self._events_task: asyncio.Task | None = None
        self._complete = False  # a complete assignment set arrived: unassigned containers can go
        self._removals: dict[str, asyncio.Task] = {}  # container id -> its (retrying) removal
        self._starts = asyncio.Semaphore(STARTS_IN_FLIGHT)
        self._probe_task: asyncio.Task | None = None
        self._probe_error = ""
        self._attachments: dict[str, int] = {}  # attachment task id -> the state reported for it
        self.attachments = Attachments(self.events, detach)   # releases them (worker/attachments.py)
        self.network = NetworkAgent(runtime)
        self.secrets: dict[str, objects_pb2.Secret] = {}
        self.configs: dict[str, objects_pb2.Config] = {}
        self._lock = asyncio.Lock()

    def set_insecure_registries(self, registries: tuple[str, ...]) -> None:
        """Registries the task managers started from now on may pull over plain HTTP."""
        self._insecure = tuple(registries)

    def start(self) -> None:
        """Open the event stream and start probing the runtime (idempotent; ``apply`` calls it)."""
        if self._events_task is None:
            self._events_task = asyncio.create_task(self.events.run(), name="container-events")
        if self._probe_task is None:
            self._probe_task = asyncio.create_task(self._probe(), name="runtime-probe")

    def status_message(self) -> str:
        """What keeps this node from running tasks, for the node's status ("" when nothing does)."""
        error = self._probe_error or self.events.error
        return f"shoal-runtimed is unreachable: {error}" if error else ""

    async def _probe(self) -> None:
        """Ask runtimed every PROBE_PERIOD whether it answers (a stopped runtimed keeps its event
        stream open and silent); the answer goes into ``status_message`` and the log."""
        while True:
            try:
                await self._runtime.version()
                error = ""
            except ShoalRuntimeError as err:
                error = str(err)
            if error and error != self._probe_error:
                log.error("shoal-runtimed is unreachable: %s", error)
            elif self._probe_error and not error:
                log.warning("shoal-runtimed answers again")
            self._probe_error = error
            await asyncio.sleep(PROBE_PERIOD)

    async def apply(self, message: cluster_pb2.AssignmentsMessage) -> None:
        self.start()
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
            for task_id in removed:
                await self._remove(task_id)
            for task in tasks.values():
                self._assign(task)
            if complete:
                self._complete = True
                if self.events.connected.is_set():
                    self._sweep()

    def _assign(self, task: objects_pb2.Task, container_id: str | None = None) -> None:
        if task.spec.HasField("attachment"):
            self._attach(task)
            return
        entry = self._managers.get(task.id)
        if entry is not None:
            entry[0].update(task)
            return
        manager = TaskManager(task, self._runtime, self._reporter.report, self._insecure, container_id,
                              networks_ready=self._networks_ready, make_spec=self._container_spec,
                              events=self.events, starts=self._starts, drain_delay=self._drain_delay)
        self._managers[task.id] = (manager, asyncio.create_task(manager.run(), name=f"task-{task.id}"))

    def _attach(self, task: objects_pb2.Task) -> None:
        """A one-off container's network attachment: the container is the CLI's (created through
        the runtime with this task's address), so there is nothing to run; the task is reported
        RUNNING once (SHUTDOWN once its desired state moves past RUNNING), which keeps the
        network on this node and the address in every node's data plane until it is detached."""
        wanted = objects_pb2.RUNNING if task.desired_state <= objects_pb2.RUNNING else objects_pb2.SHUTDOWN
        if wanted == objects_pb2.RUNNING:
            self.attachments.assigned.add(task.id)
        else:
            self.attachments.assigned.discard(task.id)
        if task.status.state >= wanted or self._attachments.get(task.id) == wanted:
            return
        self._attachments[task.id] = wanted
        message = "attached" if wanted == objects_pb2.RUNNING else "detached"
        self._reporter.report(task.id, objects_pb2.TaskStatus(
            state=wanted, message=message, timestamp=time.time(),
            container_id=task.spec.attachment.container_id))

    def _container_spec(self, task: objects_pb2.Task) -> ContainerSpec:
        """The task's container spec with the data of the secrets and configs this node holds."""
        return container_spec(task, self.secrets, self.configs, self.hostname)

    async def _networks_ready(self, network_ids: list[str]) -> bool:
        ready = await self.network.wait_for_networks(network_ids, NETWORK_WAIT_TIMEOUT)
        if not ready:
            log.warning("no network sync names networks %s after %.0f s; creating the container anyway",
                        ", ".join(sorted(set(network_ids) - self.network.synced_networks)), NETWORK_WAIT_TIMEOUT)
        return ready

    # -- containers no task claims --------------------------------------------------------
    def _sweep(self) -> None:
        """After a resync (or a complete assignment set): remove containers of unassigned tasks."""
        if not self._complete:
            return
        self.attachments.reconcile(self._complete)
        for obs in list(self.events.by_container.values()):
            if obs.task_id and obs.task_id not in self._managers:
                self._remove_container(obs.container_id, f"task {obs.task_id} is not assigned to this node")

    def _unclaimed(self, obs: Observed) -> None:
        """A container labelled with a task that has no manager here changed (e.g. a create whose
        call timed out landed late): remove it once the assignments are known."""
        if self._complete and obs.status != REMOVED and obs.task_id not in self._managers:
            self._remove_container(obs.container_id, f"task {obs.task_id} is not assigned to this node")

    def _remove_container(self, container_id: str, why: str) -> None:
        if container_id in self._removals:
            return
        log.info("removing container %s: %s", container_id[:12], why)
        task = asyncio.create_task(self._removal(container_id), name=f"remove-{container_id[:12]}")
        self._removals[container_id] = task
        task.add_done_callback(lambda _: self._removals.pop(container_id, None))

    async def _removal(self, container_id: str) -> None:
        """Remove until it is gone: a failed removal is retried with backoff, never forgotten."""
        backoff = Backoff(*self._retry)
        while True:
            delay = backoff.ceiling()
            try:
                await self._runtime.remove(container_id, force=True)
                return
            except NotFound:
                return
            except Unavailable as err:
                log.info("removing container %s: %s; retrying once shoal-runtimed is back", container_id[:12], err)
                await asyncio.sleep(delay)
                await self.events.connected.wait()
                if container_id not in self.events.by_container:
                    return
            except ShoalRuntimeError as err:
                log.warning("removing container %s failed: %s; retrying in %.1f s", container_id[:12], err, delay)
                await asyncio.sleep(delay)
            backoff.next()

    async def _remove(self, task_id: str) -> None:
        self._attachments.pop(task_id, None)
        self.attachments.assigned.discard(task_id)
        entry = self._managers.pop(task_id, None)
        if entry is None:
            return
        manager, runner = entry
        runner.cancel()
        try:
            await runner
        except (asyncio.CancelledError, Exception):
            pass
        container_id = manager.container_id or (self.events.observed(task_id) or Observed("")).container_id
        if container_id:
            self._remove_container(container_id, f"task {task_id} is no longer assigned")

    async def close(self) -> None:
        await self.network.close()
        await self.attachments.close()
        entries = list(self._managers.values())
        self._managers.clear()
        extra = [t for t in (self._events_task, self._probe_task) if t is not None] + list(self._removals.values())
        for _, runner in entries:
            runner.cancel()
        for runner in extra:
            runner.cancel()
        for runner in [r for _, r in entries] + extra:
            try:
                await runner
            except (asyncio.CancelledError, Exception):
                pass
