"""The task state machine, table-tested: (task facts, observed container, event) -> actions."""

from __future__ import annotations

import pytest

from proto import objects_pb2 as pb
from worker.events import CREATED, EXITED, RUNNING, Observed
from worker.taskstate import CheckHealth, Facts, Prepare, Remove, Report, Start, Stop, step

C = "c" * 64


def obs(status: str, code: int = 0, oom: bool = False, pid: int = 0) -> Observed:
    return Observed(container_id=C, task_id="t", status=status, exit_code=code, oom_killed=oom, pid=pid)


def kinds(actions) -> list:
    return [(type(a).__name__, a.state) if isinstance(a, Report) else type(a).__name__ for a in actions]


TABLE = [
    # (desired, reported, health, container, event) -> actions
    ("new task is accepted", pb.RUNNING, pb.NEW, "", None, "", [("Report", pb.ACCEPTED)]),
    ("accepted, no container: prepare", pb.RUNNING, pb.ACCEPTED, "", None, "", ["Prepare"]),
    ("preparing, no container: prepare", pb.RUNNING, pb.PREPARING, "", None, "", ["Prepare"]),
    ("created: ready", pb.RUNNING, pb.PREPARING, "", obs(CREATED), "", [("Report", pb.READY)]),
    ("held at READY: nothing", pb.READY, pb.READY, "", obs(CREATED), "", []),
    ("ready to run: starting", pb.RUNNING, pb.READY, "", obs(CREATED), "", [("Report", pb.STARTING)]),
    ("starting: start", pb.RUNNING, pb.STARTING, "", obs(CREATED), "", ["Start"]),
    ("running, health unknown: look", pb.RUNNING, pb.STARTING, "", obs(RUNNING, pid=7), "", ["CheckHealth"]),
    ("running, no check: RUNNING", pb.RUNNING, pb.STARTING, "none", obs(RUNNING, pid=7), "", [("Report", pb.RUNNING)]),
    ("running, check starting: wait", pb.RUNNING, pb.STARTING, "starting", obs(RUNNING), "", []),
    ("running and healthy: RUNNING", pb.RUNNING, pb.STARTING, "healthy", obs(RUNNING), "", [("Report", pb.RUNNING)]),
    ("running, reported: nothing", pb.RUNNING, pb.RUNNING, "none", obs(RUNNING), "", []),
    ("unhealthy: stop", pb.RUNNING, pb.RUNNING, "unhealthy", obs(RUNNING), "", ["Stop"]),
    ("unhealthy event: stop", pb.RUNNING, pb.RUNNING, "healthy", obs(RUNNING), "unhealthy", ["Stop"]),
    ("exit 0: COMPLETE", pb.RUNNING, pb.RUNNING, "none", obs(EXITED, 0), "", [("Report", pb.COMPLETE)]),
    ("exit 1: FAILED", pb.RUNNING, pb.RUNNING, "none", obs(EXITED, 1), "", [("Report", pb.FAILED)]),
    ("exit while starting: FAILED", pb.RUNNING, pb.STARTING, "", obs(EXITED, 2), "", [("Report", pb.FAILED)]),
    ("exited after unhealthy: FAILED", pb.RUNNING, pb.RUNNING, "unhealthy", obs(EXITED, 143), "",
     [("Report", pb.FAILED)]),
    ("an adopted exited container not started by us: start", pb.RUNNING, pb.READY, "", obs(EXITED), "",
     [("Report", pb.STARTING)]),
    ("container vanished after start: FAILED", pb.RUNNING, pb.RUNNING, "none", None, "", [("Report", pb.FAILED)]),
    ("shutdown, running: stop", pb.SHUTDOWN, pb.RUNNING, "none", obs(RUNNING), "", ["Stop"]),
    ("shutdown, stopped: SHUTDOWN", pb.SHUTDOWN, pb.RUNNING, "none", obs(EXITED, 143), "", [("Report", pb.SHUTDOWN)]),
    ("shutdown before any container: SHUTDOWN", pb.SHUTDOWN, pb.ACCEPTED, "", None, "", [("Report", pb.SHUTDOWN)]),
    ("shutdown after COMPLETE: nothing", pb.SHUTDOWN, pb.COMPLETE, "", obs(EXITED), "", []),
    ("remove: SHUTDOWN and remove", pb.REMOVE, pb.RUNNING, "none", obs(EXITED), "", [("Report", pb.SHUTDOWN), "Remove"]),
    ("remove, failed before: remove", pb.REMOVE, pb.FAILED, "", obs(EXITED), "", ["Remove"]),
    ("remove, gone: nothing", pb.REMOVE, pb.FAILED, "", None, "", []),
    ("terminal: nothing", pb.RUNNING, pb.FAILED, "", obs(EXITED), "", []),
    ("terminal with a late running container: stop", pb.RUNNING, pb.FAILED, "", obs(RUNNING), "", ["Stop"]),
    ("terminal, no container: nothing", pb.RUNNING, pb.REJECTED, "", None, "", []),
]


@pytest.mark.parametrize("name,desired,state,health,container,event,expected", TABLE, ids=[r[0] for r in TABLE])
def test_step(name, desired, state, health, container, event, expected):
    assert kinds(step(Facts(desired, state, health), container, event)) == expected


def test_failure_messages_say_why():
    [oom] = step(Facts(pb.RUNNING, pb.RUNNING, "none"), obs(EXITED, 137, oom=True))
    assert oom.err == "task: OOM killed (exit 137)" and oom.exit_code == 137
    [bad] = step(Facts(pb.RUNNING, pb.RUNNING, "none"), obs(EXITED, 3))
    assert bad.err == "task: non-zero exit (3)"
    [sick] = step(Facts(pb.RUNNING, pb.RUNNING, "unhealthy"), obs(EXITED, 143))
    assert sick.err == "task: unhealthy container" and sick.health == "unhealthy"
    [running] = step(Facts(pb.RUNNING, pb.STARTING, "none"), obs(RUNNING, pid=42))
    assert running.pid == 42


def test_every_report_moves_the_state_forward():
    """A manager applies reports then steps again: a report that does not raise the state would loop."""
    states = [pb.NEW, pb.ACCEPTED, pb.PREPARING, pb.READY, pb.STARTING, pb.RUNNING, pb.COMPLETE, pb.FAILED]
    containers = [None, obs(CREATED), obs(RUNNING), obs(EXITED, 0), obs(EXITED, 1)]
    for desired in (pb.READY, pb.RUNNING, pb.SHUTDOWN, pb.REMOVE):
        for state in states:
            for health in ("", "none", "starting", "healthy", "unhealthy"):
                for c in containers:
                    for action in step(Facts(desired, state, health), c):
                        if isinstance(action, Report):
                            assert action.state > state, (desired, state, health, c, action)
                        assert isinstance(action, (Report, Prepare, Start, CheckHealth, Stop, Remove))
