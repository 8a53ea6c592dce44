"""Heartbeat timings the agent (worker/agent.py) and the dispatcher (manager/dispatcher) share."""

from __future__ import annotations

# The dispatcher marks a node Down after this many heartbeat periods without one.
GRACE_PERIODS = 3


def call_timeout(period: float) -> float:
    """The deadline an agent gives each Heartbeat call: one period, at least a second. The
    dispatcher reads from what is left of it how long the call waited before it was handled."""
    return max(period, 1.0)
