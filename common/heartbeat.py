"""Heartbeat timings the agent (worker/agent.py) and the dispatcher (manager/dispatcher) share."""

from __future__ import annotations

# The dispatcher marks a node Down after this many heartbeat periods without one.
GRACE_PERIODS = 3


def call_timeout(period: float) -> float:
    """The deadline an agent gives each Heartbeat call: the leader's whole grace (GRACE_PERIODS
    periods, at least a second), so a busy leader's late answer still arrives, and the dispatcher
    reads from what is left of it how long the call waited before it was handled."""
    return max(GRACE_PERIODS * period, 1.0)
