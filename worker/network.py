"""Keeps shoal-runtimed's data plane at the network state the dispatcher sends.

The dispatcher sends this node's whole ``NetworkState`` (JSON bytes in
``AssignmentsMessage.network_state``) whenever it changes. ``NetworkAgent.apply`` pushes it to the
runtime with ``network_sync`` — skipping a state the runtime already accepted — and a background
loop pushes the latest state again every ``resync_period`` seconds (sooner after a failure), so
a restarted or drifted runtime converges back to what the store says. Failures are logged, never
raised: a bad sync must not end the session; the next state or the next resync tries again.

Task managers call ``wait_for_networks`` before creating a container with overlay attachments:
the runtime refuses one whose networks no synced state names yet.

Use from the worker's event loop only.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable

from agent_runtime.api import NetworkState

log = logging.getLogger(__name__)

RESYNC_PERIOD = 30.0
RETRY_DELAY = 2.0


class NetworkAgent:
    """Owns the node's network sync; ``close()`` stops its resync loop (the data plane stays up)."""

    def __init__(self, runtime, resync_period: float = RESYNC_PERIOD, retry_delay: float = RETRY_DELAY):
        self._runtime = runtime
        self._resync_period = resync_period
        self._retry_delay = retry_delay
        self._wanted = b""                     # the latest state received from the dispatcher
        self._synced = b""                     # the latest state the runtime accepted
        self.synced_networks: frozenset[str] = frozenset()  # network ids of that state
        self._lock = asyncio.Lock()            # one network_sync at a time, in arrival order
        self._synced_event = asyncio.Event()   # set (and replaced) after every accepted sync
        self._resync: asyncio.Task | None = None

    @property
    def in_sync(self) -> bool:
        """Whether the runtime accepted the latest state received."""
        return bool(self._wanted) and self._wanted == self._synced

    async def apply(self, state_json: bytes, force: bool = False) -> bool:
        """Make ``state_json`` the desired state and push it, unless the runtime already accepted
        exactly these bytes (``force`` pushes anyway). Empty bytes mean "unchanged": nothing is
        done. Returns whether the runtime holds this state now; never raises on runtime errors."""
        if not state_json:
            return self.in_sync
        self._wanted = state_json
        self._start_resync()
        async with self._lock:
            if state_json == self._synced and not force:
                return True
            if state_json != self._wanted:  # a newer state arrived while we waited; it will be pushed
                return False
            return await self._sync(state_json)

    async def wait_for_networks(self, network_ids: Iterable[str], timeout: float) -> bool:
        """Wait until a synced state names every one of ``network_ids`` (True), or ``timeout``
        seconds pass (False)."""
        wanted = set(network_ids)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not wanted <= self.synced_networks:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            event = self._synced_event
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except asyncio.TimeoutError:
                return wanted <= self.synced_networks
        return True

    async def close(self) -> None:
        """Stop the resync loop and wait for it."""
        task, self._resync = self._resync, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    # -- internals -----------------------------------------------------------------------------
    async def _sync(self, data: bytes) -> bool:
        """Push ``data`` now (call under the lock); log and return False on any failure."""
        try:
            state = NetworkState.from_json(json.loads(data))
        except Exception as err:  # a malformed document must not end the session
            log.error("network state from the dispatcher is unusable, keeping the previous one: %s", err)
            return False
        try:
            report = await self._runtime.network_sync(state)
        except Exception as err:  # runtime errors, refused states, a runtime that is down
            log.error("network sync of %d networks, %d peers, %d services failed: %s", len(state.networks),
                      len(state.peers), len(state.services), err)
            self._synced = b""  # what the runtime holds is unknown: push the next state whatever it is
            return False
        for problem in (report or {}).get("Errors") or ():
            log.warning("network sync: %s", problem)
        log.debug("network synced: %d networks, %d peers, %d services", len(state.networks), len(state.peers),
                  len(state.services))
        self._synced = data
        self.synced_networks = frozenset(n.id for n in state.networks)
        event, self._synced_event = self._synced_event, asyncio.Event()
        event.set()
        return True

    def _start_resync(self) -> None:
        if self._resync is None or self._resync.done():
            self._resync = asyncio.create_task(self._resync_loop(), name="network-resync")

    async def _resync_loop(self) -> None:
        """Push the latest state again every resync period, and soon after a failed push."""
        while True:
            await asyncio.sleep(self._resync_period if self.in_sync else self._retry_delay)
            async with self._lock:
                if self._wanted:
                    await self._sync(self._wanted)
