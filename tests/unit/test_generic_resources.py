"""Generic resources (common/genericresource.py): the grammar of `shoald --node-generic-resource`
and `service create --generic-resource`, the scheduler's filtering and accounting of them (pure
code, table-driven), their env in the task's container, and the flag/Compose/API forms."""

from __future__ import annotations

import textwrap

import pytest

from common import genericresource as gr
from manager.controlapi.service_spec import SpecError, validate_spec
from manager.scheduler import planned_task_changes, schedule
from manager.scheduler.testing import make_node, make_service, make_task, pending
from proto import objects_pb2 as pb
from shoal.cli.service_flags import FlagError, build_spec, update_spec
from shoal.stack import StackFileError, load_stack_sources, to_service_specs
from worker.executor import container_spec

NOW = 1000.0


@pytest.mark.parametrize("texts, expected", [
    (["gpu=2"], ["gpu=2"]),
    (["gpu=2", "gpu=1"], ["gpu=3"]),                               # counts of a kind add up
    (["SSD=ssd1", "SSD=ssd2"], ["SSD=ssd1", "SSD=ssd2"]),          # named units
    (["NVIDIA-GPU=UUID1,NVIDIA-GPU=UUID2"], ["NVIDIA-GPU=UUID1", "NVIDIA-GPU=UUID2"]),   # a comma list
    (["gpu=2", "SSD=ssd1"], ["gpu=2", "SSD=ssd1"]),
])
def test_node_resources_parse(texts, expected):
    assert gr.text(gr.parse(texts)) == expected


@pytest.mark.parametrize("texts, message", [
    (["gpu"], "incorrect term gpu, missing '=' or malformed expression"),
    (["=2"], "incorrect term =2"),
    (["gpu=2", "gpu=x"], "mixed discrete and named resources in gpu"),
    (["gpu=-1"], "cannot ask for negative resource gpu"),
    (["SSD=a", "SSD=a"], "resource SSD has the value a more than once"),
])
def test_bad_node_resources(texts, message):
    with pytest.raises(ValueError, match=message):
        gr.parse(texts)


def test_tasks_reserve_counts_only():
    assert gr.requests(gr.parse_task(["gpu=2", "fpga=1"])) == (("fpga", 1), ("gpu", 2))
    with pytest.raises(ValueError, match="invalid argument for resource SSD"):
        gr.parse_task(["SSD=ssd1"])
    with pytest.raises(ValueError, match="the count must be at least 1"):
        gr.parse_task(["gpu=0"])


def _node(node_id: str, *offers: str) -> pb.Node:
    node = make_node(node_id)
    node.description.resources.generic.extend(gr.parse(offers))
    return node


def _service(*wanted: str) -> pb.Service:
    service = make_service()
    service.spec.task.resources.reservations.generic.extend(gr.parse_task(wanted))
    return service


@pytest.mark.parametrize("offers, wanted, tasks, placed, reason", [
    # (what each node offers, what a task reserves, how many tasks, tasks placed per node, why the rest wait)
    ({"a": ["gpu=2"], "b": []}, ["gpu=1"], 3, {"a": 2}, "insufficient resources on 2 nodes"),
    ({"a": ["gpu=2"], "b": ["gpu=2"]}, ["gpu=2"], 2, {"a": 1, "b": 1}, ""),
    ({"a": ["SSD=ssd1", "SSD=ssd2"]}, ["SSD=1"], 3, {"a": 2}, "insufficient resources on 1 node"),
    ({"a": ["SSD=ssd1", "gpu=1"]}, ["SSD=1", "gpu=1"], 2, {"a": 1}, "insufficient resources on 1 node"),
    ({"a": ["gpu=4"]}, ["fpga=1"], 1, {}, "insufficient resources on 1 node"),
    ({"a": []}, [], 2, {"a": 2}, ""),                              # no reservation: no generic check
])
def test_scheduler_filters_and_accounts_generic_resources(offers, wanted, tasks, placed, reason):
    nodes = [_node(n, *o) for n, o in offers.items()]
    plan = schedule(nodes, [], pending(_service(*wanted), tasks), NOW)
    counts: dict[str, int] = {}
    for _, node_id in plan.assignments:
        counts[node_id] = counts.get(node_id, 0) + 1
    assert counts == placed
    assert set(plan.unplaced.values()) == ({f"no suitable node ({reason})"} if reason else set())


def test_named_units_are_claimed_once_and_written_to_the_task():
    node = _node("a", "SSD=ssd1", "SSD=ssd2", "gpu=4")
    service = _service("SSD=1", "gpu=2")
    running = make_task(service, node="a", state="running")
    running.assigned_generic_resources.extend([gr.named("SSD", "ssd1"), gr.discrete("gpu", 2)])
    todo = pending(service, 2)
    plan = schedule([node], [running], todo, NOW)
    assert len(plan.assignments) == 1                        # gpu: 4 - 2 held leaves 2, for one task
    assert plan.unplaced[todo[1].id] == "no suitable node (insufficient resources on 1 node)"
    changes = planned_task_changes(plan, {t.id: t for t in todo}, NOW)
    assigned = [c for c in changes if c.node_id == "a"][0]
    assert gr.text(assigned.assigned_generic_resources) == ["SSD=ssd2", "gpu=2"]   # ssd1 is taken
    assert gr.env(assigned.assigned_generic_resources) == ["DOCKER_RESOURCE_GPU=2", "DOCKER_RESOURCE_SSD=ssd2"]


def test_the_worker_puts_the_assigned_resources_in_the_env():
    task = pb.Task(id="t1", service_id="s1", node_id="n1", slot=1)
    task.annotations.name = "web.1"
    task.spec.container.image = "busybox"
    task.spec.container.env.append("A=1")
    task.assigned_generic_resources.extend([gr.named("SSD", "ssd1"), gr.named("SSD", "ssd2"), gr.discrete("gpu", 1)])
    assert container_spec(task).env == ["A=1", "DOCKER_RESOURCE_GPU=1", "DOCKER_RESOURCE_SSD=ssd1,ssd2"]


def test_flags():
    spec = build_spec("busybox", [], {"name": "web", "generic_resource": ("gpu=2", "fpga=1")})
    assert gr.text(spec.task.resources.reservations.generic) == ["gpu=2", "fpga=1"]
    validate_spec(spec)
    new = update_spec(spec, {"generic_resource_add": ("gpu=1",), "generic_resource_rm": ("fpga",)})
    assert gr.text(new.task.resources.reservations.generic) == ["gpu=1"]
    with pytest.raises(FlagError, match='invalid argument "SSD=ssd1" for "--generic-resource" flag: invalid '
                                        'generic resource specification: invalid argument for resource SSD'):
        build_spec("busybox", [], {"name": "web", "generic_resource": ("SSD=ssd1",)})
    spec.task.resources.reservations.generic.add().named_resource_spec.kind = "SSD"
    with pytest.raises(SpecError, match="invalid --generic-resource 'SSD'"):
        validate_spec(spec)


def test_compose_generic_resources():
    stack = load_stack_sources([("s.yml", textwrap.dedent("""\
        services:
          ml:
            image: busybox
            deploy:
              resources:
                reservations:
                  generic_resources:
                    - discrete_resource_spec: {kind: gpu, value: 2}
        """))], {})
    spec = to_service_specs(stack, "st")[0]
    assert gr.text(spec.task.resources.reservations.generic) == ["gpu=2"]
    validate_spec(spec)
    with pytest.raises(StackFileError, match="named_resource_spec"):
        load_stack_sources([("s.yml", textwrap.dedent("""\
            services:
              ml:
                image: busybox
                deploy:
                  resources:
                    reservations:
                      generic_resources:
                        - named_resource_spec: {kind: SSD, value: ssd1}
            """))], {})


def test_shoald_flag_and_daemon_json():
    from shoal.daemon.main import parse_args
    args = parse_args(["--node-generic-resource", "gpu=2", "--node-generic-resource", "SSD=ssd1",
                       "--config-file", "/dev/null"])
    assert gr.text(args.node_generic_resources) == ["gpu=2", "SSD=ssd1"]
    with pytest.raises(SystemExit):
        parse_args(["--node-generic-resource", "gpu", "--config-file", "/dev/null"])
