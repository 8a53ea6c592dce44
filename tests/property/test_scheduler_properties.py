"""Properties of schedule() over generated clusters (hypothesis)."""

import random
from collections import Counter, defaultdict

from hypothesis import given, settings, strategies as st

from manager.scheduler import Strategy, schedule
from manager.scheduler.testing import make_node, make_service, make_task, pending
from proto import objects_pb2

NOW = 10_000.0
GIB = 1 << 30

node_st = st.fixed_dictionaries({
    "cpus": st.sampled_from([0, 0.5, 1, 2, 4]),
    "mem": st.sampled_from([0, GIB // 2, GIB, 2 * GIB, 4 * GIB]),
    "state": st.sampled_from(["ready", "ready", "ready", "down", "unknown"]),
    "availability": st.sampled_from(["active", "active", "active", "pause", "drain"]),
    "zone": st.sampled_from(["a", "b", None]),
})
service_st = st.fixed_dictionaries({
    "reserve_cpus": st.sampled_from([0, 0.25, 0.5, 1]),
    "reserve_mem": st.sampled_from([0, GIB // 4, GIB // 2, GIB]),
    "constraints": st.sampled_from([[], ["node.labels.zone==a"], ["node.labels.zone!=b"]]),
    "spread": st.sampled_from([[], ["node.labels.zone"]]),
    "max_replicas": st.sampled_from([0, 0, 1, 2]),
    "host_ports": st.sampled_from([[], [], [8080]]),
    "count": st.integers(0, 12),
})


def build(node_specs, service_specs, existing_fraction):
    nodes = []
    for i, spec in enumerate(node_specs):
        labels = {"zone": spec["zone"]} if spec["zone"] else {}
        nodes.append(make_node(f"n{i:02d}", cpus=spec["cpus"], mem=spec["mem"], labels=labels,
                               state=spec["state"], availability=spec["availability"]))
    services, work = [], []
    for j, spec in enumerate(service_specs):
        spec = dict(spec)
        count = spec.pop("count")
        service = make_service(f"s{j}", **spec)
        services.append(service)
        work += pending(service, count)
    # Existing running tasks that fit: give each node a share of its memory to another service.
    filler = make_service("filler")
    existing = []
    for node in nodes:
        mem = int(node.description.resources.memory_bytes * existing_fraction)
        if mem:
            existing.append(make_task(filler, node=node.id, reserve_mem=mem, state="running"))
    return nodes, existing, work


@settings(max_examples=150, deadline=None)
@given(st.lists(node_st, min_size=0, max_size=8), st.lists(service_st, min_size=1, max_size=3),
       st.sampled_from([0.0, 0.25, 0.5, 1.0]), st.sampled_from(list(Strategy)))
def test_schedule_invariants(node_specs, service_specs, existing_fraction, strategy):
    nodes, existing, work = build(node_specs, service_specs, existing_fraction)
    plan = schedule(nodes, existing, work, NOW, strategy=strategy)
    by_id = {n.id: n for n in nodes}
    tasks = {t.id: t for t in work}

    # every pending task is decided exactly once, and every undecided one is explained
    assigned_ids = [task_id for task_id, _ in plan.assignments]
    assert len(assigned_ids) == len(set(assigned_ids))
    assert set(assigned_ids) | set(plan.unplaced) == set(tasks)
    assert not set(assigned_ids) & set(plan.unplaced)
    assert all(m.startswith("no suitable node") for m in plan.unplaced.values())

    # never on a node that is not READY and ACTIVE
    for _, node_id in plan.assignments:
        node = by_id[node_id]
        assert node.status.state == objects_pb2.NodeStatus.READY
        assert node.spec.availability == objects_pb2.NodeSpec.ACTIVE

    # never oversubscribes reservations
    cpu, mem = defaultdict(int), defaultdict(int)
    for t in existing:
        cpu[t.node_id] += t.spec.resources.reservations.nano_cpus
        mem[t.node_id] += t.spec.resources.reservations.memory_bytes
    ports = defaultdict(list)
    per_service = Counter()
    for task_id, node_id in plan.assignments:
        task = tasks[task_id]
        cpu[node_id] += task.spec.resources.reservations.nano_cpus
        mem[node_id] += task.spec.resources.reservations.memory_bytes
        ports[node_id] += [p.published_port for p in task.endpoint.spec.ports]
        per_service[(task.service_id, node_id)] += 1
        max_replicas = task.spec.placement.max_replicas
        assert not max_replicas or per_service[(task.service_id, node_id)] <= max_replicas
        for constraint in task.spec.placement.constraints:
            zone = by_id[node_id].spec.annotations.labels.get("zone")
            assert (zone == "a") if constraint == "node.labels.zone==a" else (zone != "b")
    for node_id in cpu:
        assert cpu[node_id] <= by_id[node_id].description.resources.nano_cpus
        assert mem[node_id] <= by_id[node_id].description.resources.memory_bytes
    for node_id, published in ports.items():
        assert len(published) == len(set(published)), "host port bound twice on one node"

    # deterministic whatever the input order
    rng = random.Random(len(work))
    shuffled_nodes, shuffled_work = nodes[:], work[:]
    rng.shuffle(shuffled_nodes)
    rng.shuffle(shuffled_work)
    assert schedule(shuffled_nodes, existing, shuffled_work, NOW, strategy=strategy) == plan


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 12), st.integers(0, 60), st.lists(st.sampled_from(["ready", "down"]), max_size=4))
def test_spread_over_equal_nodes_differs_by_at_most_one(eligible, replicas, ineligible_states):
    nodes = [make_node(f"e{i:02d}") for i in range(eligible)]
    nodes += [make_node(f"x{i}", state=s, availability="drain") for i, s in enumerate(ineligible_states)]
    service = make_service(replicas=replicas)
    plan = schedule(nodes, [], pending(service, replicas), NOW)
    counts = Counter(node_id for _, node_id in plan.assignments)
    assert not plan.unplaced
    assert all(node_id.startswith("e") for node_id in counts)
    per_node = [counts.get(n.id, 0) for n in nodes if n.id.startswith("e")]
    assert max(per_node) - min(per_node) <= 1


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 5), min_size=2, max_size=6), st.integers(0, 30))
def test_spread_evens_out_existing_imbalance(existing_counts, replicas):
    """Placing n more tasks never leaves a node with 2+ more of the service than another node
    that received some of the new ones (water-filling)."""
    service = make_service()
    nodes = [make_node(f"n{i}") for i in range(len(existing_counts))]
    existing = [make_task(service, node=n.id) for n, c in zip(nodes, existing_counts) for _ in range(c)]
    plan = schedule(nodes, existing, pending(service, replicas), NOW)
    final = Counter({n.id: c for n, c in zip(nodes, existing_counts)})
    received = Counter(node_id for _, node_id in plan.assignments)
    final.update(received)
    for node_id in received:
        assert final[node_id] <= min(final[n.id] for n in nodes) + 1
