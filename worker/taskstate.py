"""The task state machine as one pure function: ``step(task, observed container, event) -> actions``.

``TaskManager`` (task_manager.py) owns the I/O: it calls ``step`` with what it knows, carries out the
actions it gets back (each either moves the reported state forward or changes the container), and
calls ``step`` again, until ``step`` returns nothing; then it waits for a change (a new version of
the task, an event of its container, a health check result). Everything the state machine decides
is here and table-tested (tests/unit/test_taskstate.py) without a runtime.

Reported states only move forward: ACCEPTED -> PREPARING -> READY -> STARTING -> RUNNING, then one
of COMPLETE, FAILED, SHUTDOWN or REJECTED. A task held at desired state READY is prepared but not
started. With a health check a task is RUNNING only once healthy; an unhealthy container is
stopped and the task FAILED. A terminal task never keeps a running container.
"""

from __future__ import annotations

from dataclasses import dataclass

from proto import objects_pb2
from worker.events import CREATED, EXITED, RUNNING, Observed

TERMINAL = (objects_pb2.COMPLETE, objects_pb2.SHUTDOWN, objects_pb2.FAILED, objects_pb2.REJECTED,
            objects_pb2.ORPHANED)

# health: "" (not known yet), "none" (the container has no check), "starting", "healthy", "unhealthy"
# (the manager's checker sets the last three)


@dataclass(frozen=True)
class Facts:
    """The task as its manager knows it: desired state, last reported state, health."""

    desired: int
    state: int
    health: str = ""


# -- actions ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Report:
    state: int
    message: str
    err: str = ""
    exit_code: int | None = None
    health: str | None = None
    pid: int | None = None


@dataclass(frozen=True)
class Prepare:
    """Make sure the image is there and create the container (reports PREPARING, then READY)."""


@dataclass(frozen=True)
class Start:
    """Start the container (after reporting STARTING)."""


@dataclass(frozen=True)
class CheckHealth:
    """Begin running the container's health check (no-op if it has none or it runs already)."""


@dataclass(frozen=True)
class Stop:
    """Stop the container (its stop signal, the grace period, then SIGKILL)."""


@dataclass(frozen=True)
class Remove:
    """Remove the container."""


Action = Report | Prepare | Start | CheckHealth | Stop | Remove


def finished(facts: Facts, c: Observed) -> Report:
    """The report for a container that exited while the task was to run."""
    if facts.health == "unhealthy":
        return Report(objects_pb2.FAILED, "unhealthy", err="task: unhealthy container", exit_code=c.exit_code,
                      health="unhealthy")
    if c.exit_code == 0:
        return Report(objects_pb2.COMPLETE, "finished", exit_code=0)
    err = "task: OOM killed (exit 137)" if c.oom_killed else f"task: non-zero exit ({c.exit_code})"
    return Report(objects_pb2.FAILED, "failed", err=err, exit_code=c.exit_code)


def step(facts: Facts, c: Observed | None, event: str = "") -> list[Action]:
    """What to do next for a task in ``facts`` whose container is ``c`` (None: it has none).

    ``event`` is what woke the manager ("" for a plain re-evaluation); only "unhealthy" changes the
    decision (everything else is already folded into ``facts`` and ``c``).
    """
    desired, state = facts.desired, facts.state
    exited = c is not None and c.status == EXITED
    if desired >= objects_pb2.SHUTDOWN:
        if c is not None and c.status == RUNNING:
            return [Stop()]
        actions: list[Action] = []
        if state < objects_pb2.COMPLETE:
            actions.append(Report(objects_pb2.SHUTDOWN, "shutdown",
                                  exit_code=c.exit_code if c is not None and exited else None))
        if desired >= objects_pb2.REMOVE and c is not None:
            actions.append(Remove())
        return actions
    if state in TERMINAL:
        return [Stop()] if c is not None and c.status == RUNNING else []
    if state < objects_pb2.ACCEPTED:
        return [Report(objects_pb2.ACCEPTED, "accepted")]
    if c is None:
        if state >= objects_pb2.STARTING:
            return [Report(objects_pb2.FAILED, "failed", err="task: its container no longer exists")]
        return [Prepare()]
    if state < objects_pb2.READY:
        return [Report(objects_pb2.READY, "prepared")]
    if desired < objects_pb2.RUNNING:
        return []  # held at READY: prepared, not started
    if c.status == CREATED or (exited and state < objects_pb2.STARTING):
        if state < objects_pb2.STARTING:
            return [Report(objects_pb2.STARTING, "starting")]
        return [Start()]
    if exited:
        return [finished(facts, c)]
    # running
    if facts.health == "unhealthy" or event == "unhealthy":
        return [Stop()]
    if facts.health == "":
        return [CheckHealth()]  # learn whether it has a check (and start it)
    if facts.health == "none" and state < objects_pb2.RUNNING:
        return [Report(objects_pb2.RUNNING, "started", pid=c.pid)]
    if facts.health == "healthy" and state < objects_pb2.RUNNING:
        return [Report(objects_pb2.RUNNING, "started", health="healthy", pid=c.pid)]
    return []
