"""Drives one task to its desired state through shoal-runtimed and reports every state.

The decisions are ``worker.taskstate.step`` (pure, table-tested); this class carries out its
actions and learns what happened to the container from the node's one event stream
(``worker.events.ContainerEvents``, by task ID): no call waits on a container. Health checks run in
runtimed; their results arrive as ``health_status`` events. ``run()`` runs until
cancelled (the worker cancels it when the task is no longer assigned) and never stops the
container on cancellation: containers outlive shoald.

Runtime errors, by kind (agent_runtime.errors):
- ``Unavailable`` (runtimed down or restarting): nothing is reported; the manager waits for the
  event stream to resynchronise, then looks again: a container created by a call whose answer was
  lost is adopted (found by its task label), never duplicated, and one still running is not failed;
- ``DeadlineExceeded`` (runtimed did not answer in time): the task FAILS with the error, which
  names the call, and goes through its restart policy; a container that the unanswered call
  makes later is stopped/removed with the task;
- any other error: REJECTED while preparing, FAILED while starting; stopping and removing are
  retried with backoff until they succeed (a container is never forgotten).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable

from agent_runtime.api import (ContainerSpec, DeadlineExceeded, Healthcheck, NotFound, ShoalRuntimeError,
                               Unavailable)
from common.backoff import Backoff
from proto import objects_pb2
from worker import taskstate
from worker.events import CREATED, REMOVED, ContainerEvents, Observed
from worker.executor import container_spec, task_name
from worker.taskstate import TERMINAL, Facts

log = logging.getLogger(__name__)

__all__ = ["TaskManager", "TERMINAL"]

Report = Callable[[str, objects_pb2.TaskStatus], None]
NetworksReady = Callable[[list[str]], Awaitable[bool]]
RETRY = (0.2, 5.0)  # backoff of a retried stop/remove or a call refused while runtimed is away
# How long a service task that was getting traffic keeps running after it left the service's
# backends (here at once, on the other nodes when their data planes have converged) before it is
# stopped: Docker's defaultGossipConvergeDelay. See docs/rolling-upgrades.md.
DRAIN_DELAY = 2.0


def _healthcheck_from_image(image: dict) -> Healthcheck | None:
    raw = (image.get("Config") or {}).get("Healthcheck") or {}
    if not raw.get("Test"):
        return None
    ns = 1e9
    return Healthcheck(test=list(raw["Test"]), interval_s=raw.get("Interval", 30 * ns) / ns,
                       timeout_s=raw.get("Timeout", 30 * ns) / ns, retries=raw.get("Retries", 3),
                       start_period_s=raw.get("StartPeriod", 0) / ns)


class TaskManager:
    def __init__(self, task: objects_pb2.Task, runtime, report: Report, insecure_registries: tuple[str, ...] = (),
                 container_id: str | None = None, clock: Callable[[], float] = time.time,
                 networks_ready: NetworksReady | None = None,
                 make_spec: Callable[[objects_pb2.Task], ContainerSpec] = container_spec,
                 events: ContainerEvents | None = None, retry: tuple[float, float] = RETRY,
                 starts: asyncio.Semaphore | None = None, drain_delay: float = DRAIN_DELAY):
        self.task = task
        self._runtime = runtime
        self._report_fn = report
        self._insecure = insecure_registries
        self._clock = clock
        self._networks_ready = networks_ready  # waits until a network sync names these networks
        self._make_spec = make_spec  # the worker's: fills in the secrets and configs it was sent
        self._events = events if events is not None else ContainerEvents(runtime)
        self._retry = retry
        self._drain_delay = drain_delay
        self._drained = False
        self._starts = starts or asyncio.Semaphore(1)  # the worker's: creates/starts in flight at once
        self.status = objects_pb2.TaskStatus()
        self.status.CopyFrom(task.status)
        self._changed = asyncio.Event()
        self._creating = False
        self._has_check: bool | None = None  # None: not known yet
        self._was_unhealthy = False
        self._event = ""
        self._image_health: Healthcheck | None = None
        self._image_health_known = False
        self.observed: Observed | None = None
        self._gone: set[str] = set()  # containers this manager removed (their late events are old news)
        if container_id is not None:
            self._adopt(container_id)
        self._events.watch(task.id, self._on_observed)

    @property
    def container_id(self) -> str | None:
        return self.observed.container_id if self.observed is not None else None

    # -- called by the worker ------------------------------------------------------
    def update(self, task: objects_pb2.Task) -> None:
        """A newer version of the task arrived (desired state may have moved)."""
        self.task = task
        self._changed.set()

    # -- what the event stream says --------------------------------------------------
    def _adopt(self, container_id: str) -> None:
        known = self._events.by_container.get(container_id)
        base = Observed(container_id=container_id, task_id=self.task.id)
        self.observed = base.merge(known) if known is not None else base

    def _on_observed(self, obs: Observed) -> None:
        """The event router's callback for every change of a container labelled with this task."""
        if obs.container_id in self._gone:
            return
        if self.observed is None:
            if self._creating or obs.status == REMOVED:
                return  # create()'s answer names the container; the index keeps what it went through
            log.info("task %s: adopting container %s", self.task.id, obs.container_id[:12])
            self.observed = obs
        elif obs.container_id != self.observed.container_id:
            if obs.status != REMOVED:
                log.warning("task %s: a second container %s (a create whose answer was lost): removing it",
                            self.task.id, obs.container_id[:12])
                asyncio.get_running_loop().create_task(self._remove_stray(obs.container_id))
            return
        else:
            self.observed = self.observed.merge(obs)
        if self.observed.status == REMOVED:
            self.observed = None
        self._changed.set()

    async def _remove_stray(self, container_id: str) -> None:
        await self._retrying(f"remove container {container_id[:12]}",
                             lambda: self._runtime.remove(container_id, force=True))

    # -- reporting -------------------------------------------------------------------
    def _report(self, state: int, message: str, err: str = "", **fields) -> None:
        if state < self.status.state:
            return
        status = objects_pb2.TaskStatus(state=state, message=message, err=err, timestamp=self._clock(),
                                        container_id=self.container_id or "")
        for key in ("exit_code", "pid", "health", "failing_streak"):
            if fields.get(key) is not None:
                setattr(status, key, fields[key])
            elif key in ("pid", "health") and self.status.state <= state:
                setattr(status, key, getattr(self.status, key))
        self.status = status
        self._report_fn(self.task.id, status)

    async def _wait_change(self, timeout: float | None = None) -> None:
        # asyncio.wait, not wait_for: 3.11's wait_for can swallow a racing cancellation.
        waiter = asyncio.ensure_future(self._changed.wait())
        try:
            await asyncio.wait({waiter}, timeout=timeout)
        finally:
            waiter.cancel()

    def facts(self) -> Facts:
        if self._has_check is None:
            health = ""
        elif not self._has_check:
            health = "none"
        else:
            health = (self.observed.health if self.observed is not None else "") or "starting"
            self._was_unhealthy = self._was_unhealthy or health == "unhealthy"
            health = "unhealthy" if self._was_unhealthy else health
        return Facts(desired=self.task.desired_state, state=self.status.state, health=health)

    # -- the loop ------------------------------------------------------------------------
    async def run(self) -> None:
        try:
            while True:
                self._changed.clear()
                if self.observed is None:
                    # "no container" is only true of an index in sync with runtimed
                    await self._events.connected.wait()
                    found = self._events.observed(self.task.id)
                    if found is not None and found.container_id not in self._gone:
                        self.observed = found
                actions = taskstate.step(self.facts(), self.observed, self._event)
                self._event = ""
                if not actions:
                    await self._wait_change()
                    continue
                for action in actions:
                    await self._do(action)
                    if self._changed.is_set():
                        break  # something moved while we acted: decide again
        finally:
            self._events.unwatch(self.task.id)

    async def _do(self, action: taskstate.Action) -> None:
        name = type(action).__name__.lower()
        try:
            if isinstance(action, taskstate.Report):
                self._report(action.state, action.message, action.err, exit_code=action.exit_code,
                             health=action.health, pid=action.pid)
            elif isinstance(action, taskstate.Prepare):
                await self._prepare()
            elif isinstance(action, taskstate.Start):
                async with self._starts:
                    self._apply_info(await self._runtime.start(self.container_id))
            elif isinstance(action, taskstate.CheckHealth):
                await self._learn_health_check()
            elif isinstance(action, taskstate.Stop):
                if self._must_drain():
                    await self._drain()
                    return
                grace = self.task.spec.container.stop_grace_period or 10.0
                self._apply_info(await self._runtime.stop(self.container_id, timeout=grace))
            elif isinstance(action, taskstate.Remove):
                await self._runtime.remove(self.container_id, force=True)
                self._gone.add(self.container_id)
                self.observed = None
        except NotFound as err:
            if isinstance(action, taskstate.Prepare):
                self._report(objects_pb2.REJECTED, "preparing failed", err=f"{err}")
            else:
                self.observed = None  # the container is gone: the next step decides what that means
        except Unavailable as err:
            await self._wait_for_runtime(f"{self._what(action)}: {err}")
        except DeadlineExceeded as err:
            if isinstance(action, (taskstate.Stop, taskstate.Remove)):
                await self._backoff(f"{self._what(action)}: {err}")
            else:
                log.warning("task %s (%s): %s", self.task.id, task_name(self.task), err)
                self._report(objects_pb2.FAILED, f"{name} failed", err=f"{err}")
        except (ShoalRuntimeError, ValueError) as err:
            if isinstance(action, (taskstate.Stop, taskstate.Remove)):
                await self._backoff(f"{self._what(action)}: {err}")
            elif isinstance(action, taskstate.Prepare):
                self._report(objects_pb2.REJECTED, "preparing failed", err=f"{err}")
            else:
                log.info("task %s (%s): %s failed: %s", self.task.id, task_name(self.task), name, err)
                self._report(objects_pb2.FAILED, f"{name} failed", err=f"{err}")

    def _what(self, action: taskstate.Action) -> str:
        verb = {"prepare": "create", "checkhealth": "health check"}.get(type(action).__name__.lower(),
                                                                          type(action).__name__.lower())
        return f"{verb} container {(self.container_id or task_name(self.task))[:64]}"

    def _apply_info(self, info) -> None:
        if self.observed is not None and info.id == self.observed.container_id:
            self.observed = self.observed.merge(Observed.from_info(info))

    # -- draining ----------------------------------------------------------------------------
    def _must_drain(self) -> bool:
        """Whether the container must keep running a little before it is stopped: its task ran
        with an overlay address (a VIP or routing-mesh backend) and is no longer wanted. Its node
        applied the data plane without it before this decision (Worker.apply), but the other nodes
        apply theirs on their own, as fast as their runtimed converges; a container stopped at once
        made their new connections to it fail until then."""
        return (not self._drained and self._drain_delay > 0 and self.task.desired_state > objects_pb2.RUNNING
                and self.status.state == objects_pb2.RUNNING and any(a.addresses for a in self.task.networks))

    async def _drain(self) -> None:
        self._drained = True
        log.debug("task %s: out of the service's backends; stopping its container in %.1f s", self.task.id,
                  self._drain_delay)
        await asyncio.sleep(self._drain_delay)
        self._changed.set()  # decide again: the container may have exited meanwhile

    # -- waiting out errors ---------------------------------------------------------------
    async def _wait_for_runtime(self, what: str) -> None:
        """runtimed is away: wait (backoff, then until the event stream is back in sync) and
        re-read this task's container from the index, which the resync refreshed."""
        log.info("task %s: %s; waiting for shoal-runtimed", self.task.id, what)
        await asyncio.sleep(self._retry[0])
        await self._events.connected.wait()
        obs = self._events.observed(self.task.id)
        if self.observed is None or (obs is not None and obs.container_id == self.observed.container_id):
            self.observed = obs
        elif self.observed.container_id not in self._events.by_container:
            self.observed = None  # removed while runtimed was away
        self._changed.set()

    async def _backoff(self, what: str) -> None:
        log.warning("task %s: %s; retrying", self.task.id, what)
        await asyncio.sleep(self._retry[1])
        self._changed.set()

    async def _retrying(self, what: str, call: Callable[[], Awaitable[object]]) -> None:
        backoff = Backoff(*self._retry)
        while True:
            try:
                await call()
                return
            except NotFound:
                return
            except ShoalRuntimeError as err:
                log.warning("task %s: %s failed: %s; retrying", self.task.id, what, err)
                await asyncio.sleep(backoff.next())

    # -- preparing ------------------------------------------------------------------------
    async def _prepare(self) -> None:
        await self._events.connected.wait()  # the index is in sync: "no container" is true
        found = self._events.observed(self.task.id)
        if found is not None:
            log.info("task %s: adopting container %s", self.task.id, found.container_id[:12])
            self.observed = found
            return
        self._report(objects_pb2.PREPARING, "preparing")
        image = self.task.spec.container.image
        try:
            info = await self._runtime.image_inspect(image)
        except NotFound:
            info = await self._runtime.image_pull(image, insecure_registries=self._insecure)
        self._image_health = _healthcheck_from_image(info or {})
        self._image_health_known = True
        spec = self._make_spec(self.task)
        if spec.networks and self._networks_ready is not None:
            await self._networks_ready([n.network_id for n in spec.networks])
        async with self._starts:
            self._creating = True
            try:
                cid = await self._runtime.create(spec)
            finally:
                self._creating = False
        known = self._events.by_container.get(cid)
        created = Observed(container_id=cid, task_id=self.task.id, status=CREATED)
        self.observed = created.merge(known) if known is not None else created

    # -- health --------------------------------------------------------------------------
    async def _healthcheck(self) -> Healthcheck | None:
        c = self.task.spec.container
        if c.HasField("healthcheck") and c.healthcheck.test:
            if c.healthcheck.test[0] == "NONE":
                return None
            hc = c.healthcheck
            return Healthcheck(test=list(hc.test), interval_s=hc.interval or 30.0, timeout_s=hc.timeout or 30.0,
                               retries=hc.retries or 3, start_period_s=hc.start_period)
        if not self._image_health_known:
            try:
                self._image_health = _healthcheck_from_image(await self._runtime.image_inspect(c.image))
            except NotFound:
                self._image_health = None
            self._image_health_known = True
        return self._image_health

    async def _learn_health_check(self) -> None:
        """Whether the container has a health check (the task's, else its image's); runtimed runs
        it and publishes each change as an event."""
        hc = await self._healthcheck()
        self._has_check = hc is not None and bool(hc.test) and hc.test[0] != "NONE"
        if self._has_check and self.status.state <= objects_pb2.STARTING:
            pid = self.observed.pid if self.observed else 0
            self._report(objects_pb2.STARTING, "starting", health="starting", pid=pid)
