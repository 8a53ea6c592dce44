"""Rolling updates and rollbacks, step by step on the harness with a fake clock."""

import pytest

from manager.harness import Harness
from manager.scheduler.testing import make_node, make_service
from proto import objects_pb2 as S

US = S.UpdateStatus


def set_image(image):
    return lambda spec: setattr(spec.task.container, "image", image)


def running_images(h, service_id):
    return sorted(t.spec.container.image for t in h.tasks_of(service_id)
                  if t.status.state == S.RUNNING and t.desired_state == S.RUNNING)


def started(h, service_id, image):
    return sorted(t.slot for t in h.tasks_of(service_id) if t.spec.container.image == image)


def deployed(replicas=6, nodes=3, **kwargs):
    h = Harness([make_node(f"n{i}") for i in range(nodes)])
    h.add_service(make_service("web", replicas=replicas, image="v1", **kwargs))
    h.converge("web")
    assert running_images(h, "web") == ["v1"] * replicas
    return h


def test_parallelism_two_replaces_tasks_in_waves():
    h = deployed(parallelism=2)
    h.update_service("web", set_image("v2"))
    waves = []
    for _ in range(30):
        h.step(["web"])
        waves.append(started(h, "web", "v2"))
        in_flight = [t for t in h.tasks_of("web") if t.spec.container.image == "v2"
                     and t.status.state < S.RUNNING]
        assert len(in_flight) <= 2
    distinct = [w for i, w in enumerate(waves) if i == 0 or w != waves[i - 1]]
    assert distinct[:3] == [[1, 2], [1, 2, 3, 4], [1, 2, 3, 4, 5, 6]]
    h.converge("web", until=h.now + 60)
    assert running_images(h, "web") == ["v2"] * 6
    status = h.services["web"].update_status
    assert (status.state, status.message) == (US.COMPLETED, "update completed")
    assert not status.running_at and not status.failed_slots


def test_update_delay_spaces_the_batches():
    h = deployed(replicas=3, parallelism=1, update_delay=10)
    h.update_service("web", set_image("v2"))
    h.converge("web")                         # no clock advance: only the first slot moves
    assert started(h, "web", "v2") == [1]
    plan = h.reconcile("web")
    assert plan.wake_at == 1010.0 and not plan.create
    h.now = 1010.0
    h.converge("web")
    assert started(h, "web", "v2") == [1, 2]


def test_stop_first_holds_the_new_task_until_the_old_one_stopped():
    h = deployed(replicas=1, nodes=1)
    h.update_service("web", set_image("v2"))
    plan = h.reconcile("web")
    [new] = plan.create
    [old] = plan.update
    assert old.desired_state == S.SHUTDOWN
    assert new.desired_state == S.READY         # old one still running
    h.allocate(); h.schedule(); h.work()           # old stops; new prepared
    plan = h.reconcile("web")
    assert [(t.id, t.desired_state) for t in plan.update] == [(new.id, S.RUNNING)]


def test_start_first_starts_the_new_task_before_stopping_the_old():
    h = deployed(replicas=1, nodes=1, order="start-first")
    h.update_service("web", set_image("v2"))
    plan = h.reconcile("web")
    [new] = plan.create
    assert new.desired_state == S.RUNNING and not plan.update
    h.allocate(); h.schedule(); h.work(); h.work()
    assert running_images(h, "web") == ["v1", "v2"]
    plan = h.reconcile("web")
    assert [S.TaskState.Name(t.desired_state) for t in plan.update] == ["SHUTDOWN"]
    assert plan.update[0].spec.container.image == "v1"


def test_host_ports_force_stop_first():
    h = deployed(replicas=1, nodes=1, order="start-first", host_ports=[8080])
    h.update_service("web", set_image("v2"))
    plan = h.reconcile("web")
    assert plan.create[0].desired_state == S.READY
    assert plan.update[0].desired_state == S.SHUTDOWN


def test_scale_only_change_is_not_an_update():
    h = deployed(replicas=2)
    h.update_service("web", lambda spec: setattr(spec, "replicas", 3))
    h.converge("web")
    assert running_images(h, "web") == ["v1"] * 3
    assert h.services["web"].update_status.state == US.UNKNOWN


def test_failing_update_pauses():
    h = deployed(parallelism=1, failure_action="pause", restart="on-failure", max_attempts=2)
    h.behaviour["bad"] = "reject"          # never reaches RUNNING, so slot 1 never completes
    h.update_service("web", set_image("bad"))
    h.converge("web", until=h.now + 600)
    status = h.services["web"].update_status
    assert status.state == US.PAUSED
    assert status.message.startswith("update paused due to failure or early termination of task ")
    assert status.failed_slots == ["1"]
    assert started(h, "web", "bad") == [1, 1, 1]   # slot 1 restarted twice, no other slot touched
    assert running_images(h, "web").count("v1") == 5


def test_failing_update_rolls_back_to_the_previous_spec():
    h = deployed(parallelism=2, failure_action="rollback")
    h.behaviour["bad"] = "reject"
    h.update_service("web", set_image("bad"))
    h.converge("web", until=h.now + 600)
    service = h.services["web"]
    assert service.spec.task.container.image == "v1"
    assert not service.HasField("previous_spec")
    assert service.update_status.state == US.ROLLBACK_COMPLETED
    assert running_images(h, "web") == ["v1"] * 6
    assert set(started(h, "web", "bad")) == {1, 2}          # only the first wave was tried


def test_a_failing_rollback_pauses_instead_of_rolling_back_again():
    h = deployed(replicas=2, failure_action="rollback", restart="on-failure", max_attempts=1)
    h.behaviour["bad"] = "fail"
    h.behaviour["v1"] = "fail"                 # the old image broke meanwhile
    h.update_service("web", set_image("bad"))
    h.converge("web", until=h.now + 600)
    status = h.services["web"].update_status
    assert status.state == US.ROLLBACK_PAUSED
    assert status.message.startswith("rollback paused due to failure or early termination")


def test_continue_goes_on_past_failures():
    h = deployed(replicas=4, parallelism=1, failure_action="continue", restart="none")
    h.behaviour["bad"] = "reject"
    h.update_service("web", set_image("bad"))
    h.converge("web", until=h.now + 600)
    status = h.services["web"].update_status
    assert status.state == US.COMPLETED
    assert sorted(status.failed_slots) == ["1", "2", "3", "4"]
    assert started(h, "web", "bad") == [1, 2, 3, 4]                 # each slot tried once


@pytest.mark.parametrize("ratio, failing_slots, state", [
    (0.5, 2, US.COMPLETED),   # 2/4 is not above 0.5
    (0.5, 3, US.PAUSED),      # 3/4 is
    (0.0, 1, US.PAUSED),
])
def test_max_failure_ratio(ratio, failing_slots, state):
    h = deployed(replicas=4, parallelism=0, max_failure_ratio=ratio, restart="none")
    h.update_service("web", set_image("v2"))
    h.reconcile("web"); h.allocate(); h.schedule(); h.work(); h.work()
    new = [t for t in h.tasks_of("web") if t.spec.container.image == "v2"]
    for task in new[:failing_slots]:
        h.finish(task.id, "failed")
    h.converge("web", until=h.now + 600)
    assert h.services["web"].update_status.state == state


def test_failure_after_the_monitor_period_does_not_count():
    h = deployed(replicas=1, nodes=1, monitor=5, restart="on-failure", restart_delay=0)
    h.update_service("web", set_image("v2"))
    h.converge("web")
    [new] = [t for t in h.tasks_of("web") if t.spec.container.image == "v2"]
    assert new.status.state == S.RUNNING
    h.advance(6)
    h.finish(new.id, "failed")
    h.converge("web", until=h.now + 60)
    assert h.services["web"].update_status.state == US.COMPLETED


def test_failure_within_the_monitor_period_counts():
    h = deployed(replicas=1, nodes=1, monitor=5, restart="on-failure", restart_delay=0)
    h.update_service("web", set_image("v2"))
    h.converge("web")
    [new] = [t for t in h.tasks_of("web") if t.spec.container.image == "v2"]
    h.advance(3)
    h.finish(new.id, "failed")
    h.converge("web", until=h.now + 60)
    assert h.services["web"].update_status.state == US.PAUSED


def test_manual_rollback_uses_the_rollback_config():
    h = deployed(replicas=4, parallelism=4)
    h.update_service("web", set_image("v2"))
    h.converge("web", until=h.now + 60)
    # what the ControlAPI does on `service rollback`: swap the specs, mark a rollback
    service = h.services["web"]
    previous = S.ServiceSpec(); previous.CopyFrom(service.previous_spec)
    service.previous_spec.CopyFrom(service.spec)
    service.spec.CopyFrom(previous)
    service.spec.rollback.parallelism = 1
    service.spec_version += 1
    service.update_status.Clear()
    service.update_status.state = US.ROLLBACK_STARTED
    h.reconcile("web")
    assert started(h, "web", "v1").count(1) == 2 and set(started(h, "web", "v1")) == {1, 2, 3, 4}
    assert len([t for t in h.tasks_of("web") if t.spec.container.image == "v1"
                and t.meta.created_at == h.now]) == 1
    h.converge("web", until=h.now + 60)
    assert h.services["web"].update_status.state == US.ROLLBACK_COMPLETED
    assert running_images(h, "web") == ["v1"] * 4


def test_update_survives_a_leader_change():
    """All progress is in the store: a fresh reconcile from the same state continues the update
    (the harness keeps no memory between passes, like a new leader)."""
    h = deployed(replicas=4, parallelism=1, update_delay=5)
    h.update_service("web", set_image("v2"))
    h.converge("web")
    assert started(h, "web", "v2") == [1]
    before = h.services["web"].update_status.started_at
    h.now += 5
    h.converge("web")
    assert started(h, "web", "v2") == [1, 2]
    assert h.services["web"].update_status.started_at == before
