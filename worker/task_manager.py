"""Drives one task to its desired state through shoal-runtimed and reports every state.

States only move forward: ACCEPTED → PREPARING → READY → STARTING → RUNNING, then one of
COMPLETE, FAILED, SHUTDOWN or REJECTED. A task held at desired state READY is prepared
but not started. A task with a health check is reported RUNNING only once healthy; a
container that turns unhealthy is stopped and the task FAILED, so the orchestrator
replaces it. ``run()`` runs until cancelled (the worker cancels it when the task is
no longer assigned) and never stops the container on cancellation: containers outlive
shoald.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable

from agent_runtime.api import ContainerInfo, ContainerSpec, Healthcheck, NotFound, ShoalRuntimeError
from proto import objects_pb2
from worker.executor import container_spec, task_name

log = logging.getLogger(__name__)

TERMINAL = (objects_pb2.COMPLETE, objects_pb2.SHUTDOWN, objects_pb2.FAILED, objects_pb2.REJECTED,
            objects_pb2.ORPHANED)

Report = Callable[[str, objects_pb2.TaskStatus], None]
NetworksReady = Callable[[list[str]], Awaitable[bool]]


class TaskManager:
    def __init__(self, task: objects_pb2.Task, runtime, report: Report, insecure_registries: tuple[str, ...] = (),
                 container_id: str | None = None, clock: Callable[[], float] = time.time,
                 networks_ready: NetworksReady | None = None,
                 make_spec: Callable[[objects_pb2.Task], ContainerSpec] = container_spec):
        self.task = task
        self._runtime = runtime
        self._report_fn = report
        self._insecure = insecure_registries
        self._clock = clock
        self._networks_ready = networks_ready  # waits until a network sync names these networks
        self._make_spec = make_spec  # the worker's: fills in the secrets and configs it was sent
        self.container_id = container_id
        self.status = objects_pb2.TaskStatus()
        self.status.CopyFrom(task.status)
        self._changed = asyncio.Event()
        self._unhealthy = False

    # -- called by the worker ------------------------------------------------------
    def update(self, task: objects_pb2.Task) -> None:
        """A newer version of the task arrived (desired state may have moved)."""
        self.task = task
        self._changed.set()

    # -- reporting -------------------------------------------------------------------
    def _report(self, state: int, message: str, err: str = "", **fields) -> None:
        if state < self.status.state:
            return
        status = objects_pb2.TaskStatus(state=state, message=message, err=err, timestamp=self._clock(),
                                        container_id=self.container_id or "")
        for key in ("exit_code", "pid", "health", "failing_streak"):
            if key in fields:
                setattr(status, key, fields[key])
            elif key in ("pid", "health") and self.status.state <= state:
                setattr(status, key, getattr(self.status, key))
        self.status = status
        self._report_fn(self.task.id, status)

    async def _wait_change(self, timeout: float | None = None) -> None:
        self._changed.clear()
        # asyncio.wait, not wait_for: 3.11's wait_for can swallow a racing cancellation.
        waiter = asyncio.ensure_future(self._changed.wait())
        try:
            await asyncio.wait({waiter}, timeout=timeout)
        finally:
            waiter.cancel()

    # -- the state machine ----------------------------------------------------------------
    async def run(self) -> None:
        while True:
            desired = self.task.desired_state
            if desired >= objects_pb2.SHUTDOWN:
                await self._shutdown(remove=desired >= objects_pb2.REMOVE)
                await self._wait_change()
                continue
            if self.status.state in TERMINAL:
                await self._wait_change()
                continue
            try:
                if self.status.state < objects_pb2.ACCEPTED:
                    self._report(objects_pb2.ACCEPTED, "accepted")
                if self.status.state < objects_pb2.READY or self.container_id is None:
                    if not await self._prepare():
                        continue
                if desired < objects_pb2.RUNNING:
                    await self._wait_change()
                    continue
                await self._run_container()
            except ShoalRuntimeError as err:
                log.warning("task %s: runtime error: %s", self.task.id, err)
                self._report(objects_pb2.FAILED, "runtime error", err=str(err))

    async def _prepare(self) -> bool:
        self._report(objects_pb2.PREPARING, "preparing")
        image = self.task.spec.container.image
        try:
            try:
                await self._runtime.image_inspect(image)
            except NotFound:
                await self._runtime.image_pull(image, insecure_registries=self._insecure)
        except ShoalRuntimeError as err:
            self._report(objects_pb2.REJECTED, "preparing failed", err=f"{err}")
            return False
        if self.container_id is None:
            try:
                spec = self._make_spec(self.task)
                if spec.networks and self._networks_ready is not None:
                    await self._networks_ready([n.network_id for n in spec.networks])
                self.container_id = await self._runtime.create(spec)
            except (ShoalRuntimeError, ValueError) as err:
                self._report(objects_pb2.REJECTED, "preparing failed", err=f"create container: {err}")
                return False
        self._report(objects_pb2.READY, "prepared")
        return True

    async def _run_container(self) -> None:
        info: ContainerInfo = await self._runtime.inspect(self.container_id)
        if not info.state.running and self.status.state < objects_pb2.STARTING:
            self._report(objects_pb2.STARTING, "starting")
            info = await self._runtime.start(self.container_id)
        elif not info.state.running:
            # It ran and exited while we were away (or before a restart of shoald).
            self._finished(info.state.exit_code, info.state.oom_killed)
            return
        health = await self._healthcheck(info)
        if health is None:
            self._report(objects_pb2.RUNNING, "started", pid=info.state.pid)
        waiter = asyncio.create_task(self._runtime.wait(self.container_id))
        checker = asyncio.create_task(self._check_health(health, info.state.pid)) if health else None
        try:
            while True:
                changed = asyncio.create_task(self._wait_change())
                waits = {waiter, changed} | ({checker} if checker else set())
                done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                changed.cancel()
                if waiter in done:
                    result = waiter.result()
                    self._finished(result.status_code, result.oom_killed)
                    return
                if checker is not None and checker in done:
                    checker.result()  # unhealthy: the container was stopped; the waiter reports
                    checker = None
                    result = await waiter
                    self._finished(result.status_code, result.oom_killed)
                    return
                if self.task.desired_state >= objects_pb2.SHUTDOWN:
                    return  # run() handles the shutdown
        finally:
            waiter.cancel()
            if checker is not None:
                checker.cancel()

    def _finished(self, code: int, oom: bool) -> None:
        if self._unhealthy:
            self._report(objects_pb2.FAILED, "unhealthy", err="task: unhealthy container", exit_code=code,
                         health="unhealthy")
        elif self.task.desired_state >= objects_pb2.SHUTDOWN:
            self._report(objects_pb2.SHUTDOWN, "shutdown", exit_code=code)
        elif code == 0:
            self._report(objects_pb2.COMPLETE, "finished", exit_code=0)
        else:
            err = "task: OOM killed (exit 137)" if oom else f"task: non-zero exit ({code})"
            self._report(objects_pb2.FAILED, "failed", err=err, exit_code=code)

    async def _shutdown(self, remove: bool) -> None:
        if self.container_id is not None:
            try:
                info = await self._runtime.inspect(self.container_id)
                if info.state.running:
                    grace = self.task.spec.container.stop_grace_period or 10.0
                    info = await self._runtime.stop(self.container_id, timeout=grace)
                if self.status.state < objects_pb2.COMPLETE:
                    self._report(objects_pb2.SHUTDOWN, "shutdown", exit_code=info.state.exit_code)
                if remove:
                    await self._runtime.remove(self.container_id, force=True)
                    self.container_id = None
            except NotFound:
                self.container_id = None
        if self.status.state < objects_pb2.COMPLETE:
            self._report(objects_pb2.SHUTDOWN, "shutdown")

    # -- health --------------------------------------------------------------------------
    async def _healthcheck(self, info: ContainerInfo) -> Healthcheck | None:
        hc = info.config.healthcheck
        if hc is None:
            try:
                image = await self._runtime.image_inspect(self.task.spec.container.image)
                raw = (image.get("Config") or {}).get("Healthcheck") or {}
                if raw.get("Test"):
                    ns = 1e9
                    hc = Healthcheck(test=list(raw["Test"]), interval_s=raw.get("Interval", 30 * ns) / ns,
                                     timeout_s=raw.get("Timeout", 30 * ns) / ns, retries=raw.get("Retries", 3),
                                     start_period_s=raw.get("StartPeriod", 0) / ns)
            except ShoalRuntimeError:
                hc = None
        if hc is None or not hc.test or hc.test[0] == "NONE":
            return None
        return hc

    async def _check_health(self, hc: Healthcheck, pid: int) -> None:
        """Run the check every interval; report RUNNING when healthy; return when unhealthy."""
        if hc.test[0] == "CMD-SHELL":
            argv = ["/bin/sh", "-c", " ".join(hc.test[1:])]
        else:
            argv = list(hc.test[1:] if hc.test[0] == "CMD" else hc.test)
        started = self._clock()
        streak = 0
        healthy = False
        self._report(objects_pb2.STARTING, "starting", health="starting", pid=pid)
        while True:
            try:
                result = await asyncio.wait_for(self._runtime.exec(self.container_id, argv), hc.timeout_s)
                ok = result.exit_code == 0
            except (asyncio.TimeoutError, ShoalRuntimeError):
                ok = False
            if ok:
                streak = 0
                if not healthy:
                    healthy = True
                    self._report(objects_pb2.RUNNING, "started", health="healthy", pid=pid)
            elif self._clock() - started >= hc.start_period_s or healthy:
                streak += 1
                if streak >= hc.retries:
                    log.info("task %s (%s) is unhealthy after %d failed checks", self.task.id,
                             task_name(self.task), streak)
                    self._unhealthy = True
                    await self._runtime.stop(self.container_id, timeout=self.task.spec.container.stop_grace_period or 10.0)
                    return
            await asyncio.sleep(hc.interval_s)
