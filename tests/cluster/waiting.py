"""Polling helper for cluster tests: what a user does when they re-run a command until it shows
what they expect. Exceptions count as "not yet" (the CLI may fail while the swarm re-elects)."""

from __future__ import annotations

import time


def wait_for(predicate, timeout: float, interval: float = 0.25, what: str = "condition"):
    """Return the first truthy value of ``predicate()``; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except Exception as err:
            last = err
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")
