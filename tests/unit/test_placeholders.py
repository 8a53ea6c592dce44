"""Swarm placeholders expanded per task on the worker (worker.placeholders), as SwarmKit's
template.ExpandContainerSpec does: hostname, env values, mount source and target; nothing else."""

from __future__ import annotations

import platform

import pytest

from proto import objects_pb2 as pb
from worker.executor import container_spec
from worker.placeholders import expand_container


def _task(slot=2, hostname="", env=(), mounts=(), labels=None, node="node1xyz", annotations="web.2"):
    task = pb.Task(id="taskid123", service_id="svcid456", slot=slot, node_id=node)
    task.annotations.name = annotations
    c = task.spec.container
    c.image = "busybox"
    c.hostname = hostname
    c.env.extend(env)
    c.mounts.extend(mounts)
    c.labels.update(labels or {})
    return task


def test_hostname_env_and_mounts_are_expanded_per_task():
    task = _task(hostname="{{.Service.Name}}-{{.Task.Slot}}",
                 env=["NODE={{.Node.Hostname}}", "NID={{.Node.ID}}", "TASK={{.Task.Name}}", "ID={{.Task.ID}}",
                      "SVC={{.Service.ID}}", "ARCH={{.Node.Platform.Architecture}}/{{.Node.Platform.OS}}",
                      "PLAIN=a{b}", "BARE"],
                 mounts=[pb.Mount(type=pb.Mount.VOLUME, source="data-{{.Task.Slot}}", target="/data/{{.Task.Slot}}")],
                 labels={"l": "{{.Task.Slot}}"})
    c = expand_container(task, "worker1")
    assert c.hostname == "web-2"
    assert list(c.env) == ["NODE=worker1", "NID=node1xyz", "TASK=web.2.taskid123", "ID=taskid123", "SVC=svcid456",
                           f"ARCH={platform.machine()}/linux", "PLAIN=a{b}", "BARE"]
    assert (c.mounts[0].source, c.mounts[0].target) == ("data-2", "/data/2")
    assert c.labels["l"] == "{{.Task.Slot}}"            # Docker does not expand container labels
    assert task.spec.container.hostname == "{{.Service.Name}}-{{.Task.Slot}}"   # the task is not changed


def test_a_global_task_slot_is_its_node_id():
    c = expand_container(_task(slot=0, hostname="{{.Task.Slot}}", annotations="agent.node1xyz"), "w")
    assert c.hostname == "node1xyz"


def test_the_runtime_spec_carries_the_expanded_values():
    spec = container_spec(_task(hostname="x-{{.Task.Slot}}", env=["N={{.Node.Hostname}}"]), node_hostname="worker1")
    assert spec.hostname == "x-2" and spec.env == ["N=worker1"]


@pytest.mark.parametrize("hostname, message", [
    ("{{.Task.Bogus}}", "can't evaluate field Bogus in type template.Task"),
    ("{{.Service.Labels}}", "can't evaluate field Labels in type template.Service"),
    ("{{.Task.Slot", "unclosed action"),
])
def test_a_placeholder_that_does_not_expand_fails_the_task_naming_it(hostname, message):
    with pytest.raises(ValueError, match="expanding hostname failed: template: expansion:1") as err:
        expand_container(_task(hostname=hostname), "w")
    assert message in str(err.value)
