"""Supervision of the leader's components: a component that fails is restarted with backoff.

A leader component (dispatcher, allocator, orchestrator, ...) runs until cancelled. When one
raises, ``supervise`` logs the error, counts the restart and starts it again after an
exponentially growing pause (``RestartPolicy``). Failing more than ``budget`` times within
``window`` seconds means it is not going to recover by itself: ``supervise`` raises
``ComponentFailed`` and the manager stops, rather than lead Raft without it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Awaitable, Callable

from common.backoff import Backoff

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RestartPolicy:
    initial: float = 0.5        # pause before the first restart
    maximum: float = 10.0       # the pause doubles up to this
    budget: int = 5             # failures tolerated within ``window``; one more gives up
    window: float = 120.0       # seconds


class ComponentFailed(Exception):
    def __init__(self, name: str, failures: int, last: BaseException):
        super().__init__(f"leader component {name} failed {failures} times, last: {last!r}")
        self.name = name


async def supervise(name: str, run: Callable[[], Awaitable[None]], policy: RestartPolicy = RestartPolicy(), *,
                    restarts: dict[str, int] | None = None, clock: Callable[[], float] = time.monotonic,
                    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
    """Run ``run()`` until cancelled, restarting it when it fails; ``restarts[name]`` counts the restarts."""
    failures: deque[float] = deque()
    backoff = Backoff(policy.initial, policy.maximum)
    while True:
        try:
            await run()
            error: BaseException = RuntimeError(f"{name} returned")
        except Exception as err:  # noqa: BLE001 - any failure of a component is what is supervised
            error = err
        now = clock()
        failures.append(now)
        while failures and failures[0] < now - policy.window:
            failures.popleft()
        if len(failures) > policy.budget:
            log.error("leader component %s gave up after %d failures in %.0fs: %r",
                      name, len(failures), policy.window, error, exc_info=error)
            raise ComponentFailed(name, len(failures), error) from error
        if len(failures) == 1:
            backoff.reset()  # the first failure after a quiet window starts the backoff over
        pause = backoff.next()
        log.error("leader component %s failed, restarting in %.1fs: %r", name, pause, error, exc_info=error)
        if restarts is not None:
            restarts[name] = restarts.get(name, 0) + 1
        await sleep(pause)
