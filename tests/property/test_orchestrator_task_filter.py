"""The orchestrator ignores task updates that cannot change its decisions (component.py's
``task_change_matters``): a runnable task moving between NEW and RUNNING on the same node and
spec while no rolling update runs. The property behind the filter: after such changes to the
tasks of a settled service, reconcile still plans nothing. (Without the filter every status
report of a 50,000-task service reconciled all of it; bench/scale.py.)"""

from hypothesis import given, settings, strategies as st

from manager.harness import Harness
from manager.orchestrator.component import task_change_matters
from manager.orchestrator.reconcile import reconcile
from manager.orchestrator.update import ACTIVE_STATES
from manager.scheduler.testing import make_node, make_service
from proto import objects_pb2 as S
from tests.support.orchestrator_events import NODES, apply_event, event_st

change_st = st.tuples(st.sampled_from(list(S.TaskState.values())),                  # status.state
                     st.sampled_from([None, S.READY, S.RUNNING, S.SHUTDOWN]),           # desired_state
                     st.sampled_from([None, ""] + NODES))                               # node_id


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 8), st.lists(event_st, max_size=6), st.sampled_from(["replicated", "global"]),
       st.lists(change_st, min_size=1, max_size=12))
def test_ignored_task_changes_leave_a_settled_service_settled(replicas, events, mode, changes):
    h = Harness([make_node(n) for n in NODES], retention=3)
    h.add_service(make_service("web", replicas=replicas, image="v1", restart="any", restart_delay=1,
                               parallelism=2, monitor=1, failure_action="continue", mode=mode))
    for event in events:
        apply_event(h, "web", event)
        h.step(["web"])
    h.converge("web", until=h.now + 3600, max_steps=500)
    service = h.services["web"]
    nodes = list(h.nodes.values())
    tasks = h.tasks_of("web")
    if service.update_status.state in ACTIVE_STATES or reconcile(service, tasks, nodes, h.now, retention=3):
        return      # not settled: every change matters then
    changed = []
    for i, task in enumerate(tasks):
        new = S.Task()
        new.CopyFrom(task)
        state, desired, node = changes[i % len(changes)]
        new.status.state = state
        if desired is not None:
            new.desired_state = desired
        if node is not None:
            new.node_id = node
        if not task_change_matters(task, new, service):
            changed.append(new)
        else:
            changed.append(task)
    plan = reconcile(service, changed, nodes, h.now, retention=3)
    assert not plan, plan.decisions


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 8), st.lists(event_st, max_size=6), st.lists(st.sampled_from(NODES), min_size=1, max_size=12))
def test_ignored_placements_leave_a_settled_service_settled(replicas, events, placements):
    """The scheduler's placement (no node -> a node) is ignored only when the node can keep the
    task: after the ignored placements of a settled service's pending tasks, reconcile plans
    nothing; a placement on a down, drained or removed node is never ignored."""
    h = Harness([make_node(n) for n in NODES], retention=3)
    h.add_service(make_service("web", replicas=replicas, image="v1", restart="any", restart_delay=1,
                               parallelism=2, monitor=1, failure_action="continue"))
    for event in events:
        apply_event(h, "web", event)
        h.step(["web"])
    h.converge("web", until=h.now + 3600, max_steps=500)
    service = h.services["web"]
    nodes = list(h.nodes.values())
    pending = []
    for task in h.tasks_of("web"):
        new = S.Task()
        new.CopyFrom(task)
        if task.status.state <= S.RUNNING and task.desired_state <= S.RUNNING:
            new.node_id = ""
            new.status.state = S.PENDING
        pending.append(new)
    if service.update_status.state in ACTIVE_STATES or reconcile(service, pending, nodes, h.now, retention=3):
        return      # not settled with its tasks waiting to be placed
    placed = []
    for i, task in enumerate(pending):
        new = S.Task()
        new.CopyFrom(task)
        if not task.node_id:
            new.node_id = placements[i % len(placements)]
            new.status.state = S.ASSIGNED
        if task_change_matters(task, new, service, h.nodes.get):
            placed.append(task)
        else:
            assert h.nodes[new.node_id].status.state != S.NodeStatus.DOWN
            placed.append(new)
    plan = reconcile(service, placed, nodes, h.now, retention=3)
    assert not plan, plan.decisions


def test_what_matters():
    service = make_service("web", replicas=1)
    task = S.Task(id="t", service_id=service.id, node_id="n1", desired_state=S.RUNNING, spec_version=1)
    task.status.state = S.ASSIGNED

    def changed(**fields):
        new = S.Task()
        new.CopyFrom(task)
        for name, value in fields.items():
            if name == "state":
                new.status.state = value
            else:
                setattr(new, name, value)
        return task_change_matters(task, new, service)

    assert not changed(state=S.RUNNING)
    assert not changed(state=S.PREPARING)
    assert changed(state=S.FAILED) and changed(state=S.COMPLETE) and changed(state=S.SHUTDOWN)
    assert changed(desired_state=S.SHUTDOWN)
    assert changed(node_id="n2") and changed(spec_version=2)
    assert task_change_matters(task, task, None)            # its service is gone
    unplaced = S.Task()
    unplaced.CopyFrom(task)
    unplaced.node_id = ""
    unplaced.status.state = S.PENDING
    nodes = {"n1": make_node("n1"), "n2": make_node("n2")}
    nodes["n2"].status.state = S.NodeStatus.DOWN
    assert not task_change_matters(unplaced, task, service, nodes.get)      # placed on a node that fits
    task.node_id = "n2"
    assert task_change_matters(unplaced, task, service, nodes.get)          # on a node now down
    task.node_id = "n3"
    assert task_change_matters(unplaced, task, service, nodes.get)          # on a node now gone
    assert task_change_matters(unplaced, task, service)                     # nodes unknown: it matters
    task.node_id = "n1"
    service.update_status.state = S.UpdateStatus.UPDATING
    assert changed(state=S.RUNNING)                         # a rolling update waits for tasks to run
