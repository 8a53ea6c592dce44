"""schedule(): placement decisions over builders, table-driven where the shape allows."""

import random
from collections import Counter

import pytest

from manager.scheduler import SchedulePlan, Strategy, planned_task_changes, schedule
from manager.scheduler.testing import make_node, make_service, make_task, pending
from proto import objects_pb2

NOW = 1000.0


def placed_counts(plan: SchedulePlan) -> Counter:
    return Counter(node_id for _, node_id in plan.assignments)


def test_spreads_evenly_over_equal_nodes():
    nodes = [make_node(f"n{i}") for i in range(3)]
    service = make_service(replicas=6)
    plan = schedule(nodes, [], pending(service, 6), NOW)
    assert placed_counts(plan) == {"n0": 2, "n1": 2, "n2": 2}
    assert not plan.unplaced


@pytest.mark.parametrize("existing, expected_first", [
    # fewest tasks of this service wins...
    ({"n0": ("svc", 1), "n1": ("svc", 0)}, "n1"),
    # ...before fewest tasks overall
    ({"n0": ("other", 3), "n1": ("svc", 1)}, "n0"),
    # with equal service counts, fewer tasks overall wins
    ({"n0": ("other", 2), "n1": ("other", 1)}, "n1"),
])
def test_spread_order(existing, expected_first):
    service = make_service("svc")
    other = make_service("other")
    nodes = [make_node("n0"), make_node("n1")]
    tasks = []
    for node_id, (service_id, count) in existing.items():
        owner = service if service_id == "svc" else other
        tasks += [make_task(owner, node=node_id) for _ in range(count)]
    plan = schedule(nodes, tasks, pending(service, 1), NOW)
    assert plan.assignments[0][1] == expected_first


@pytest.mark.parametrize("node_kwargs", [
    dict(state="down"), dict(state="unknown"), dict(state="disconnected"),
    dict(availability="pause"), dict(availability="drain"),
])
def test_never_places_on_unavailable_nodes(node_kwargs):
    nodes = [make_node("good"), make_node("bad", **node_kwargs)]
    plan = schedule(nodes, [], pending(make_service(), 4), NOW)
    assert placed_counts(plan) == {"good": 4}


def test_accounts_for_its_own_earlier_placements():
    nodes = [make_node("small", mem="1.5G"), make_node("big", mem="3G")]
    service = make_service(reserve_mem="1G")
    plan = schedule(nodes, [], pending(service, 5), NOW)
    assert placed_counts(plan) == {"small": 1, "big": 3}
    assert len(plan.unplaced) == 1
    assert set(plan.unplaced.values()) == {"no suitable node (insufficient resources on 2 nodes)"}


def test_explains_every_unplaceable_task():
    nodes = [make_node("n0", mem="1G"), make_node("n1", mem="1G"),
             make_node("n2", mem="8G", labels={"zone": "west"}), make_node("n3", state="down")]
    service = make_service(reserve_mem="2G", constraints=["node.labels.zone!=west"])
    tasks = pending(service, 3)
    plan = schedule(nodes, [], tasks, NOW)
    assert plan.assignments == []
    assert plan.unplaced == {t.id: "no suitable node (1 node not ready; scheduling constraints "
                                   "not satisfied on 1 node; insufficient resources on 2 nodes)"
                             for t in tasks}


def test_no_nodes_at_all():
    tasks = pending(make_service(), 2)
    plan = schedule([], [], tasks, NOW)
    assert plan.unplaced == {t.id: "no suitable node" for t in tasks}


def test_invalid_constraint_is_reported_on_the_task():
    service = make_service(constraints=["node.colour==red"])
    [task] = pending(service, 1)
    plan = schedule([make_node()], [], [task], NOW)
    assert "invalid constraint 'node.colour==red'" in plan.unplaced[task.id]


def test_spread_preference_balances_zones_first():
    nodes = [make_node("a1", labels={"zone": "a"}), make_node("a2", labels={"zone": "a"}),
             make_node("b1", labels={"zone": "b"})]
    service = make_service(spread=["node.labels.zone"])
    plan = schedule(nodes, [], pending(service, 4), NOW)
    assert placed_counts(plan) == {"a1": 1, "a2": 1, "b1": 2}


def test_spread_preference_counts_existing_tasks_per_zone():
    nodes = [make_node("a1", labels={"zone": "a"}), make_node("b1", labels={"zone": "b"}),
             make_node("b2", labels={"zone": "b"})]
    service = make_service(spread=["node.labels.zone"])
    existing = [make_task(service, node="a1"), make_task(service, node="a1")]
    plan = schedule(nodes, existing, pending(service, 2), NOW)
    assert placed_counts(plan) == {"b1": 1, "b2": 1}


def test_nodes_without_the_label_form_their_own_branch():
    nodes = [make_node("a1", labels={"zone": "a"}), make_node("x1"), make_node("x2")]
    service = make_service(spread=["node.labels.zone"])
    plan = schedule(nodes, [], pending(service, 4), NOW)
    assert placed_counts(plan) == {"a1": 2, "x1": 1, "x2": 1}


def test_nested_preferences():
    nodes = [make_node(f"{dc}{rack}{i}", labels={"dc": dc, "rack": rack})
             for dc, rack, i in [("d1", "r1", 0), ("d1", "r1", 1), ("d1", "r2", 0), ("d2", "r1", 0)]]
    service = make_service(spread=["node.labels.dc", "node.labels.rack"])
    plan = schedule(nodes, [], pending(service, 4), NOW)
    by_dc = Counter(n[:2] for n in placed_counts(plan).elements())
    by_rack_in_d1 = Counter(n[:4] for n in placed_counts(plan).elements() if n.startswith("d1"))
    assert by_dc == {"d1": 2, "d2": 2}
    assert by_rack_in_d1 == {"d1r1": 1, "d1r2": 1}


def test_full_zone_overflows_to_the_next():
    nodes = [make_node("a1", mem="1G", labels={"zone": "a"}), make_node("b1", mem="8G", labels={"zone": "b"})]
    service = make_service(spread=["node.labels.zone"], reserve_mem="1G")
    plan = schedule(nodes, [], pending(service, 4), NOW)
    assert placed_counts(plan) == {"a1": 1, "b1": 3}


def test_binpack_fills_the_fullest_node_first():
    nodes = [make_node("n0", mem="4G"), make_node("n1", mem="4G")]
    other = make_service("other", reserve_mem="1G")
    existing = [make_task(other, node="n1")]
    service = make_service(reserve_mem="1G")
    plan = schedule(nodes, existing, pending(service, 4), NOW, strategy=Strategy.BINPACK)
    assert placed_counts(plan) == {"n1": 3, "n0": 1}


def test_host_ports_keep_tasks_apart():
    nodes = [make_node(f"n{i}") for i in range(3)]
    service = make_service(host_ports=[8080])
    tasks = pending(service, 4)
    plan = schedule(nodes, [], tasks, NOW)
    assert placed_counts(plan) == {"n0": 1, "n1": 1, "n2": 1}
    assert plan.unplaced == {tasks[3].id: "no suitable node (host-mode port already in use on 3 nodes)"}


def test_max_replicas_per_node():
    nodes = [make_node("n0"), make_node("n1")]
    service = make_service(max_replicas=2)
    tasks = pending(service, 5)
    plan = schedule(nodes, [], tasks, NOW)
    assert placed_counts(plan) == {"n0": 2, "n1": 2}
    assert plan.unplaced[tasks[4].id] == "no suitable node (max replicas per node limit exceeded on 2 nodes)"


def test_node_where_the_service_keeps_failing_sorts_last():
    nodes = [make_node("flaky"), make_node("steady")]
    service = make_service()
    other = make_service()
    failed = [make_task(service, node="flaky", state="failed", timestamp=NOW - 60) for _ in range(5)]
    # steady already carries more tasks, yet flaky is avoided
    busy = [make_task(other, node="steady") for _ in range(3)]
    plan = schedule(nodes, failed + busy, pending(service, 1), NOW)
    assert plan.assignments[0][1] == "steady"
    # ...but failures older than five minutes are forgiven
    plan = schedule(nodes, failed + busy, pending(service, 1), NOW + 400)
    assert plan.assignments[0][1] == "flaky"


@pytest.mark.parametrize("node_kwargs, message", [
    (dict(), None),
    (dict(availability="drain"), "no suitable node (1 node not available for new tasks): node availability is drain"),
    (dict(state="down"), "no suitable node (1 node not ready): node is down"),
    (dict(mem="512M"), "no suitable node (insufficient resources on 1 node): insufficient memory: "
                       "reserves 1GiB, 512MiB available"),
])
def test_preassigned_tasks_are_checked_against_their_node_only(node_kwargs, message):
    nodes = [make_node("g1", **node_kwargs), make_node("other")]
    service = make_service(mode="global", reserve_mem="1G")
    [task] = pending(service, 1, node="g1")
    plan = schedule(nodes, [], [task], NOW)
    if message is None:
        assert plan.assignments == [(task.id, "g1")]
    else:
        assert plan.unplaced == {task.id: message}


def test_pending_task_no_longer_wanted_is_shut_down_not_placed():
    service = make_service()
    [wanted, unwanted] = pending(service, 2)
    unwanted.desired_state = objects_pb2.SHUTDOWN
    plan = schedule([make_node("n0")], [], [wanted, unwanted], NOW)
    assert plan.assignments == [(wanted.id, "n0")]
    assert plan.shutdown == [unwanted.id]


def test_only_pending_tasks_are_considered():
    service = make_service()
    task = make_task(service, slot=1, state="new")
    assert not schedule([make_node()], [], [task], NOW)


def test_same_input_in_any_order_gives_the_same_plan():
    nodes = [make_node(f"n{i}", labels={"zone": "ab"[i % 2]}) for i in range(7)]
    services = [make_service(reserve_mem="512M", spread=["node.labels.zone"]), make_service(reserve_cpus=0.5)]
    tasks = pending(services[0], 12) + pending(services[1], 9)
    first = schedule(nodes, [], tasks, NOW)
    shuffled_nodes, shuffled_tasks = nodes[:], tasks[:]
    random.Random(7).shuffle(shuffled_nodes)
    random.Random(8).shuffle(shuffled_tasks)
    assert schedule(shuffled_nodes, [], shuffled_tasks, NOW) == first


def test_planned_task_changes():
    service = make_service(reserve_mem="1G")
    placed, stuck, same = pending(service, 3)
    same.status.message = "no suitable node (insufficient resources on 1 node)"
    gone = make_task(service, state="pending", desired="shutdown")
    plan = SchedulePlan(assignments=[(placed.id, "n1")],
                        unplaced={stuck.id: same.status.message, same.id: same.status.message},
                        shutdown=[gone.id])
    by_id = {t.id: t for t in (placed, stuck, same, gone)}
    changes = {t.id: t for t in planned_task_changes(plan, by_id, NOW)}
    assert set(changes) == {placed.id, stuck.id, gone.id}   # unchanged message is not rewritten
    assert changes[placed.id].node_id == "n1"
    assert changes[placed.id].status.state == objects_pb2.ASSIGNED
    assert changes[placed.id].status.timestamp == NOW
    assert changes[stuck.id].status.state == objects_pb2.PENDING
    assert changes[stuck.id].status.message == same.status.message
    assert changes[gone.id].status.state == objects_pb2.SHUTDOWN
    assert placed.status.state == objects_pb2.PENDING          # inputs are never mutated


def test_task_event_filter_matches_its_definition():
    """The scheduler's filter of task updates reads each field once; it answers exactly what its
    definition says, for every pair of states, desired states and nodes."""
    import itertools

    from manager.scheduler.component import task_event_matters
    from manager.scheduler.nodeinfo import counts_for_spread, holds_node_resources
    from manager.state import Kind, ObjectUpdated

    def definition(task, old):
        return (task.status.state == objects_pb2.PENDING
                or task.node_id != old.node_id
                or holds_node_resources(task) != holds_node_resources(old)
                or counts_for_spread(task) != counts_for_spread(old)
                or (task.status.state in (objects_pb2.FAILED, objects_pb2.REJECTED)
                    and old.status.state != task.status.state))

    states = list(objects_pb2.TaskState.values())
    desired = [objects_pb2.READY, objects_pb2.RUNNING, objects_pb2.SHUTDOWN, objects_pb2.REMOVE]
    variants = [(state, want, node) for state in states for want in desired for node in ("", "n1", "n2")]
    checked = 0
    for (state, want, node), (old_state, old_want, old_node) in itertools.product(variants, variants):
        task = objects_pb2.Task(id="t", node_id=node, desired_state=want)
        task.status.state = state
        old = objects_pb2.Task(id="t", node_id=old_node, desired_state=old_want)
        old.status.state = old_state
        assert task_event_matters(ObjectUpdated(Kind.TASK, task, old)) == definition(task, old), (task, old)
        checked += 1
    assert checked == len(variants) ** 2
