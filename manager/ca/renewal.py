"""Renewing a node's certificate while it runs, at a random point of its validity (SwarmKit's way).

When: each certificate gets one renewal time drawn uniformly between 50 % and 80 % of its
validity after its not-before (SwarmKit's CertLowerRotationRange / CertUpperRotationRange), so the
nodes of a cluster that joined together do not all renew in the same minute. The draw is made once
per certificate (by serial), not at every look, and a certificate already past its point renews
at once.

How often it looks: the renewal time is on the wall clock, which can jump (an NTP step, a suspended
VM, libfaketime in tests), while sleeps run on the monotonic clock. So the renewer sleeps at most
`recheck` seconds at a time and compares the wall clock again.

Failures: a failed renewal is retried with exponential backoff (1 s doubling to 5 min, ±20 %
jitter) until one succeeds or the certificate is replaced some other way (a role change).

Expiry: once the wall clock passes the certificate's not-after, the node can no longer open a TLS
session with any manager. That is logged once per certificate at ERROR, with the date and what
to do, and `expired_error()` returns the message for `shoal info` (and the leader's node status
says it too: manager/dispatcher/liveness.py).

`CertificateRenewer.run()` runs until cancelled; the clock, the sleep and the random source are
injectable for tests.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
import time
from typing import Awaitable, Callable

from common.backoff import Backoff

from .nodetls import NodeTLS

log = logging.getLogger(__name__)

LOWER_ROTATION_RANGE = 0.5   # SwarmKit's CertLowerRotationRange
UPPER_ROTATION_RANGE = 0.8   # SwarmKit's CertUpperRotationRange
RECHECK = 5.0                # seconds between looks at the wall clock
RETRY_MIN = 1.0
RETRY_MAX = 300.0


def renewal_time(not_before: float, not_after: float, draw: float) -> float:
    """When a certificate valid from `not_before` to `not_after` (epoch seconds) is renewed, for a
    uniform `draw` in [0, 1): between 50 % and 80 % of its validity after `not_before`."""
    validity = max(0.0, not_after - not_before)
    fraction = LOWER_ROTATION_RANGE + (UPPER_ROTATION_RANGE - LOWER_ROTATION_RANGE) * min(max(draw, 0.0), 1.0)
    return not_before + validity * fraction


def expired_message(not_after: float, now: float) -> str:
    """What a node whose certificate expired says, in its log and in `shoal info`."""
    when = dt.datetime.fromtimestamp(not_after, dt.timezone.utc).isoformat(timespec="seconds")
    ago = dt.timedelta(seconds=int(now - not_after))
    return (f"this node's certificate expired at {when} ({ago} ago): the managers refuse its TLS "
            "connections. It was not renewed in time (was the node down for most of its validity?); "
            "remove the node (shoal node rm) and join it again with a join token")


class CertificateRenewer:
    """Renews the node certificate held in `tls` by awaiting `renew()` when it is due.

    `renew` gets a fresh certificate from a manager and installs it (in `tls` and on disk); it
    raises on failure. See the module docstring for the schedule.
    """

    def __init__(self, tls: NodeTLS, renew: Callable[[], Awaitable[None]],
                 clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 draw: Callable[[], float] = random.random,
                 recheck: float = RECHECK) -> None:
        self._tls = tls
        self._renew = renew
        self._clock = clock
        self._sleep = sleep
        self._draw = draw
        self._recheck = recheck
        self._due: tuple[str, float] | None = None   # (serial, renewal time) of the current cert
        self._expired_logged: str | None = None
        self._requested = False    # renew at the next look, whatever the schedule (CA rotation)
        self.renewals = 0          # successful renewals (tests, metrics)
        self.last_error = ""       # why the last attempt failed ("" after a success)

    def due_at(self) -> float:
        """The renewal time of the current certificate (drawn once per certificate)."""
        serial = self._tls.serial
        if self._due is None or self._due[0] != serial:
            self._due = (serial, renewal_time(self._tls.not_before.timestamp(),
                                              self._tls.not_after.timestamp(), self._draw()))
            log.info("node certificate %s valid until %s; renewal scheduled for %s", serial,
                     self._tls.not_after.isoformat(timespec="seconds"),
                     dt.datetime.fromtimestamp(self._due[1], dt.timezone.utc).isoformat(timespec="seconds"))
        return self._due[1]

    def request(self) -> None:
        """Renew at the next look (within `recheck` seconds), not at the scheduled time: the
        cluster now signs with another root (a CA rotation)."""
        if not self._requested:
            log.info("node certificate renewal requested by the swarm (CA rotation)")
        self._requested = True

    def expired_error(self) -> str:
        """The expiry message while the current certificate is expired, else ""."""
        now = self._clock()
        not_after = self._tls.not_after.timestamp()
        return expired_message(not_after, now) if now > not_after else ""

    def _note_expiry(self) -> None:
        message = self.expired_error()
        if message and self._expired_logged != self._tls.serial:
            self._expired_logged = self._tls.serial
            log.error("%s", message)

    async def run(self) -> None:
        backoff = Backoff(RETRY_MIN, RETRY_MAX, jitter=0.2, random=self._draw)
        while True:
            self._note_expiry()
            wait = self.due_at() - self._clock()
            if wait > 0 and not self._requested:
                await self._sleep(min(wait, self._recheck))
                continue
            before = self._tls.serial
            try:
                await self._renew()
                if self._tls.serial == before:
                    raise RuntimeError("the renewal installed no new certificate")
            except asyncio.CancelledError:
                raise
            except Exception as err:  # noqa: BLE001 - every failure is retried, and said
                self.last_error = str(err) or repr(err)
                delay = backoff.next()
                log.warning("node certificate renewal failed (next try in %.0f s): %s", delay, self.last_error)
                await self._sleep(delay)
                continue
            backoff.reset()
            self._requested = False
            self.last_error = ""
            self.renewals += 1
            log.info("node certificate renewed: %s -> %s, valid until %s", before, self._tls.serial,
                     self._tls.not_after.isoformat(timespec="seconds"))
