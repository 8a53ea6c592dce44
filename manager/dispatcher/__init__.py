"""The dispatcher: the leader's end of every node's session (sessions, heartbeats and liveness,
assignments, task status reports)."""

from manager.dispatcher.dispatcher import Dispatcher, DEFAULT_HEARTBEAT_PERIOD, GRACE_MULTIPLIER

__all__ = ["Dispatcher", "DEFAULT_HEARTBEAT_PERIOD", "GRACE_MULTIPLIER"]
