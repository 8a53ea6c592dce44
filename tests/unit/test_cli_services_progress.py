"""ProgressTracker: what the convergence display shows and decides for one snapshot."""

from __future__ import annotations

import pytest

from proto import objects_pb2 as pb
from shoal.cli.service_progress import (ConvergeError, PlainRenderer, ProgressTracker, Unavailable, progress_bar,
                                        up_to_date, wait_for_service)


def make_service(mode=pb.ServiceSpec.REPLICATED, replicas=3, spec_version=1):
    service = pb.Service(id="svc1", spec_version=spec_version)
    service.spec.annotations.name = "web"
    service.spec.mode = mode
    service.spec.replicas = replicas
    service.spec.task.container.image = "busybox:1.36"
    return service


def make_task(task_id, service, slot=0, node_id="n1", state=pb.RUNNING, desired=pb.RUNNING, created=1.0,
              spec_version=None, err=""):
    task = pb.Task(id=task_id, service_id=service.id, slot=slot, node_id=node_id, desired_state=desired,
                   spec_version=service.spec_version if spec_version is None else spec_version)
    task.spec.CopyFrom(service.spec.task)
    task.status.state = state
    task.status.err = err
    task.meta.created_at = created
    task.annotations.name = f"web.{slot}" if slot else f"web.{node_id}"
    return task


def make_node(node_id, state=pb.NodeStatus.READY, availability=pb.NodeSpec.ACTIVE, role=pb.WORKER):
    node = pb.Node(id=node_id, role=role)
    node.status.state = state
    node.spec.availability = availability
    return node


NODES = [make_node("n1"), make_node("n2")]


def test_progress_bar_is_dockers():
    assert progress_bar(9, 9) == "[" + "=" * 50 + ">]"
    assert progress_bar(3, 9) == "[" + "=" * 16 + ">" + " " * 34 + "]"


def test_replicated_counts_running_slots_and_ignores_tasks_on_their_way_out():
    web = make_service()
    tasks = [make_task("a", web, 1), make_task("b", web, 2, state=pb.STARTING),
             make_task("c", web, 3, node_id="n9"),                            # its node is down: skipped
             make_task("d", web, 4, desired=pb.REMOVE)]                       # scaled away
    nodes = NODES + [make_node("n9", state=pb.NodeStatus.DOWN)]
    progress = ProgressTracker(web).observe(web, tasks, nodes)
    assert not progress.converged
    lines = dict(progress.lines)
    assert lines["overall progress"] == "1 out of 3 tasks"
    assert lines["1/3"].startswith("running ") and lines["2/3"].startswith("starting ") and lines["3/3"] == ""
    assert "4/3" not in lines


def test_start_first_slots_show_the_task_least_far_along():
    web = make_service(replicas=1)
    tasks = [make_task("old", web, 1), make_task("new", web, 1, state=pb.PREPARING, created=2.0)]
    progress = ProgressTracker(web).observe(web, tasks, NODES)
    assert dict(progress.lines)["1/1"].startswith("preparing") and not progress.converged


def test_only_tasks_of_the_current_spec_count():
    web = make_service(replicas=1, spec_version=2)
    web.spec.task.container.image = "busybox:1.37"
    old = make_task("old", make_service(replicas=1), 1, spec_version=1)
    assert not ProgressTracker(web).observe(web, [old], NODES).converged
    # After a rollback, a task carrying an older version number but the current content counts.
    same = make_task("same", web, 1, spec_version=1)
    assert up_to_date(same, web) and ProgressTracker(web).observe(web, [same], NODES).converged


def test_global_services_converge_when_every_eligible_node_runs_one():
    agent = make_service(mode=pb.ServiceSpec.GLOBAL, replicas=0)
    agent.spec.task.placement.constraints.append("node.role==worker")
    nodes = [make_node("n1"), make_node("n2"), make_node("n3", availability=pb.NodeSpec.DRAIN),
             make_node("m1", role=pb.MANAGER)]
    tracker = ProgressTracker(agent)
    progress = tracker.observe(agent, [make_task("a", agent, node_id="n1")], nodes)
    assert dict(progress.lines)["overall progress"] == "1 out of 2 tasks" and not progress.converged
    progress = tracker.observe(agent, [make_task("a", agent, node_id="n1"), make_task("b", agent, node_id="n2")], nodes)
    assert progress.converged and {k for k, _ in progress.lines} == {"overall progress", "n1", "n2"}


def test_jobs_converge_when_every_slot_completed():
    job = make_service(mode=pb.ServiceSpec.REPLICATED_JOB, replicas=2)
    tracker = ProgressTracker(job)
    tasks = [make_task("a", job, 1, state=pb.COMPLETE, desired=pb.COMPLETE), make_task("b", job, 2)]
    progress = tracker.observe(job, tasks, NODES)
    assert dict(progress.lines)["job progress"] == "1 out of 2 complete" and not progress.converged
    tasks[1].status.state = pb.COMPLETE
    assert tracker.observe(job, tasks, NODES).converged


@pytest.mark.parametrize("condition, failures, gives_up", [
    (None, 2, False), (None, 3, True), (pb.RestartPolicy.NONE, 1, True)])
def test_a_slot_that_keeps_failing_is_an_error(condition, failures, gives_up):
    web = make_service(replicas=1)
    if condition is not None:
        web.spec.task.restart.condition = condition
    tasks = [make_task(f"f{i}", web, 1, state=pb.FAILED, desired=pb.SHUTDOWN, created=i, err="exit 1")
             for i in range(failures)]
    progress = ProgressTracker(web).observe(web, tasks, NODES)
    assert (progress.error is not None) is gives_up
    if gives_up:
        assert progress.error.startswith("task web.1 failed") and progress.error.endswith(": exit 1")
    else:
        assert dict(progress.lines)["1/1"] == "exit 1"


def test_failures_from_before_the_command_are_ignored():
    web = make_service(replicas=1)
    tasks = [make_task(f"f{i}", web, 1, state=pb.FAILED, desired=pb.SHUTDOWN, created=i) for i in range(5)]
    tracker = ProgressTracker(web, ignore={t.id for t in tasks})
    assert tracker.observe(web, tasks, NODES).error is None


def test_update_states_that_arrive_while_waiting():
    web = make_service(replicas=1)
    paused = make_service(replicas=1)
    paused.update_status.state = pb.UpdateStatus.PAUSED
    paused.update_status.message = "update paused due to failure"
    assert ProgressTracker(web).observe(paused, [], NODES).error == "service update paused: update paused due to failure"
    # A paused state that was there before the command is not news.
    assert ProgressTracker(paused).observe(paused, [], NODES).error is None


def test_wait_retries_while_the_cluster_is_unavailable_and_stops_at_the_timeout():
    web = make_service(replicas=1)
    answers = iter([Unavailable("leader changed"), (web, [make_task("a", web, 1)], NODES)])

    def fetch():
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    shown = []
    wait_for_service(fetch, ProgressTracker(web), PlainRenderer(shown.append), timeout=5, verify=0, poll=0)
    assert shown[-1] == "verify: Service converged"

    clock = iter(range(0, 100, 10))
    with pytest.raises(ConvergeError, match="did not converge within 15s"):
        wait_for_service(lambda: (web, [], NODES), ProgressTracker(web), PlainRenderer(shown.append),
                         timeout=15, verify=0, poll=0, clock=lambda: next(clock), sleep=lambda s: None)


def test_verify_waits_for_the_tasks_to_stay_up():
    web = make_service(replicas=1)
    snapshots = iter([[make_task("a", web, 1)], [make_task("a", web, 1, state=pb.FAILED, desired=pb.SHUTDOWN)],
                      [make_task("b", web, 1, created=2)], [make_task("b", web, 1, created=2)]])
    now = iter(range(100))
    shown = []
    wait_for_service(lambda: (web, next(snapshots), NODES), ProgressTracker(web), PlainRenderer(shown.append),
                     timeout=50, verify=1, poll=0, clock=lambda: next(now), sleep=lambda s: None)
    assert shown[0] == "1/1: running   " + progress_bar(9, 9)
    assert "verify: Waiting 1 seconds to verify that tasks are stable..." in shown
    assert shown[-1] == "verify: Service converged"
