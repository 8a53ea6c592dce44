"""reconcile_replicated and replicated jobs: single decisions, then timelines on the harness."""

import itertools

import pytest

from manager.orchestrator import WrongServiceMode, reconcile, reconcile_replicated
from manager.harness import Harness
from manager.scheduler.testing import make_node, make_service, make_task
from proto import objects_pb2

NOW = 1000.0
S = objects_pb2


def counter(start: int = 0):
    numbers = itertools.count(start + 1)
    return lambda: f"new-{next(numbers)}"


def states(plan):
    return {t.id: S.TaskState.Name(t.desired_state) for t in plan.update}


# ---- single reconcile passes -----------------------------------------------------------------

def test_creates_missing_slots_with_the_service_spec():
    service = make_service("web", replicas=3, reserve_mem="64M", spec_version=4)
    existing = make_task(service, slot=2, node="n1")
    plan = reconcile_replicated(service, [existing], [make_node("n1")], NOW, ids=counter())
    assert [(t.id, t.slot) for t in plan.create] == [("new-1", 1), ("new-2", 3)]
    for task in plan.create:
        assert task.service_id == "web"
        assert task.spec == service.spec.task
        assert task.spec_version == 4
        assert task.status.state == S.NEW
        assert task.desired_state == S.RUNNING
        assert task.meta.created_at == NOW
        assert task.annotations.name == f"web.{task.slot}"
    assert not plan.update and not plan.delete and plan.wake_at is None


def test_converged_service_gives_an_empty_plan():
    service = make_service(replicas=2)
    tasks = [make_task(service, slot=i, node="n1") for i in (1, 2)]
    plan = reconcile_replicated(service, tasks, [make_node("n1")], NOW, ids=counter())
    assert not plan


def test_scale_down_removes_highest_slots():
    service = make_service(replicas=2)
    tasks = [make_task(service, task_id=f"s{i}", slot=i, node="n1") for i in (1, 2, 3, 4)]
    tasks.append(make_task(service, task_id="s5", slot=5, state="pending"))    # never placed
    tasks.append(make_task(service, task_id="h3", slot=3, node="n1", state="failed", desired="shutdown"))
    plan = reconcile_replicated(service, tasks, [make_node("n1")], NOW, ids=counter())
    assert states(plan) == {"s3": "REMOVE", "s4": "REMOVE"}
    assert sorted(plan.delete) == ["h3", "s5"]
    assert not plan.create


def test_removed_tasks_are_deleted_once_stopped():
    service = make_service(replicas=1)
    tasks = [make_task(service, task_id="a", slot=1, node="n1"),
             make_task(service, task_id="b", slot=2, node="n1", state="shutdown", desired="remove"),
             make_task(service, task_id="c", slot=3, node="n1", state="running", desired="remove"),
             make_task(service, task_id="d", slot=4, node="gone", state="running", desired="remove")]
    plan = reconcile_replicated(service, tasks, [make_node("n1")], NOW, ids=counter())
    assert sorted(plan.delete) == ["b", "d"]
    assert not plan.create and not plan.update


@pytest.mark.parametrize("node_kwargs, labels, moved, reason", [
    (dict(state="down"), None, True, "node n1 is down"),
    (dict(availability="drain"), None, True, "node n1 was drained"),
    (None, None, True, "node n1 was removed"),
    (dict(labels={"zone": "a"}), {"zone": "b"}, True, "node n1 no longer satisfies the placement constraints"),
    (dict(availability="pause"), None, False, ""),
    (dict(state="unknown"), None, False, ""),        # after a leader change: wait for heartbeats
    (dict(state="disconnected"), None, False, ""),
])
def test_tasks_leave_nodes_that_cannot_keep_them(node_kwargs, labels, moved, reason):
    service = make_service(replicas=1, constraints=["node.labels.zone==a"])
    task = make_task(service, task_id="old", slot=1, node="n1")
    nodes = []
    if node_kwargs is not None:
        node = make_node("n1", **{"labels": {"zone": "a"}, **node_kwargs})
        if labels is not None:
            node.spec.annotations.labels.clear()
            node.spec.annotations.labels.update(labels)
        nodes.append(node)
    plan = reconcile_replicated(service, [task], nodes, NOW, ids=counter())
    if not moved:
        assert not plan
        return
    assert states(plan) == {"old": "SHUTDOWN"}
    [replacement] = plan.create
    assert replacement.slot == 1
    assert replacement.restart_at == 0.0           # moving is not a restart: no delay
    assert any(reason in d for d in plan.decisions)


def test_failed_task_restarts_after_the_delay():
    service = make_service(replicas=1, restart="on-failure", restart_delay=10)
    failed = make_task(service, task_id="f", slot=1, node="n1", state="failed", timestamp=NOW)
    nodes = [make_node("n1")]
    plan = reconcile_replicated(service, [failed], nodes, NOW, ids=counter())
    assert states(plan) == {"f": "SHUTDOWN"}
    [new] = plan.create
    assert (new.desired_state, new.restart_at, plan.wake_at) == (S.READY, NOW + 10, NOW + 10)
    # before the delay the held task stays held; after it, it may start
    failed = plan.update[0]
    early = reconcile_replicated(service, [failed, new], nodes, NOW + 5, ids=counter())
    assert not early.create and not early.update and early.wake_at == NOW + 10
    late = reconcile_replicated(service, [failed, new], nodes, NOW + 10, ids=counter())
    assert states(late) == {new.id: "RUNNING"}


def test_dead_slot_stays_dead():
    service = make_service(replicas=2, restart="none")
    tasks = [make_task(service, slot=1, node="n1"),
             make_task(service, task_id="x", slot=2, node="n1", state="failed", desired="shutdown")]
    plan = reconcile_replicated(service, tasks, [make_node("n1")], NOW, ids=counter())
    assert not plan.create and not plan.update
    assert any("restart condition is none" in d for d in plan.decisions)


def test_wrong_mode_is_refused():
    with pytest.raises(WrongServiceMode, match="reconcile_replicated: service g is in global mode"):
        reconcile_replicated(make_service("g", mode="global"), [], [], NOW)


# ---- timelines ------------------------------------------------------------------------------

def three_nodes():
    return [make_node(f"n{i}") for i in range(3)]


def test_create_scale_up_scale_down_and_to_zero():
    h = Harness(three_nodes())
    h.add_service(make_service("web", replicas=6))
    h.converge("web")
    assert h.running_by_node("web") == {"n0": 2, "n1": 2, "n2": 2}
    h.services["web"].spec.replicas = 20
    h.converge("web")
    assert h.running("web") == 20
    assert sorted(t.slot for t in h.tasks_of("web")) == list(range(1, 21))
    h.services["web"].spec.replicas = 2
    h.converge("web")
    assert h.running("web") == 2
    assert sorted(t.slot for t in h.tasks_of("web")) == [1, 2]
    h.services["web"].spec.replicas = 0
    h.converge("web")
    assert h.tasks_of("web") == []


def test_drain_moves_tasks_away_and_active_takes_new_ones():
    h = Harness(three_nodes())
    h.add_service(make_service("web", replicas=6))
    h.converge("web")
    h.set_node("n0", availability="drain")
    h.converge("web")
    assert h.running_by_node("web") == {"n1": 3, "n2": 3}
    h.set_node("n0", availability="active")
    h.services["web"].spec.replicas = 9
    h.converge("web")
    assert h.running_by_node("web") == {"n0": 3, "n1": 3, "n2": 3}


def test_node_down_replaces_its_tasks_elsewhere_and_orphans_are_cleaned_when_it_returns():
    h = Harness(three_nodes())
    h.add_service(make_service("web", replicas=6))
    h.converge("web")
    h.set_node("n2", state="down")
    h.converge("web")
    assert h.running_by_node("web") == {"n0": 3, "n1": 3}
    stale = [t for t in h.tasks_of("web") if t.node_id == "n2"]
    assert stale and all(t.desired_state == S.SHUTDOWN for t in stale)
    h.set_node("n2", state="ready")     # the worker comes back and stops what it should not run
    h.converge("web")
    assert all(t.status.state == S.SHUTDOWN for t in h.tasks_of("web") if t.node_id == "n2")
    assert h.running("web") == 6


def test_pause_keeps_tasks_but_takes_no_new_ones():
    h = Harness(three_nodes())
    h.add_service(make_service("web", replicas=3))
    h.converge("web")
    h.set_node("n0", availability="pause")
    h.services["web"].spec.replicas = 6
    h.converge("web")
    assert h.running_by_node("web") == {"n0": 1, "n1": 2, "n2": 3} or \
        h.running_by_node("web") == {"n0": 1, "n1": 3, "n2": 2}


def test_crash_loop_is_slowed_by_the_delay_and_bounded_by_max_attempts():
    h = Harness([make_node("n1")], retention=3)
    h.behaviour["crash"] = "fail"
    h.add_service(make_service("web", image="crash", restart="on-failure", restart_delay=5,
                               max_attempts=3))
    h.converge("web", until=h.now + 3600)
    tasks = h.tasks_of("web")
    assert len(tasks) == 3                       # history pruned to the retention limit
    assert all(t.status.state == S.FAILED for t in tasks)
    newest = max(tasks, key=lambda t: t.meta.created_at)
    assert len(newest.restarts) == 3
    assert newest.restarts[1] - newest.restarts[0] >= 5   # the restart delay spaced them
    # nothing more happens, however long we wait
    h.advance(10_000)
    assert not h.reconcile("web")


def test_restart_window_lets_the_slot_try_again_later():
    h = Harness([make_node("n1")])
    h.behaviour["crash"] = "fail"
    h.add_service(make_service("web", image="crash", restart="any", restart_delay=0,
                               max_attempts=2, window=60))
    h.converge("web")
    created = sum(len(p.create) for p in h.plans)
    assert created == 3                           # the first run and two restarts
    plan = h.reconcile("web")
    assert not plan.create and plan.wake_at == 1060.0
    h.now = plan.wake_at
    assert len(h.reconcile("web").create) == 1


def test_completed_replicated_task_restarts_with_condition_any():
    h = Harness([make_node("n1")])
    h.behaviour["once"] = "exit0"
    h.add_service(make_service("web", image="once", restart="any", restart_delay=0))
    h.step(); h.step(); h.step(); h.step()
    assert sum(1 for t in h.tasks_of("web") if t.status.state == S.COMPLETE) >= 1
    assert any(t.desired_state <= S.RUNNING for t in h.tasks_of("web"))


def test_replicated_job_runs_to_completion_and_is_not_restarted():
    h = Harness(three_nodes())
    h.behaviour["job"] = "exit0"
    h.add_service(make_service("batch", mode="replicated-job", replicas=4, image="job"))
    h.converge("batch")
    tasks = h.tasks_of("batch")
    assert len(tasks) == 4
    assert all(t.status.state == S.COMPLETE and t.desired_state == S.COMPLETE for t in tasks)
    h.advance(3600)
    assert not h.reconcile("batch")


def test_replicated_job_retries_failures_and_a_new_spec_is_a_new_run():
    h = Harness(three_nodes())
    h.behaviour["job"] = "exit0"
    h.add_service(make_service("batch", mode="replicated-job", replicas=2, image="job",
                               restart="any", restart_delay=0))
    h.reconcile("batch"); h.allocate(); h.schedule(); h.work(); h.work()
    first = h.tasks_of("batch")[0]
    h.finish(first.id, "failed")
    h.converge("batch")
    done = [t for t in h.tasks_of("batch") if t.status.state == S.COMPLETE]
    assert sorted(t.slot for t in done) == [1, 2]
    h.update_service("batch", lambda spec: None)       # any update re-runs the job
    h.converge("batch")
    current = [t for t in h.tasks_of("batch") if t.spec_version == 2]
    assert len(current) == 2 and all(t.status.state == S.COMPLETE for t in current)


def test_service_removed_leaves_nothing():
    h = Harness(three_nodes())
    h.add_service(make_service("web", replicas=4))
    h.converge("web")
    del h.services["web"]
    for _ in range(3):
        h.reconcile("web"); h.work()
    assert h.tasks_of("web") == []


def test_reconcile_dispatches_on_mode():
    service = make_service(mode="global")
    plan = reconcile(service, [], [make_node("n1")], NOW, ids=counter())
    assert [t.node_id for t in plan.create] == ["n1"]


def test_missing_slots_are_created_in_bounded_steps():
    """Issue 11: the orchestrator built every missing task in one plan (10^12 replicas: the leader
    grew to 11.7 GB). A plan creates at most as many as the service has slots (at least
    MIN_NEW_TASKS_PER_PASS, at most MAX_NEW_TASKS_PER_PASS); the next pass goes on."""
    from common.limits import MAX_NEW_TASKS_PER_PASS, MIN_NEW_TASKS_PER_PASS
    service = make_service("web", replicas=MIN_NEW_TASKS_PER_PASS * 4 + 5)
    first = reconcile_replicated(service, [], [make_node("n1")], NOW, ids=counter())
    assert [t.slot for t in first.create] == list(range(1, MIN_NEW_TASKS_PER_PASS + 1))
    second = reconcile_replicated(service, list(first.create), [make_node("n1")], NOW, ids=counter())
    assert [t.slot for t in second.create] == list(range(MIN_NEW_TASKS_PER_PASS + 1, 2 * MIN_NEW_TASKS_PER_PASS + 1))
    third = reconcile_replicated(service, list(first.create) + list(second.create), [make_node("n1")], NOW,
                                 ids=counter())
    assert len(third.create) == 2 * MIN_NEW_TASKS_PER_PASS, "as many as there are already"
    assert MAX_NEW_TASKS_PER_PASS <= 10 * MIN_NEW_TASKS_PER_PASS


def test_fifty_thousand_replicas_are_built_in_a_dozen_passes_not_fifty():
    """Each pass reads every task of the service: a constant step of 1,000 built 50,000 replicas
    in 50 passes reading 1.25 million tasks (half of the leader's samples in bench/scale.py at
    1,000 nodes). Growing the step with the service: about a dozen passes, no plan over the cap."""
    from common.limits import MAX_NEW_TASKS_PER_PASS
    service = make_service("web", replicas=50_000)
    tasks: list = []
    passes = read = 0
    while len(tasks) < 50_000:
        read += len(tasks)
        plan = reconcile_replicated(service, tasks, [make_node("n1")], NOW, ids=counter(len(tasks)))
        assert 0 < len(plan.create) <= MAX_NEW_TASKS_PER_PASS
        tasks += plan.create
        passes += 1
    assert passes <= 12 and read <= 300_000, (passes, read)
    assert sorted(t.slot for t in tasks) == list(range(1, 50_001))


def test_a_stored_service_over_the_replica_limit_is_held_at_the_limit(monkeypatch):
    """A service written before the ControlAPI refused absurd counts (it is in the Raft log) is
    reconciled as if it asked for MAX_REPLICAS: bounded, and no more than that ever."""
    from common.limits import MIN_NEW_TASKS_PER_PASS
    service = make_service("web", replicas=10**12)
    plan = reconcile_replicated(service, [], [make_node("n1")], NOW, ids=counter())
    assert len(plan.create) == MIN_NEW_TASKS_PER_PASS
    monkeypatch.setattr("manager.orchestrator.replicated.MAX_REPLICAS", 30)
    full = [make_task(service, slot=i, node="n1") for i in range(1, 31)]
    assert not reconcile_replicated(service, full, [make_node("n1")], NOW, ids=counter())


def test_replicated_job_runs_at_most_max_concurrent_tasks_at_once():
    """Docker's --max-concurrent: 5 completions, 2 at a time; a slot starts when one completes."""
    h = Harness(three_nodes())
    service = make_service("batch", mode="replicated-job", replicas=5, image="job")   # runs until finished
    service.spec.max_concurrent = 2
    h.add_service(service)
    h.converge("batch")
    assert sorted(t.slot for t in h.tasks_of("batch")) == [1, 2]
    running_peak = 2
    for _ in range(5):
        active = [t for t in h.tasks_of("batch") if t.status.state != S.COMPLETE]
        assert len(active) <= 2
        if not active:
            break
        h.finish(active[0].id, "complete")
        h.converge("batch")
        running_peak = max(running_peak, sum(1 for t in h.tasks_of("batch") if t.status.state != S.COMPLETE))
    tasks = h.tasks_of("batch")
    assert sorted(t.slot for t in tasks) == [1, 2, 3, 4, 5]
    assert all(t.status.state == S.COMPLETE for t in tasks) and running_peak == 2
