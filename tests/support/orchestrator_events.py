"""Random event sequences for the orchestrator's property tests (on manager.harness.Harness)."""

from hypothesis import strategies as st

from proto import objects_pb2 as S

NODES = [f"n{i}" for i in range(4)]

event_st = st.one_of(
    st.tuples(st.just("scale"), st.integers(0, 12)),
    st.tuples(st.just("availability"), st.sampled_from(NODES), st.sampled_from(["active", "pause", "drain"])),
    st.tuples(st.just("state"), st.sampled_from(NODES), st.sampled_from(["ready", "down"])),
    st.tuples(st.just("fail"), st.integers(0, 20)),
    st.tuples(st.just("image"), st.sampled_from(["v1", "v2", "v3"])),
)


def apply_event(h, service_id, event):
    kind = event[0]
    if kind == "scale":
        h.services[service_id].spec.replicas = event[1]
    elif kind == "availability":
        h.set_node(event[1], availability=event[2])
    elif kind == "state":
        h.set_node(event[1], state=event[2])
    elif kind == "fail":
        running = [t for t in h.tasks_of(service_id) if t.status.state == S.RUNNING]
        if running:
            h.finish(running[event[1] % len(running)].id, "failed")
    elif kind == "image":
        h.update_service(service_id, lambda spec: setattr(spec.task.container, "image", event[1]))
