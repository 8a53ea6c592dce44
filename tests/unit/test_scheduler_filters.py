"""Constraint parsing and the scheduler's filters, one table per concern."""

import pytest

from manager.constraints import InvalidConstraint, parse_constraints
from manager.scheduler import (
    AvailabilityFilter, ConstraintFilter, HostPortFilter, MaxReplicasFilter,
    ReadyFilter, Request, ResourceFilter, build_node_infos, explain,
)
from manager.scheduler.testing import make_node, make_service, make_task


# ---- constraints ---------------------------------------------------------------------------

@pytest.mark.parametrize("expression, node_kwargs, expected", [
    ("node.hostname==web1", dict(hostname="web1"), True),
    ("node.hostname==WEB1", dict(hostname="web1"), True),           # values: case-insensitive
    ("node.hostname!=web1", dict(hostname="web1"), False),
    ("node.id==n1", dict(node_id="n1"), True),
    ("node.role==manager", dict(role="manager"), True),
    ("node.role==manager", dict(role="worker"), False),
    ("node.role != manager", dict(role="worker"), True),             # spaces around the operator
    ("node.labels.zone==east", dict(labels={"zone": "east"}), True),
    ("node.labels.zone==east", dict(labels={"zone": "west"}), False),
    ("node.labels.zone==east", dict(labels={}), False),               # missing label never equals
    ("node.labels.zone!=east", dict(labels={}), True),
    ("node.labels.Zone==east", dict(labels={"zone": "east"}), False), # label names keep their case
    ("NODE.LABELS.zone==east", dict(labels={"zone": "east"}), True),  # the prefix does not
    ("node.platform.os==linux", dict(os="linux"), True),
    ("node.platform.arch==amd64", dict(arch="x86_64"), True),         # Docker's arch aliases
    ("node.platform.arch==arm64", dict(arch="x86_64"), False),
])
def test_constraint_matches(expression, node_kwargs, expected):
    [constraint] = parse_constraints([expression])
    assert constraint.matches(make_node(**node_kwargs)) is expected


@pytest.mark.parametrize("expression, problem", [
    ("node.labels.zone=east", "expected KEY==VALUE"),
    ("node.labels.zone", "expected KEY==VALUE"),
    ("==east", "key is empty"),
    ("node.hostname==", "value is empty"),
    ("node.color==red", "unknown key 'node.color'"),
    ("node.labels.==x", "needs a label name"),
    ("node.role==boss", "'manager' or 'worker'"),
    ("node.hostname==a;b", "characters"),
])
def test_parse_errors_name_the_expression(expression, problem):
    with pytest.raises(InvalidConstraint) as excinfo:
        parse_constraints(["node.role==worker", expression])
    assert excinfo.value.expression == expression
    assert repr(expression) in str(excinfo.value)
    assert problem in str(excinfo.value)


# ---- filters -------------------------------------------------------------------------------

def _check(filter_, node, task, existing=()):
    info = build_node_infos([node], list(existing), now=0.0)[node.id]
    return filter_.check(info, Request.of(task))


@pytest.mark.parametrize("filter_, node_kwargs, ok, reason", [
    (ReadyFilter(), dict(state="ready"), True, ""),
    (ReadyFilter(), dict(state="down"), False, "node is down"),
    (ReadyFilter(), dict(state="unknown"), False, "node is unknown"),
    (AvailabilityFilter(), dict(availability="active"), True, ""),
    (AvailabilityFilter(), dict(availability="pause"), False, "node availability is pause"),
    (AvailabilityFilter(), dict(availability="drain"), False, "node availability is drain"),
])
def test_node_state_filters(filter_, node_kwargs, ok, reason):
    verdict = _check(filter_, make_node(**node_kwargs), make_task(state="pending"))
    assert verdict.ok is ok
    assert verdict.reason == reason


def test_constraint_filter_names_the_unmet_constraint():
    service = make_service(constraints=["node.role==worker", "node.labels.zone==east"])
    verdict = _check(ConstraintFilter(), make_node(labels={"zone": "west"}), make_task(service))
    assert not verdict.ok
    assert verdict.reason == "constraint node.labels.zone==east not satisfied"


@pytest.mark.parametrize("existing, reserve, ok, reason", [
    ([], dict(reserve_cpus=2, reserve_mem="4G"), True, ""),                      # exactly fits
    ([], dict(reserve_cpus=2.5), False, "insufficient CPU: reserves 2.5 CPUs, 2 CPUs available"),
    ([], dict(reserve_mem="5G"), False, "insufficient memory: reserves 5GiB, 4GiB available"),
    ([dict(reserve_mem="3G", state="running")], dict(reserve_mem="1G"), True, ""),
    ([dict(reserve_mem="3G", state="running")], dict(reserve_mem="1.5G"), False,
     "insufficient memory: reserves 1.5GiB, 1GiB available"),
    ([dict(reserve_mem="3G", state="assigned")], dict(reserve_mem="2G"), False,
     "insufficient memory: reserves 2GiB, 1GiB available"),
    # terminal tasks and tasks not yet placed free their reservations
    ([dict(reserve_mem="3G", state="failed")], dict(reserve_mem="2G"), True, ""),
    ([dict(reserve_mem="3G", state="shutdown")], dict(reserve_mem="2G"), True, ""),
    ([dict(reserve_mem="3G", state="pending")], dict(reserve_mem="2G"), True, ""),
    # a task being shut down still holds its memory until it stops
    ([dict(reserve_mem="3G", state="running", desired="shutdown")], dict(reserve_mem="2G"), False,
     "insufficient memory: reserves 2GiB, 1GiB available"),
])
def test_resource_filter(existing, reserve, ok, reason):
    node = make_node("n1", cpus=2, mem="4G")
    tasks = [make_task(node="n1", **kwargs) for kwargs in existing]
    verdict = _check(ResourceFilter(), node, make_task(state="pending", **reserve), tasks)
    assert (verdict.ok, verdict.reason) == (ok, reason)


@pytest.mark.parametrize("existing, ports, ok", [
    ([], [8080], True),
    ([dict(host_ports=[8080])], [8080], False),
    ([dict(host_ports=[8080])], [9090], True),
    ([dict(host_ports=[8080], state="complete")], [8080], True),
])
def test_host_port_filter(existing, ports, ok):
    node = make_node("n1")
    tasks = [make_task(node="n1", **kwargs) for kwargs in existing]
    verdict = _check(HostPortFilter(), node, make_task(state="pending", host_ports=ports), tasks)
    assert verdict.ok is ok
    if not ok:
        assert verdict.reason == "host port 8080/tcp already in use"


def test_ingress_ports_never_conflict():
    service = make_service()
    service.spec.endpoint.ports.add(target_port=80, published_port=8080)  # ingress mode
    node = make_node("n1")
    verdict = _check(HostPortFilter(), node, make_task(service, state="pending"),
                     [make_task(service, node="n1")])
    assert verdict.ok


@pytest.mark.parametrize("running, max_replicas, ok", [(0, 1, True), (1, 1, False), (1, 2, True), (5, 0, True)])
def test_max_replicas_filter(running, max_replicas, ok):
    service = make_service(max_replicas=max_replicas)
    tasks = [make_task(service, node="n1") for _ in range(running)]
    verdict = _check(MaxReplicasFilter(), make_node("n1"), make_task(service, state="pending"), tasks)
    assert verdict.ok is ok


@pytest.mark.parametrize("failures, message", [
    ({}, "no suitable node"),
    ({"resources": 2, "constraints": 1},
     "no suitable node (scheduling constraints not satisfied on 1 node; insufficient resources on 2 nodes)"),
    ({"ready": 1, "availability": 3},
     "no suitable node (1 node not ready; 3 nodes not available for new tasks)"),
    ({"host-ports": 1, "max-replicas": 2},
     "no suitable node (host-mode port already in use on 1 node; max replicas per node limit exceeded on 2 nodes)"),
])
def test_explain(failures, message):
    assert explain(failures) == message
