"""A node's roles as one supervised task group: the first task to fail or end stops them all."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, Coroutine

RoleTask = Coroutine[Any, Any, None]

log = logging.getLogger("shoald")


class RoleFailed(Exception):
    """A role task failed or ended (role tasks run until cancelled)."""


class RoleGroup:
    """The tasks of one node's roles, run as an ``asyncio.TaskGroup``: the first to fail ends all.

    ``failed`` holds the first failure (None while running or after a clean stop); ``on_failure``
    is called with it once the group has ended.
    """

    def __init__(self, tasks: dict[str, RoleTask], on_failure: Callable[[BaseException], None]) -> None:
        self.failed: BaseException | None = None
        self._on_failure = on_failure
        self._stopping = False
        self._task = asyncio.create_task(self._run(tasks), name="roles")

    async def _run(self, tasks: dict[str, RoleTask]) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                for name, coro in tasks.items():
                    group.create_task(self._named(name, coro), name=name)
        except BaseExceptionGroup as failure:
            self.failed = failure.exceptions[0]
            if self._stopping:  # a task that failed while being stopped: nothing left to supervise
                log.warning("while stopping: %s", self.failed)
                return
            log.error("%s", self.failed)
            self._on_failure(self.failed)

    @staticmethod
    async def _named(name: str, coro: RoleTask) -> None:
        try:
            await coro
        except Exception as err:
            raise RoleFailed(f"role task {name} failed: {err!r}") from err
        raise RoleFailed(f"role task {name} ended")

    async def stop(self) -> None:
        self._stopping = True
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
