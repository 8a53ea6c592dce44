"""Restart policy, start gate and task history: decide_restart / start_gate / prune_history."""

import pytest

from manager.orchestrator import OLD_TASK_TIMEOUT, decide_restart, prune_history, start_gate
from manager.scheduler.testing import make_node, make_service, make_task

NOW = 1000.0


def ended(state="failed", *, restart=None, delay=0.0, max_attempts=0, window=0.0, restarts=(),
          ended_at=NOW):
    service = make_service(restart=restart, restart_delay=delay, max_attempts=max_attempts, window=window)
    task = make_task(service, slot=1, node="n1", state=state, timestamp=ended_at)
    task.restarts.extend(restarts)
    return task


@pytest.mark.parametrize("task, job, restart, reason", [
    (ended("failed", restart="none"), False, False, "task failed; restart condition is none"),
    (ended("failed", restart="on-failure"), False, True, "task failed; restart condition on_failure"),
    (ended("rejected", restart="on-failure"), False, True, "task rejected; restart condition on_failure"),
    (ended("complete", restart="on-failure"), False, False, "task completed successfully"),
    (ended("complete", restart="any"), False, True, "task complete; restart condition any"),
    (ended("complete", restart="any"), True, False, "task completed successfully"),   # jobs: any = on-failure
    (ended("failed", restart="any"), True, True, "task failed; restart condition any"),
    (ended("complete"), False, True, "task complete; restart condition any"),           # default policy
])
def test_restart_condition(task, job, restart, reason):
    decision = decide_restart(task, NOW, job=job)
    assert (decision.restart, decision.reason) == (restart, reason)


@pytest.mark.parametrize("task, not_before", [
    (ended(restart="any", delay=0), 0.0),
    (ended(restart="any", delay=3), NOW + 3),
    (ended(restart="any", delay=3, ended_at=NOW - 1), NOW + 2),      # counted from when it ended
    (ended(restart="any", delay=3, ended_at=NOW - 10), 0.0),         # already waited long enough
    (ended(), NOW + 5),                                               # Docker's default 5 s
])
def test_restart_delay(task, not_before):
    assert decide_restart(task, NOW).not_before == not_before


@pytest.mark.parametrize("max_attempts, window, restarts, restart, retry_at, carried", [
    (0, 0, [1.0, 2.0, 3.0], True, None, ()),                  # unlimited: no history kept
    (3, 0, [900.0, 950.0], True, None, (900.0, 950.0, NOW)),
    (3, 0, [900.0, 950.0, 990.0], False, None, ()),           # used up, for good
    (1, 0, [], True, None, (NOW,)),
    (2, 60, [900.0, 950.0], True, None, (950.0, NOW)),         # 900 is outside the window
    (2, 60, [950.0, 990.0], False, 1010.0, ()),               # look again when 950 leaves it
    (2, 60, [800.0, 950.0, 990.0], False, 1010.0, ()),
])
def test_max_attempts_and_window(max_attempts, window, restarts, restart, retry_at, carried):
    task = ended(restart="any", max_attempts=max_attempts, window=window, restarts=restarts)
    decision = decide_restart(task, NOW)
    assert decision.restart is restart
    assert decision.retry_at == retry_at
    if restart:
        assert decision.restarts == carried
    else:
        assert f"reached the maximum of {max_attempts}" in decision.reason


def held(restart_at=0.0, created=NOW):
    task = make_task(make_service(), slot=1, node="n1", state="ready", desired="ready", created_at=created)
    task.restart_at = restart_at
    return task


@pytest.mark.parametrize("restart_at, old_state, old_node_state, created, now, ok, wake", [
    (0.0, None, "ready", NOW, NOW, True, None),
    (NOW + 5, None, "ready", NOW, NOW, False, NOW + 5),
    (NOW + 5, None, "ready", NOW, NOW + 5, True, None),
    (0.0, "running", "ready", NOW, NOW, False, NOW + OLD_TASK_TIMEOUT),   # old task still stopping
    (0.0, "shutdown", "ready", NOW, NOW, True, None),                      # old task stopped
    (0.0, "running", "down", NOW, NOW, True, None),                        # its node is down
    (0.0, "running", "ready", NOW - OLD_TASK_TIMEOUT, NOW, True, None),    # waited long enough
])
def test_start_gate(restart_at, old_state, old_node_state, created, now, ok, wake):
    task = held(restart_at, created)
    slot = [task]
    if old_state:
        slot.append(make_task(make_service(), slot=1, node="n1", state=old_state, desired="shutdown"))
    nodes = {"n1": make_node("n1", state=old_node_state)}
    assert start_gate(task, slot, nodes, now) == (ok, wake)


def test_prune_history_keeps_the_newest_and_live_tasks():
    service = make_service()
    nodes = {"n1": make_node("n1")}
    history = [make_task(service, task_id=f"h{i}", slot=1, node="n1", state="failed",
                         desired="shutdown", created_at=float(i)) for i in range(6)]
    stopping = make_task(service, task_id="stopping", slot=1, node="n1", state="running",
                         desired="shutdown", created_at=6.0)
    current = make_task(service, task_id="current", slot=1, node="n1", created_at=7.0)
    doomed = prune_history(history + [stopping, current], 5, nodes)
    assert [t.id for t in doomed] == ["h0", "h1", "h2"]


@pytest.mark.parametrize("retention, expected", [(5, []), (2, []), (1, ["h0"]), (0, ["h0"])])
def test_prune_history_never_deletes_the_newest(retention, expected):
    service = make_service()
    tasks = [make_task(service, task_id=f"h{i}", slot=1, node="n1", state="failed",
                       desired="shutdown", created_at=float(i)) for i in range(2)]
    assert [t.id for t in prune_history(tasks, retention, {})] == expected
