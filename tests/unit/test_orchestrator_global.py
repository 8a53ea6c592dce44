"""Global services and global jobs on the harness: one task per eligible node."""

from manager.harness import Harness
from manager.scheduler.testing import make_node, make_service
from proto import objects_pb2 as S


def cluster():
    return Harness([make_node("m1", role="manager"), make_node("w1"), make_node("w2")])


def test_one_task_per_eligible_node():
    h = cluster()
    h.add_service(make_service("agent", mode="global"))
    h.converge("agent")
    assert h.running_by_node("agent") == {"m1": 1, "w1": 1, "w2": 1}
    assert not h.reconcile("agent")


def test_constraints_select_nodes_and_label_changes_apply_immediately():
    h = cluster()
    h.add_service(make_service("agent", mode="global", constraints=["node.role==worker"]))
    h.converge("agent")
    assert h.running_by_node("agent") == {"w1": 1, "w2": 1}
    h.services["agent"].spec.task.placement.constraints[:] = ["node.labels.gpu==yes"]
    h.set_node("w1", labels={"gpu": "yes"})
    h.converge("agent")
    assert h.running_by_node("agent") == {"w1": 1}


def test_follows_nodes_joining_draining_and_leaving():
    h = cluster()
    h.add_service(make_service("agent", mode="global"))
    h.converge("agent")
    h.nodes["w3"] = make_node("w3")
    h.set_node("w1", availability="drain")
    h.converge("agent")
    assert h.running_by_node("agent") == {"m1": 1, "w2": 1, "w3": 1}
    del h.nodes["w2"]
    h.set_node("w1", availability="active")
    h.converge("agent")
    assert h.running_by_node("agent") == {"m1": 1, "w1": 1, "w3": 1}
    assert all(t.node_id != "w2" for t in h.tasks_of("agent"))


def test_down_node_loses_its_task_and_gets_one_back():
    h = cluster()
    h.add_service(make_service("agent", mode="global"))
    h.converge("agent")
    h.set_node("w2", state="down")
    h.converge("agent")
    [stale] = [t for t in h.tasks_of("agent") if t.node_id == "w2"]
    assert stale.desired_state == S.SHUTDOWN
    h.set_node("w2", state="ready")
    h.converge("agent")
    assert h.running_by_node("agent") == {"m1": 1, "w1": 1, "w2": 1}


def test_paused_node_keeps_its_task_but_gets_no_new_one():
    h = cluster()
    h.add_service(make_service("agent", mode="global"))
    h.converge("agent")
    h.set_node("w1", availability="pause")
    h.nodes["w9"] = make_node("w9", availability="pause")
    h.converge("agent")
    assert h.running_by_node("agent") == {"m1": 1, "w1": 1, "w2": 1}


def test_failed_global_task_restarts_on_its_node():
    h = cluster()
    h.add_service(make_service("agent", mode="global", restart="on-failure", restart_delay=0))
    h.converge("agent")
    [task] = [t for t in h.tasks_of("agent") if t.node_id == "w1"]
    h.finish(task.id, "failed")
    h.converge("agent")
    assert h.running_by_node("agent") == {"m1": 1, "w1": 1, "w2": 1}
    assert len([t for t in h.tasks_of("agent") if t.node_id == "w1"]) == 2


def test_global_job_runs_once_per_node_including_late_joiners():
    h = cluster()
    h.behaviour["job"] = "exit0"
    h.add_service(make_service("setup", mode="global-job", image="job"))
    h.converge("setup")
    assert sorted(t.node_id for t in h.tasks_of("setup")) == ["m1", "w1", "w2"]
    assert all(t.status.state == S.COMPLETE for t in h.tasks_of("setup"))
    h.nodes["w3"] = make_node("w3")
    h.converge("setup")
    assert sorted(t.node_id for t in h.tasks_of("setup")) == ["m1", "w1", "w2", "w3"]
    h.advance(3600)
    assert not h.reconcile("setup")


def test_global_rolling_update_one_node_at_a_time():
    h = cluster()
    h.add_service(make_service("agent", mode="global", parallelism=1))
    h.converge("agent")
    h.update_service("agent", lambda spec: setattr(spec.task.container, "image", "agent:2"))
    h.reconcile("agent")
    new = [t for t in h.tasks_of("agent") if t.spec.container.image == "agent:2"]
    assert [t.node_id for t in new] == ["m1"]
    h.converge("agent", until=h.now + 100)
    images = {t.node_id: t.spec.container.image for t in h.tasks_of("agent") if t.desired_state == S.RUNNING}
    assert images == {"m1": "agent:2", "w1": "agent:2", "w2": "agent:2"}
    assert h.services["agent"].update_status.state == S.UpdateStatus.COMPLETED
