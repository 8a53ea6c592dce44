"""`shoal service ...` against a fake ControlAPI: tables, JSON, inspect's shape, the requests
the commands send, and the convergence display."""

from __future__ import annotations

import functools
import json
import time

import grpc
import pytest
from click.testing import CliRunner

from proto import control_pb2, objects_pb2 as pb
from shoal.cli import service_progress, services as cli_services
from shoal.cli.service_progress import wait_for_service

NOW = time.time()


class FakeRpcError(grpc.RpcError):
    def __init__(self, code, details):
        self._code, self._details = code, details

    def code(self):
        return self._code

    def details(self):
        return self._details


class FakeStub:
    """Answers from the fake cluster; records the requests it got."""

    def __init__(self, cluster):
        self._cluster = cluster

    def __getattr__(self, method):
        def call(request, timeout=None):
            return self._cluster.handle(method, request)
        return call


class FakeClient:
    host = "unix:///fake.sock"
    timeout = 5.0

    def __init__(self):
        self.services: dict[str, pb.Service] = {}
        self.tasks: list[pb.Task] = []
        self.nodes = [make_node("node-aaaaaaaaaaaaa", "one"), make_node("node-bbbbbbbbbbbbb", "two")]
        self.requests: list[tuple[str, object]] = []
        self.errors: dict[str, list[FakeRpcError]] = {}
        self.on_poll = None            # called on each ListTasks: lets a test move the cluster along
        self.stub = FakeStub(self)

    def call(self, method, request, timeout=None):
        return self.handle(method, request)

    def find(self, ref):
        for s in self.services.values():
            if ref in (s.id, s.spec.annotations.name) or s.id.startswith(ref):
                return s
        raise FakeRpcError(grpc.StatusCode.NOT_FOUND, f"service {ref} not found")

    def handle(self, method, request):
        self.requests.append((method, request))
        if self.errors.get(method):
            raise self.errors[method].pop(0)
        if method == "GetService":
            return control_pb2.GetServiceResponse(service=self.find(request.service_id))
        if method == "ListServices":
            services = sorted(self.services.values(), key=lambda s: s.spec.annotations.name)
            statuses = [control_pb2.ServiceStatus(service_id=s.id, desired_tasks=s.spec.replicas,
                                                  running_tasks=sum(1 for t in self.tasks if t.service_id == s.id
                                                                    and t.status.state == pb.RUNNING))
                        for s in services]
            return control_pb2.ListServicesResponse(services=services, statuses=statuses)
        if method == "ListTasks":
            if self.on_poll:
                self.on_poll(self)
            wanted = request.filters.get("service")
            return control_pb2.ListTasksResponse(tasks=[t for t in self.tasks if not wanted or t.service_id == wanted])
        if method == "ListNodes":
            return control_pb2.ListNodesResponse(nodes=self.nodes)
        if method == "CreateService":
            service = pb.Service(id="svc" + "x" * 22, spec=request.spec, spec_version=1)
            service.meta.version = 1
            self.services[service.id] = service
            return control_pb2.CreateServiceResponse(service=service)
        if method == "UpdateService":
            service = self.find(request.service_id)
            if not request.rollback:
                service.previous_spec.CopyFrom(service.spec)
                service.spec.CopyFrom(request.spec)
            service.meta.version += 1
            return control_pb2.UpdateServiceResponse(service=service)
        if method == "RemoveService":
            del self.services[self.find(request.service_id).id]
            return control_pb2.RemoveServiceResponse()
        if method == "Info":
            return control_pb2.InfoResponse(node_id="node-aaaaaaaaaaaaa")
        raise AssertionError(f"unexpected call {method}")

    def sent(self, method):
        return [r for m, r in self.requests if m == method]


def make_node(node_id, hostname):
    node = pb.Node(id=node_id)
    node.description.hostname = hostname
    node.status.state = pb.NodeStatus.READY
    return node


def make_service(name="web", replicas=3, service_id=None, mode=pb.ServiceSpec.REPLICATED):
    service = pb.Service(id=service_id or f"{name}id" + "0" * (25 - len(name) - 2), spec_version=1)
    service.meta.version = 7
    service.meta.created_at = 1_700_000_000.0
    service.meta.updated_at = 1_700_000_100.5
    service.spec.annotations.name = name
    service.spec.mode = mode
    service.spec.replicas = replicas
    service.spec.task.container.image = "busybox:1.36@sha256:" + "a" * 64
    return service


def make_task(task_id, service, slot, node_id="node-aaaaaaaaaaaaa", state=pb.RUNNING, desired=pb.RUNNING,
              age=5.5, err="", spec_version=1):
    task = pb.Task(id=task_id, service_id=service.id, slot=slot, node_id=node_id, desired_state=desired,
                   spec_version=spec_version)
    task.spec.CopyFrom(service.spec.task)
    task.status.state = state
    task.status.timestamp = NOW - age
    task.status.err = err
    task.meta.created_at = NOW - age
    return task


@pytest.fixture
def client():
    return FakeClient()


@pytest.fixture(autouse=True)
def fast_polls_and_a_fixed_clock(monkeypatch):
    monkeypatch.setattr(service_progress, "wait_for_service",
                        functools.partial(wait_for_service, poll=0.0, timeout=5.0))
    monkeypatch.delenv("SHOAL_SERVICE_VERIFY", raising=False)
    monkeypatch.setattr(cli_services, "clock", lambda: NOW)


def run(client, *args):
    return CliRunner().invoke(cli_services.service, list(args), obj=client)


# ---- ls ----------------------------------------------------------------------------------------

def test_ls_table_and_json(client):
    web = make_service()
    web.spec.endpoint.ports.add(target_port=80, published_port=8080)
    web.update_status.state = pb.UpdateStatus.UPDATING
    client.services[web.id] = web
    client.tasks = [make_task("t1", web, 1), make_task("t2", web, 2)]
    result = run(client, "ls")
    assert result.exit_code == 0, result.output
    header, row = result.output.splitlines()
    assert header.split() == ["ID", "NAME", "MODE", "REPLICAS", "IMAGE", "PORTS"]
    assert row.split() == [web.id[:12], "web", "replicated", "2/3", "(updating)", "busybox:1.36", "*:8080->80/tcp"]
    result = run(client, "ls", "--format", "json")
    assert json.loads(result.output) == {"ID": web.id[:12], "Name": "web", "Mode": "replicated", "Replicas": "2/3",
                                         "Image": "busybox:1.36", "Ports": "*:8080->80/tcp"}
    assert run(client, "ls", "-q").output == f"{web.id}\n"


def test_ls_passes_filters(client):
    run(client, "ls", "-f", "name=web", "-f", "mode=global", "-f", "name=api")
    assert dict(client.sent("ListServices")[0].filters) == {"name": "web,api", "mode": "global"}


# ---- ps ----------------------------------------------------------------------------------------

def test_ps_shows_history_under_each_slot(client):
    web = make_service()
    client.services[web.id] = web
    client.tasks = [
        make_task("taskold1xxxxxxxxxxxxxxxxxx", web, 1, node_id="node-bbbbbbbbbbbbb", state=pb.FAILED,
                  desired=pb.SHUTDOWN, age=70, err="task: non-zero exit (1): the container exited badly"),
        make_task("tasknew1xxxxxxxxxxxxxxxxxx", web, 1, age=5.5),
        make_task("task2xxxxxxxxxxxxxxxxxxxxx", web, 2, state=pb.PENDING, node_id="", age=0.2),
    ]
    client.tasks[2].status.message = "no suitable node (insufficient memory on 2 nodes)"
    result = run(client, "ps", "web")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["ID", "NAME", "IMAGE", "NODE", "DESIRED", "STATE", "CURRENT", "STATE", "ERROR", "PORTS"]
    assert lines[1].split() == ["tasknew1xxxx", "web.1", "busybox:1.36", "one", "Running", "Running", "5",
                                "seconds", "ago"]
    assert lines[2].split()[:9] == ["taskold1xxxx", "\\_", "web.1", "busybox:1.36", "two", "Shutdown", "Failed",
                                    "about", "a"]
    assert '"task: non-zero exit (1): the …"' in lines[2]
    assert lines[3].split()[:3] == ["task2xxxxxxx", "web.2", "busybox:1.36"]
    assert "Pending less than a second ago" in lines[3] and '"no suitable node (insufficien…"' in lines[3]


def test_ps_json_no_trunc_and_filters(client):
    web = make_service()
    client.services[web.id] = web
    client.tasks = [make_task("task1xxxxxxxxxxxxxxxxxxxxx", web, 1)]
    result = run(client, "ps", "--no-trunc", "--format", "json", "-f", "desired-state=running", "-f", "node=self", "web")
    row = json.loads(result.output)
    assert row["ID"] == "task1xxxxxxxxxxxxxxxxxxxxx" and row["Name"] == "web.1.task1xxxxxxxxxxxxxxxxxxxxx"
    assert row["Image"].startswith("busybox:1.36@sha256:") and row["CurrentState"] == "Running 5 seconds ago"
    assert set(row) == {"ID", "Name", "Image", "Node", "DesiredState", "CurrentState", "Error", "Ports"}
    assert dict(client.sent("ListTasks")[0].filters) == {"desired-state": "running", "node": "node-aaaaaaaaaaaaa",
                                                         "service": web.id}


def test_ps_of_a_global_service_names_tasks_by_node_id_and_reports_missing_services(client):
    agent = make_service("agent", replicas=0, mode=pb.ServiceSpec.GLOBAL)
    client.services[agent.id] = agent
    client.tasks = [make_task("taskg", agent, 0)]
    result = run(client, "ps", "agent", "nosuch")
    # docker/cli's generateTaskNames: SERVICE.NODEID for a global task; the NODE column has the name
    assert "agent.node-aaaaaaaaaaaaa " in result.output and " one " in result.output
    assert result.exit_code == 1 and "no such service: nosuch" in result.output


# ---- inspect -----------------------------------------------------------------------------------

def test_inspect_has_dockers_shape(client):
    web = make_service()
    spec = web.spec
    spec.annotations.labels["tier"] = "front"
    spec.task.container.args.extend(["sleep", "100"])
    spec.task.container.env.append("A=1")
    spec.task.container.mounts.add(type=pb.Mount.BIND, source="/srv", target="/data", read_only=True)
    spec.task.resources.limits.memory_bytes = 64 << 20
    spec.task.restart.CopyFrom(pb.RestartPolicy(condition=pb.RestartPolicy.ON_FAILURE, delay=5))
    spec.task.placement.constraints.append("node.role==worker")
    spec.update.CopyFrom(pb.UpdateConfig(parallelism=2, monitor=5, order=pb.UpdateConfig.START_FIRST))
    spec.endpoint.ports.add(target_port=80, published_port=8080)
    web.previous_spec.CopyFrom(spec)
    web.previous_spec.task.container.image = "busybox:1.35"
    web.endpoint.virtual_ips.add(network_id="ingressid", addr="10.0.0.5/24")
    web.update_status.state = pb.UpdateStatus.ROLLBACK_STARTED
    web.update_status.message = "manually requested rollback"
    client.services[web.id] = web
    result = run(client, "inspect", "web")
    [out] = json.loads(result.output)
    assert out["ID"] == web.id and out["Version"] == {"Index": 7}
    assert out["CreatedAt"] == "2023-11-14T22:13:20Z" and out["UpdatedAt"] == "2023-11-14T22:15:00.5Z"
    s = out["Spec"]
    assert s["Name"] == "web" and s["Labels"] == {"tier": "front"}
    c = s["TaskTemplate"]["ContainerSpec"]
    assert c["Image"] == spec.task.container.image and c["Args"] == ["sleep", "100"] and c["Env"] == ["A=1"]
    assert c["Mounts"] == [{"Type": "bind", "Source": "/srv", "Target": "/data", "ReadOnly": True}]
    assert s["TaskTemplate"]["Resources"] == {"Limits": {"MemoryBytes": 64 << 20}, "Reservations": {}}
    assert s["TaskTemplate"]["RestartPolicy"] == {"Condition": "on-failure", "Delay": 5_000_000_000, "MaxAttempts": 0}
    assert s["TaskTemplate"]["Placement"] == {"Constraints": ["node.role==worker"]}
    assert s["Mode"] == {"Replicated": {"Replicas": 3}}
    assert s["UpdateConfig"] == {"Parallelism": 2, "FailureAction": "pause", "Monitor": 5_000_000_000,
                                 "MaxFailureRatio": 0, "Order": "start-first"}
    assert s["EndpointSpec"] == {"Mode": "vip", "Ports": [{"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 8080,
                                                           "PublishMode": "ingress"}]}
    assert out["PreviousSpec"]["TaskTemplate"]["ContainerSpec"]["Image"] == "busybox:1.35"
    assert out["Endpoint"]["VirtualIPs"] == [{"NetworkID": "ingressid", "Addr": "10.0.0.5/24"}]
    assert out["UpdateStatus"] == {"State": "rollback_started", "Message": "manually requested rollback"}


def test_inspect_global_pretty_and_missing(client):
    agent = make_service("agent", replicas=0, mode=pb.ServiceSpec.GLOBAL)
    client.services[agent.id] = agent
    assert json.loads(run(client, "inspect", "agent").output)[0]["Spec"]["Mode"] == {"Global": {}}
    pretty = run(client, "inspect", "--pretty", "agent").output
    assert "Name:\t\tagent" in pretty and "Service Mode:\tGlobal" in pretty
    assert run(client, "inspect", "--format", "pretty", "agent").output == pretty    # docker's spelling too
    assert run(client, "inspect", "--format", "{{.Spec.Name}}", "agent").output == "agent\n"
    result = run(client, "inspect", "agent", "nosuch")
    assert result.exit_code == 1 and "no such service: nosuch" in result.output


# ---- create, scale, update, rollback, rm --------------------------------------------------------

def test_create_detached_prints_the_id_and_sends_the_spec(client):
    result = run(client, "create", "-d", "--name", "web", "--replicas", "2", "-e", "A=1", "--limit-memory", "64M",
                 "busybox:1.36", "sleep", "100", "--not-an-option")
    assert result.exit_code == 0, result.output
    assert result.output == "svc" + "x" * 22 + "\n"
    spec = client.sent("CreateService")[0].spec
    assert spec.annotations.name == "web" and spec.replicas == 2
    assert list(spec.task.container.args) == ["sleep", "100", "--not-an-option"]
    assert spec.task.resources.limits.memory_bytes == 64 << 20


def test_create_without_a_name_gets_a_generated_one(client):
    run(client, "create", "-d", "busybox")
    name = client.sent("CreateService")[0].spec.annotations.name
    assert "_" in name and name == name.lower()


@pytest.mark.parametrize("args, fragment", [
    (["--mode", "daemonset", "busybox"], '"--mode" flag'),
    (["--mode", "global", "--replicas", "2", "busybox"], "replicas can only be used"),
    (["--mount", "type=nfs,target=/x", "busybox"], "invalid mount type"),
])
def test_create_with_bad_flags_is_a_usage_error(client, args, fragment):
    result = run(client, "create", *args)
    assert result.exit_code == 2 and fragment in result.output
    assert client.sent("CreateService") == []


def converge_over_polls(service_ref, states):
    """An on_poll hook that walks the service's three tasks through ``states``, one per poll."""
    polls = iter(states)

    def on_poll(client):
        state = next(polls, states[-1])
        service = client.find(service_ref)
        client.tasks = [make_task(f"t{slot}", service, slot, state=state, age=0) for slot in (1, 2, 3)]
    return on_poll


def test_create_shows_progress_until_the_service_converges(client):
    client.on_poll = converge_over_polls("web", [pb.PENDING, pb.PENDING, pb.PREPARING, pb.RUNNING])
    result = run(client, "create", "--name", "web", "--replicas", "3", "busybox")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "svc" + "x" * 22
    assert "overall progress: 0 out of 3 tasks" in lines
    assert "1/3: pending   [================>                                  ]" in lines
    assert "1/3: preparing [=================================>                 ]" in lines
    assert "1/3: running   [==================================================>]" in lines
    assert lines[-2:] == ["overall progress: 3 out of 3 tasks", "verify: Service converged"]


def test_create_quiet_waits_without_progress(client):
    client.on_poll = converge_over_polls("web", [pb.RUNNING])
    result = run(client, "create", "-q", "--name", "web", "--replicas", "3", "busybox")
    assert result.exit_code == 0 and result.output.splitlines() == ["svc" + "x" * 22]


def test_create_fails_when_a_slot_keeps_failing(client):
    def on_poll(c):
        service = c.find("web")
        n = len(c.tasks)
        c.tasks.append(make_task(f"t{n}", service, 1, state=pb.REJECTED, desired=pb.SHUTDOWN, age=-n,
                                 err='pull busybox:nope: manifest unknown'))
    client.on_poll = on_poll
    result = run(client, "create", "--name", "web", "--replicas", "1", "busybox:nope")
    assert result.exit_code == 1
    assert "rejected 3 times: pull busybox:nope: manifest unknown" in result.output


def test_update_that_pauses_exits_non_zero(client):
    web = make_service()
    client.services[web.id] = web

    def on_poll(c):
        c.find("web").update_status.state = pb.UpdateStatus.PAUSED
        c.find("web").update_status.message = "update paused due to failure or early termination of task t9"
    client.on_poll = on_poll
    result = run(client, "update", "--image", "busybox:1.37", "web")
    assert result.exit_code == 1
    assert "service update paused: update paused due to failure or early termination of task t9" in result.output
    sent = client.sent("UpdateService")[0]
    assert sent.version == 7 and sent.spec.task.container.image == "busybox:1.37" and sent.spec.replicas == 3


def test_update_rolled_back_by_the_orchestrator_exits_non_zero(client):
    web = make_service()
    client.services[web.id] = web

    def on_poll(c):
        service = c.find("web")
        service.update_status.state = pb.UpdateStatus.ROLLBACK_STARTED
        service.update_status.message = "update rolled back due to failure or early termination of task t4"
        service.spec.CopyFrom(service.previous_spec)
        c.tasks = [make_task(f"t{s}", service, s, age=0) for s in (1, 2, 3)]
    client.on_poll = on_poll
    result = run(client, "update", "--image", "busybox:crash", "web")
    assert result.exit_code == 1
    assert "rollback: update rolled back due to failure" in result.output
    assert "service rolled back: update rolled back due to failure" in result.output


def test_scale_retries_when_the_service_changed_meanwhile(client):
    web = make_service()
    client.services[web.id] = web
    client.errors["UpdateService"] = [FakeRpcError(grpc.StatusCode.ABORTED, "update out of sequence")]
    result = run(client, "scale", "-d", "web=5")
    assert result.exit_code == 0, result.output
    assert result.output == "web scaled to 5\n"
    sent = client.sent("UpdateService")
    assert len(sent) == 2 and sent[-1].spec.replicas == 5 and sent[-1].spec.task == web.spec.task


def test_scale_waits_and_refuses_global_services(client):
    web = make_service()
    agent = make_service("agent", replicas=0, mode=pb.ServiceSpec.GLOBAL)
    client.services.update({web.id: web, agent.id: agent})
    client.on_poll = converge_over_polls("web", [pb.RUNNING])
    result = run(client, "scale", "web=3", "agent=2")
    assert result.exit_code == 1
    assert "web scaled to 3" in result.output and "verify: Service converged" in result.output
    assert "agent: scale can only be used with replicated or replicated-job mode" in result.output
    assert run(client, "scale", "web").exit_code == 2


def test_rollback_sends_a_rollback_and_follows_it(client):
    web = make_service()
    web.update_status.state = pb.UpdateStatus.ROLLBACK_STARTED
    web.update_status.message = "manually requested rollback"
    client.services[web.id] = web
    client.on_poll = converge_over_polls("web", [pb.STARTING, pb.RUNNING])
    result = run(client, "rollback", "web")
    assert result.exit_code == 0, result.output
    assert client.sent("UpdateService")[0].rollback
    assert result.output.splitlines()[:2] == ["web", "rollback: manually requested rollback"]
    assert "overall progress: rolling back update: 3 out of 3 tasks" in result.output


def test_rm_removes_what_exists_and_fails_for_the_rest(client):
    web = make_service()
    client.services[web.id] = web
    result = run(client, "rm", "web", "nosuch")
    assert result.exit_code == 1 and result.output.startswith("web\n")
    assert "service nosuch not found" in result.output and client.services == {}


def test_absurd_replica_counts_are_refused_before_any_call(client):
    """Issue 11: `--replicas 1000000000000` was accepted; the CLI now names the bound (the
    ControlAPI refuses it too, whatever client sends it)."""
    from common.limits import MAX_REPLICAS
    created = run(client, "create", "--name", "web", "--replicas", "1000000000000", "busybox:1.36")
    assert created.exit_code != 0 and f"at most {MAX_REPLICAS} replicas" in created.output
    scaled = run(client, "scale", "web=1000000000000")
    assert scaled.exit_code != 0 and f"at most {MAX_REPLICAS} replicas" in scaled.output
    assert not client.sent("CreateService") and not client.sent("UpdateService")
