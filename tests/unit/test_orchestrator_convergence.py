"""Convergence properties of the orchestrators (hypothesis over event sequences, on the harness)."""

from hypothesis import given, settings, strategies as st

from manager.harness import Harness
from manager.scheduler.testing import make_node, make_service
from proto import objects_pb2 as S
from tests.support.orchestrator_events import NODES, apply_event, event_st


def eligible(h):
    return {n.id for n in h.nodes.values()
            if n.status.state == S.NodeStatus.READY and n.spec.availability == S.NodeSpec.ACTIVE}


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 8), st.lists(event_st, max_size=8), st.sampled_from(["stop-first", "start-first"]))
def test_replicated_service_converges(replicas, events, order):
    h = Harness([make_node(n) for n in NODES], retention=3)
    h.add_service(make_service("web", replicas=replicas, image="v1", restart="any", restart_delay=1,
                               parallelism=2, order=order, monitor=1, failure_action="continue"))
    for event in events:
        apply_event(h, "web", event)
        h.step(["web"])
    for n in NODES:                      # let every node come back so the service can converge
        h.set_node(n, state="ready")
    if not eligible(h):
        h.set_node("n0", availability="active")
    h.converge("web", until=h.now + 3600, max_steps=500)
    service = h.services["web"]
    tasks = h.tasks_of("web")
    wanted = [t for t in tasks if t.desired_state <= S.RUNNING]
    assert h.running("web") == service.spec.replicas == len(wanted)
    assert sorted(t.slot for t in wanted) == list(range(1, service.spec.replicas + 1))
    assert all(t.node_id in eligible(h) or h.nodes[t.node_id].spec.availability == S.NodeSpec.PAUSE
               for t in wanted)
    assert all(t.spec.container.image == service.spec.task.container.image for t in wanted)
    assert service.update_status.state in (S.UpdateStatus.UNKNOWN, S.UpdateStatus.COMPLETED)
    per_slot = {}
    for t in tasks:
        per_slot[t.slot] = per_slot.get(t.slot, 0) + 1
    assert all(count <= 3 for count in per_slot.values())     # history retention holds
    h.services["web"].spec.replicas = 0
    h.converge("web", until=h.now + 3600, max_steps=500)
    assert h.tasks_of("web") == []                            # scale to 0 leaves nothing


@settings(max_examples=40, deadline=None)
@given(st.lists(event_st.filter(lambda e: e[0] != "scale"), max_size=8))
def test_global_service_follows_eligible_nodes(events):
    h = Harness([make_node(n) for n in NODES])
    h.add_service(make_service("agent", mode="global", image="v1", restart="any", restart_delay=1,
                               parallelism=0, monitor=1, failure_action="continue"))
    for event in events:
        apply_event(h, "agent", event)
        h.step(["agent"])
    h.converge("agent", until=h.now + 3600, max_steps=500)
    running = h.running_by_node("agent")
    paused = {n.id for n in h.nodes.values() if n.spec.availability == S.NodeSpec.PAUSE
              and n.status.state == S.NodeStatus.READY}
    assert set(running) - paused == eligible(h)
    assert all(count == 1 for count in running.values())
