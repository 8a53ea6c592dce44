"""Docker's restart policies (``run --restart``) in shoal-runtimed.

When a container with a policy dies, runtimed starts it again after a back-off, as dockerd's
restart manager does: 100 ms, doubled at each restart up to one minute, back to 100 ms when the
container had run for 10 s or more. ``always`` and ``unless-stopped`` restart whatever the exit
code; ``on-failure[:N]`` only a non-zero exit, at most N times (0: no limit). A container stopped
or killed through the API (``shoal stop``/``kill``) is left stopped until it is started again, which
also sets its restart count back to 0. When runtimed starts, containers found exited are started
as dockerd's restore starts them: ``always``, ``unless-stopped`` not stopped by a user, and
``on-failure`` after a non-zero exit with retries left; a failed start counts as an exit and is
retried with the same back-off.
"""

from __future__ import annotations

import asyncio
import logging
import re
from datetime import datetime
from typing import TYPE_CHECKING

from agent_runtime.container_record import EXITED
from agent_runtime.errors import NotFound, ShoalRuntimeError
from common.backoff import Backoff

if TYPE_CHECKING:
    from agent_runtime.container_record import Container
    from agent_runtime.server import Runtimed

log = logging.getLogger(__name__)

FIRST_DELAY = 0.1
MAX_DELAY = 60.0
RESET_AFTER = 10.0          # seconds of running that set the back-off back to FIRST_DELAY


def should_restart(policy, exit_code: int, manually_stopped: bool, restart_count: int) -> bool:
    """dockerd's restartManager.ShouldRestart, for a container that has just exited."""
    if manually_stopped:
        return False
    if policy.name in ("always", "unless-stopped"):
        return True
    if policy.name == "on-failure":
        limit = policy.maximum_retry_count
        return exit_code != 0 and (limit == 0 or restart_count < limit)
    return False


def starts_with_daemon(policy, manually_stopped: bool, exit_code: int, restart_count: int) -> bool:
    """Whether runtimed starts an exited container when it starts itself (dockerd's restore:
    ShouldRestart with a fresh manager, where a user's stop only holds back ``unless-stopped``)."""
    if policy.name == "always":
        return True
    if policy.name == "unless-stopped":
        return not manually_stopped
    return should_restart(policy, exit_code, False, restart_count)


def next_delay(backoff: Backoff, ran_for: float) -> float:
    """The back-off before the next restart of a container that ran ``ran_for`` seconds."""
    if ran_for >= RESET_AFTER:
        backoff.reset()
    return backoff.next()


def _seconds(text: str) -> float:
    text = re.sub(r"(\.\d{6})\d+", r"\1", (text or "").replace("Z", "+00:00"))
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return 0.0


class Restarter:
    """Watches the container manager's ``die`` events and restarts by policy (one pending restart
    per container; a user's stop, kill, start or remove meanwhile wins)."""

    def __init__(self, daemon: "Runtimed") -> None:
        self.daemon = daemon
        self._backoff: dict[str, Backoff] = {}
        self._pending: dict[str, asyncio.Task] = {}
        self._starting: set[str] = set()      # past the back-off: let the start finish, never cancel it

    async def run(self) -> None:
        manager = self.daemon.manager
        first = True
        while True:
            sub = manager.events.subscribe()
            try:
                for c in list(manager.containers.values()):
                    if first and c.state.restarting:     # a restart that was pending when runtimed stopped
                        c.state.restarting = False
                        c.save_state()
                    if c.state.status != EXITED:
                        continue
                    if first and starts_with_daemon(c.spec.restart_policy, c.runtime.manually_stopped,
                                                    c.state.exit_code, c.runtime.restart_count):
                        self._schedule(c, 0.0, with_daemon=True)
                    elif not first:
                        self._on_exit(c)
                first = False
                while (ev := await sub.queue.get()) is not None:
                    if ev.get("Action") == "die":
                        c = manager.containers.get((ev.get("Actor") or {}).get("ID", ""))
                        if c is not None:
                            self._on_exit(c)
            finally:
                manager.events.unsubscribe(sub)
                for task in self._pending.values():
                    task.cancel()

    def _on_exit(self, c: "Container") -> None:
        if c.id in self._pending or not should_restart(c.spec.restart_policy, c.state.exit_code,
                                                       c.runtime.manually_stopped, c.runtime.restart_count):
            return
        ran_for = _seconds(c.state.finished_at) - _seconds(c.state.started_at)
        delay = next_delay(self._backoff.setdefault(c.id, Backoff(FIRST_DELAY, MAX_DELAY)), ran_for)
        c.state.restarting = True
        c.save_state()
        self._schedule(c, delay)

    def _schedule(self, c: "Container", delay: float, with_daemon: bool = False) -> None:
        self._pending[c.id] = asyncio.get_running_loop().create_task(self._restart(c.id, delay, with_daemon),
                                                                     name=f"restart-{c.id[:12]}")

    async def _restart(self, cid: str, delay: float, with_daemon: bool = False) -> None:
        try:
            await asyncio.sleep(delay)
            c = self.daemon.manager.containers.get(cid)
            if c is None or c.state.status != EXITED or (c.runtime.manually_stopped and not with_daemon):
                return              # removed, started or stopped by a user meanwhile
            if with_daemon:         # started with runtimed, as dockerd's restore: a user's stop is over
                c.runtime.manually_stopped = False
            c.runtime.restart_count += 1
            c.save_state()
            log.info("restarting container %s (policy %s, restart %d)", c.name, c.spec.restart_policy.name,
                     c.runtime.restart_count)
            self._starting.add(cid)
            if c.on_overlay():
                await self.daemon.network.ensure(c)
            await self.daemon.manager.start(cid)
            if c.runtime.manually_stopped:      # a user stopped it while it was starting: stop it again
                await self.daemon.manager.stop(cid)
        except NotFound:
            return
        except ShoalRuntimeError as exc:
            log.warning("container %s: restart failed: %s", cid[:12], exc)
            c = self.daemon.manager.containers.get(cid)
            self._pending.pop(cid, None)
            if c is not None and c.state.status == EXITED:
                self._on_exit(c)    # a failed start is an exit: back off and try again
            return
        finally:
            self._starting.discard(cid)
            if self._pending.get(cid) is asyncio.current_task():
                del self._pending[cid]
                self._settled(cid)

    def forget(self, cid: str) -> None:
        """A user started, stopped or removed the container: drop its back-off and pending restart."""
        self._backoff.pop(cid, None)
        task = self._pending.pop(cid, None)
        if task is not None and cid not in self._starting:
            task.cancel()
        self._settled(cid)

    def _settled(self, cid: str) -> None:
        """No restart pending any more: the container is no longer shown restarting."""
        c = self.daemon.manager.containers.get(cid)
        if c is not None and c.state.restarting:
            c.state.restarting = False
            c.save_state()
