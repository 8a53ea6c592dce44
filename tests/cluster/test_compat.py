"""Issue 14 as a Swarm user meets it on a 1-manager + 1-worker lab: `--format` Go templates on
the commands scripts use, and the errors a template with a mistake gives; Swarm placeholders
expanded in the task's container.

One lab for the module; each test removes what it created.
"""

from __future__ import annotations

import json

import pytest

from tests.cluster.waiting import wait_for

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def lab(lab_factory):
    return lab_factory(managers=1, workers=1)


def out(lab, *args: str, host: str = "manager1") -> str:
    return lab.shoal(host, *args).stdout


def test_format_templates_on_ls_ps_inspect_info_version(lab, image):
    lab.shoal("manager1", "service", "create", "--name", "fmt", "--replicas", "2", "--stop-signal", "KILL",
              "--label", "tier=web", image, "sleep", "3600", timeout=120)
    try:
        assert sorted(out(lab, "node", "ls", "--format", "{{.Hostname}}").split()) == ["manager1", "worker1"]
        assert out(lab, "service", "ls", "--format", "{{.Name}} {{.Mode}} {{.Replicas}}") == "fmt replicated 2/2\n"
        row = json.loads(out(lab, "service", "ls", "--format", "{{json .}}"))
        assert list(row) == sorted(row) and row["Name"] == "fmt"
        table = out(lab, "service", "ls", "--format", "table {{.Name}}\t{{.Replicas}}").splitlines()
        assert table == ["NAME      REPLICAS", "fmt       2/2"]
        assert out(lab, "service", "inspect", "--format", "{{.Spec.Name}} {{index .Spec.Labels \"tier\"}}",
                   "fmt") == "fmt web\n"
        assert out(lab, "service", "ps", "--format", "{{.Name}}", "fmt").split() == ["fmt.1", "fmt.2"]
        assert out(lab, "node", "inspect", "-f", "{{.ManagerStatus.Leader}} {{.Spec.Role}}", "self") == "true manager\n"
        assert out(lab, "info", "--format", "{{.Swarm.LocalNodeState}}") == "active\n"
        assert out(lab, "info", "--format", "{{.Swarm.LocalNodeState}}", host="worker1") == "active\n"
        assert out(lab, "version", "--format", "{{.Server.Version}}").strip()
        assert out(lab, "network", "ls", "--format", "{{.Name}}", "--filter", "name=ingress") == "ingress\n"
        for args in (["service", "ls", "--format", "{{.Bogus}}"], ["node", "ls", "--format", "{{bogus}}"],
                     ["service", "inspect", "--format", "{{.Spec.Nmae}}", "fmt"], ["info", "--format", "{{.NCPU}}"]):
            result = lab.shoal("manager1", *args, check=False)
            assert result.returncode == 1 and result.stdout == "", args
            assert result.stderr.startswith("template parsing error: template: "), result.stderr
    finally:
        lab.shoal("manager1", "service", "rm", "fmt", check=False)


def in_container(lab, service: str, script: str, host: str = "worker1") -> str:
    """Output of ``sh -c script`` in the running container of ``service``'s task on ``host``."""
    def container():
        for line in lab.shoal(host, "container", "ls", "--format", "json").stdout.splitlines():
            row = json.loads(line)
            if row["Names"].startswith(f"{service}.") and row["State"] == "running":
                return row["ID"]
        return None
    container_id = wait_for(container, 60, what=f"a running container of {service} on {host}")
    return lab.shoal(host, "container", "exec", container_id, "--", "sh", "-c", script).stdout


def test_placeholders_are_expanded_in_the_container(lab, image):
    lab.shoal("manager1", "service", "create", "--name", "ph", "--stop-signal", "KILL",
              "--constraint", "node.hostname==worker1",
              "--hostname", "{{.Service.Name}}-{{.Task.Slot}}", "--env", "NODE={{.Node.Hostname}}",
              "--env", "TASK={{.Task.Name}}", "--env", "NID={{.Node.ID}}",
              "--mount", "type=volume,source=data-{{.Task.Slot}},target=/data",
              image, "sleep", "3600", timeout=120)
    try:
        task_id = lab.shoal("manager1", "service", "ps", "-q", "--no-trunc", "ph").stdout.split()[0]
        node_id = json.loads(lab.shoal("manager1", "node", "inspect", "worker1").stdout)[0]["ID"]
        seen = in_container(lab, "ph", "hostname; echo $NODE $TASK $NID; ls -d /data && "
                                       "grep ' /data ' /proc/self/mountinfo | grep -c data-1")
        assert seen.split() == ["ph-1", "worker1", f"ph.1.{task_id}", node_id, "/data", "1"]
        assert out(lab, "node", "ps", "--format", "{{.Name}} {{.Node}} {{.DesiredState}}", "worker1").split() == \
            ["ph.1", "worker1", "Running"]
        assert out(lab, "node", "ps", "-q") == ""        # self: manager1 runs none of them
        volumes = lab.shoal("worker1", "volume", "ls", "--format", "{{.Name}}").stdout.split()
        assert "data-1" in volumes and "data-{{.Task.Slot}}" not in volumes
    finally:
        lab.shoal("manager1", "service", "rm", "ph", check=False)


STACK = """\
services:
  app:
    image: ${IMAGE}
    build: .
    container_name: app1
    restart: on-failure:2
    command: ["sleep", "3600"]
    stop_signal: SIGKILL
    hostname: "{{.Service.Name}}-{{.Task.Slot}}"
    environment:
      PASSWORD: ${PASSWORD:-pa$word}
    logging:
      driver: json-file
      options: {max-size: 10m}
"""


def test_a_stack_file_docker_accepts_deploys_from_stdin_with_dockers_warnings(lab, image):
    from shoal.lab import procs
    result = lab.exec("manager1", [procs.program("shoal"), "stack", "deploy", "--detach=false", "-c", "-", "cs"],
                      input=STACK.replace("${IMAGE}", image), timeout=180)
    try:
        assert "Ignoring unsupported options: build, restart\n" in result.stderr
        assert "Ignoring deprecated options:\n\ncontainer_name: Setting the container name is not supported." \
            in result.stderr
        spec = json.loads(out(lab, "service", "inspect", "cs_app"))[0]["Spec"]
        assert spec["TaskTemplate"]["RestartPolicy"]["Condition"] == "on-failure"
        assert spec["TaskTemplate"]["RestartPolicy"]["MaxAttempts"] == 2
        host = json.loads(out(lab, "service", "ps", "--format", "json", "cs_app"))["Node"]
        seen = in_container(lab, "cs_app", "hostname; echo $PASSWORD", host=host)
        assert seen.split() == ["cs_app-1", "pa$word"]
    finally:
        lab.shoal("manager1", "stack", "rm", "cs", check=False, timeout=120)
