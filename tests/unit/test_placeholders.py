"""Swarm placeholders expanded per task on the worker (worker.placeholders), as SwarmKit's
template.ExpandContainerSpec does: hostname, env values, mount source and target; nothing else."""

from __future__ import annotations

import platform

import pytest

from proto import objects_pb2 as pb
from worker.executor import container_spec
from worker.executor import container_files
from worker.placeholders import expand_config, expand_container


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
    ("{{.Service.Bogus}}", "can't evaluate field Bogus in type template.Service"),
    ("{{.Task.Slot", "unclosed action"),
])
def test_a_placeholder_that_does_not_expand_fails_the_task_naming_it(hostname, message):
    with pytest.raises(ValueError, match="expanding hostname failed: template: expansion:1") as err:
        expand_container(_task(hostname=hostname), "w")
    assert message in str(err.value)


def test_service_labels_are_the_labels_the_task_was_made_with():
    """{{.Service.Labels}} as SwarmKit has it: the orchestrator copies the service's annotations
    into each task it makes (ServiceAnnotations); a missing label indexes as "" (Go's zero value)."""
    from manager.orchestrator.task import new_task
    service = pb.Service(id="svcid456", spec_version=1)
    service.spec.annotations.name = "web"
    service.spec.annotations.labels.update({"zone": "east", "tier": "front"})
    service.spec.task.container.image = "busybox"
    service.spec.task.container.env.extend(['ZONE={{index .Service.Labels "zone"}}', "ALL={{.Service.Labels}}",
                                            'NONE=[{{index .Service.Labels "nope"}}]'])
    task = new_task(service, slot=1, now=1.0, ids=lambda: "taskid123")
    assert list(expand_container(task, "w").env) == ["ZONE=east", "ALL=map[tier:front zone:east]", "NONE=[]"]


def _templated_task():
    task = _task(env=["GREETING=hello-{{.Task.Slot}}"])
    task.spec.container.secrets.add(secret_id="s1", secret_name="db_pass", file=pb.FileTarget(name="db_pass"))
    task.spec.container.configs.add(config_id="c1", config_name="app", file=pb.FileTarget(name="/etc/app.conf"))
    task.spec.container.configs.add(config_id="c2", config_name="plain", file=pb.FileTarget(name="/etc/plain"))
    secrets = {"s1": pb.Secret(id="s1", spec=pb.SecretSpec(data=b"s3cret"))}
    configs = {"c1": pb.Config(id="c1", spec=pb.ConfigSpec(
                   data=b'host={{.Node.Hostname}} slot={{.Task.Slot}} svc={{.Service.Name}}\n'
                        b'pass={{secret "db_pass"}} plain={{config "/etc/plain"}} env={{env "GREETING"}}\n',
                   templating=pb.Driver(name="golang"))),
               "c2": pb.Config(id="c2", spec=pb.ConfigSpec(data=b"{{not expanded}}"))}
    return task, secrets, configs


def test_a_golang_templated_config_is_expanded_per_task():
    """config template_driver golang, as SwarmKit's ExpandConfig: placeholders and the secret,
    config and env functions (by target; env after its own expansion); untemplated configs stay."""
    import base64
    task, secrets, configs = _templated_task()
    files = {f.target: base64.b64decode(f.data) for f in container_files(task, secrets, configs, "worker1")}
    assert files["/etc/app.conf"] == (b"host=worker1 slot=2 svc=web\n"
                                      b"pass=s3cret plain={{not expanded}} env=hello-2\n")
    assert files["/etc/plain"] == b"{{not expanded}}"


@pytest.mark.parametrize("template, message", [
    (b'{{secret "nope"}}', "secret target nope not found"),
    (b'{{config "nope"}}', "config target nope not found"),
    (b"{{.Task.Bogus}}", "can't evaluate field Bogus"),
    (b"{{bogus}}", 'function "bogus" not defined'),
])
def test_a_config_template_that_fails_fails_the_task_naming_it(template, message):
    task, secrets, configs = _templated_task()
    configs["c1"].spec.data = template
    with pytest.raises(ValueError, match="task taskid123: config app: expanding the config template failed") as err:
        container_files(task, secrets, configs, "w")
    assert message in str(err.value)
    assert expand_config(task, "w", b"plain", secrets, configs) == b"plain"


def test_templated_configs_are_checked_at_create_and_come_from_stacks():
    import textwrap
    from manager.controlapi import ControlError
    from manager.controlapi.secrets import CONFIGS, check_spec
    from shoal.stack import StackFileError, load_stack_sources, to_config_specs
    spec = pb.ConfigSpec(data=b"{{.Task.Slot}}", templating=pb.Driver(name="golang"))
    spec.annotations.name = "app"
    check_spec(spec, CONFIGS)
    for driver, data, message in (("jinja", b"x", "unsupported template driver 'jinja'"),
                                  ("golang", b"{{.Task.Slot", "the template does not parse")):
        spec.templating.name, spec.data = driver, data
        with pytest.raises(ControlError, match=message):
            check_spec(spec, CONFIGS)
    stack = load_stack_sources([("s.yml", textwrap.dedent("""\
        services:
          app: {image: busybox, configs: [app]}
        configs:
          app: {content: "slot {{.Task.Slot}}", template_driver: golang}
        """))], {})
    [config] = to_config_specs(stack, "st")
    assert config.templating.name == "golang" and config.data == b"slot {{.Task.Slot}}"
    with pytest.raises(StackFileError, match="templated secrets are not supported by Shoal"):
        load_stack_sources([("s.yml", "services: {app: {image: busybox}}\n"
                                      "secrets: {s: {environment: HOME, template_driver: golang}}\n")], {"HOME": "/"})


def test_volume_label_values_are_expanded_like_the_source():
    task = _task(mounts=[pb.Mount(type=pb.Mount.VOLUME, source="d-{{.Task.Slot}}", target="/d",
                                  volume_labels={"slot": "{{.Task.Slot}}", "node": "{{.Node.Hostname}}"})])
    assert dict(expand_container(task, "worker1").mounts[0].volume_labels) == {"slot": "2", "node": "worker1"}
