"""The `stack deploy` planner (shoal.stack.planner) against the real ControlAPI on an in-memory
store: what is created, left alone, updated and pruned; depends_on order; refusals (changed
secret, missing external network, foreign objects, taken ports) that leave the cluster untouched;
and when a dependency counts as up."""

from __future__ import annotations

import textwrap

import pytest

from manager.controlapi.api import ControlError
from manager.controlapi.networks import NetworkControl
from manager.controlapi.service_spec import SpecError
from manager.controlapi.services import ServiceControl
from manager.ids import new_id
from manager.state import Kind, LocalProposer, MemoryStore, Store
from proto import control_pb2, objects_pb2 as pb
from shoal.stack import NAMESPACE_LABEL, load_stack_sources
from shoal.stack.planner import (
    DIGEST_LABEL, ClusterState, DeployError, data_digest, dependency_state, digest_matches, plan_deploy, waits_for,
)

SALT = b"0123456789abcdef"

WEB = """\
services:
  web:
    image: registry:5000/shoal/busybox:latest
    command: ["httpd", "-f", "-p", "80"]
    ports: ["8080:80", "80"]
    environment: {GREETING: hello}
    deploy:
      replicas: 3
      update_config: {parallelism: 1, delay: 2s}
  worker:
    image: registry:5000/shoal/busybox:latest
    command: ["sleep", "3600"]
    networks: [backend]
    depends_on:
      db: {condition: service_healthy}
    secrets: [db_password]
  db:
    image: registry:5000/shoal/busybox:latest
    networks: [backend]
    healthcheck: {test: ["CMD", "true"], interval: 1s}
networks:
  backend: {}
secrets:
  db_password:
    file: ./pw.txt
"""


def load(text: str = WEB, secret: bytes = b"s3cret", file: str = "stack.yml"):
    return load_stack_sources([(file, textwrap.dedent(text))], {}, "/project",
                              read_bytes=lambda path: secret)


class Cluster:
    """A ControlAPI on a local store, and the plan's calls applied to it as the CLI makes them."""

    def __init__(self):
        memory = MemoryStore()
        self.store = Store(memory, LocalProposer(memory), clock=lambda: 1000.0)
        self.services = ServiceControl(self.store)
        self.networks = NetworkControl(self.store, allocation_timeout=0.01)
        self.calls: list[str] = []

    def state(self, secrets: bool = True) -> ClusterState:
        view = self.store.view()
        return ClusterState(services=list(view.services()), networks=list(view.list(Kind.NETWORK)),
                            secrets=list(view.list(Kind.SECRET)) if secrets else None,
                            configs=list(view.list(Kind.CONFIG)))

    async def add(self, *objects):
        def fn(tx):
            for obj in objects:
                tx.create(obj)
        await self.store.update(fn)

    async def apply(self, plan):
        for service in plan.prune:
            self.calls.append(f"rm {service.spec.annotations.name}")
            await self.services.remove_service(control_pb2.RemoveServiceRequest(service_id=service.id))
        for spec in plan.secrets:
            self.calls.append(f"secret {spec.annotations.name}")
            await self.add(pb.Secret(id=new_id(), spec=spec))
        for spec in plan.networks:
            self.calls.append(f"network {spec.annotations.name}")
            await self.networks.create_network(control_pb2.CreateNetworkRequest(spec=spec))
        for step in plan.services:
            if step.action == "create":
                self.calls.append(f"create {step.name}")
                await self.services.create_service(control_pb2.CreateServiceRequest(spec=step.spec))
            elif step.action == "update":
                self.calls.append(f"update {step.name}")
                current = self.store.view().services()
                version = next(s for s in current if s.id == step.current.id).meta.version
                await self.services.update_service(control_pb2.UpdateServiceRequest(
                    service_id=step.current.id, version=version, spec=step.spec))

    def normalize(self, spec: pb.ServiceSpec, current: pb.Service, without: tuple[str, ...]) -> pb.ServiceSpec:
        """The planner's Normalizer: the ControlAPI's NormalizeServiceSpec, as the CLI calls it."""
        try:
            return self.services.normalized(spec, current.id, without)
        except ControlError as err:
            raise SpecError(str(err)) from None

    def service(self, name: str) -> pb.Service:
        return next(s for s in self.store.view().services() if s.spec.annotations.name == name)


@pytest.fixture
def cluster():
    return Cluster()


def actions(plan) -> dict[str, str]:
    return {s.name: s.action for s in plan.services}


# ---- create, no-op, update one, prune -----------------------------------------------------------

async def test_first_deploy_creates_networks_secrets_then_services_in_dependency_order(cluster):
    plan = plan_deploy(load(), "app", cluster.state(), cluster.normalize, salt=SALT)
    assert [s.annotations.name for s in plan.networks] == ["app_backend", "app_default"]
    assert [s.annotations.name for s in plan.secrets] == ["app_db_password"]
    assert [s.annotations.labels[NAMESPACE_LABEL] for s in plan.networks + plan.secrets] == ["app"] * 3
    names = [s.name for s in plan.services]
    assert names.index("app_db") < names.index("app_worker")
    assert set(actions(plan).values()) == {"create"}
    worker = next(s for s in plan.services if s.name == "app_worker")
    assert worker.depends_on == (("app_db", "service_healthy"),) and waits_for(worker) == worker.depends_on
    await cluster.apply(plan)
    assert cluster.calls[:3] == ["secret app_db_password", "network app_backend", "network app_default"]
    assert cluster.calls.index("create app_db") < cluster.calls.index("create app_worker")


async def test_redeploying_the_same_files_changes_nothing(cluster):
    await cluster.apply(plan_deploy(load(), "app", cluster.state(), cluster.normalize, salt=SALT))
    before = {s.spec.annotations.name: (s.meta.version, s.spec_version) for s in cluster.store.view().services()}
    dynamic = cluster.service("app_web").spec.endpoint.ports[1].published_port
    assert dynamic >= 30000   # "80" was published on a port the ControlAPI chose
    again = plan_deploy(load(), "app", cluster.state(), cluster.normalize)
    assert set(actions(again).values()) == {"unchanged"}
    assert not again.changes_anything and not again.warnings
    assert all(waits_for(s) == () for s in again.services)
    cluster.calls.clear()
    await cluster.apply(again)
    assert cluster.calls == []
    after = {s.spec.annotations.name: (s.meta.version, s.spec_version) for s in cluster.store.view().services()}
    assert after == before


async def test_changing_one_service_updates_only_that_one(cluster):
    await cluster.apply(plan_deploy(load(), "app", cluster.state(), cluster.normalize, salt=SALT))
    web_before = cluster.service("app_web")
    changed = load(WEB.replace("GREETING: hello", "GREETING: bonjour"))
    plan = plan_deploy(changed, "app", cluster.state(), cluster.normalize)
    assert actions(plan) == {"app_web": "update", "app_worker": "unchanged", "app_db": "unchanged"}
    step = next(s for s in plan.services if s.action == "update")
    assert step.changes == ("env",)
    # the port the cluster chose for "80" is kept, not given up
    assert step.spec.endpoint.ports[1].published_port == web_before.spec.endpoint.ports[1].published_port
    await cluster.apply(plan)
    web = cluster.service("app_web")
    assert "GREETING=bonjour" in web.spec.task.container.env and web.spec_version == web_before.spec_version + 1
    assert web.spec.endpoint.ports == web_before.spec.endpoint.ports
    assert not plan_deploy(changed, "app", cluster.state(), cluster.normalize).changes_anything


async def test_prune_removes_only_the_stack_services_no_longer_in_the_files(cluster):
    await cluster.apply(plan_deploy(load(), "app", cluster.state(), cluster.normalize, salt=SALT))
    other = load("services:\n  web:\n    image: busybox\n")
    await cluster.apply(plan_deploy(other, "other", cluster.state(), cluster.normalize))
    smaller = load(WEB.replace("    ports: [\"8080:80\", \"80\"]\n", "").split("  worker:")[0])
    kept = plan_deploy(smaller, "app", cluster.state(), cluster.normalize)
    assert kept.prune == [] and any("app_db" in w and "--prune" in w for w in kept.warnings)
    plan = plan_deploy(smaller, "app", cluster.state(), cluster.normalize, prune=True)
    assert sorted(s.spec.annotations.name for s in plan.prune) == ["app_db", "app_worker"]
    await cluster.apply(plan)
    assert sorted(s.spec.annotations.name for s in cluster.store.view().services()) == ["app_web", "other_web"]


async def test_a_port_moves_from_a_pruned_service_and_a_new_network_is_joined(cluster):
    first = "services:\n  old:\n    image: busybox\n    ports: ['8080:80']\n  web:\n    image: busybox\n"
    await cluster.apply(plan_deploy(load(first), "app", cluster.state(), cluster.normalize))
    moved = ("services:\n  web:\n    image: busybox\n    ports: ['8080:80']\n    networks: [back]\n"
             "networks:\n  back: {}\n")
    with pytest.raises(DeployError, match="port 8080/tcp is already published by service app_old"):
        plan_deploy(load(moved), "app", cluster.state(), cluster.normalize)     # app_old is kept without --prune
    plan = plan_deploy(load(moved), "app", cluster.state(), cluster.normalize, prune=True)
    assert actions(plan) == {"app_web": "update"} and "networks" in plan.services[0].changes
    await cluster.apply(plan)
    web = cluster.service("app_web")
    assert [p.published_port for p in web.spec.endpoint.ports] == [8080]
    assert [a.target for a in web.spec.task.networks] == [n.id for n in cluster.store.view().list(Kind.NETWORK)
                                                        if n.spec.annotations.name == "app_back"]
    assert not plan_deploy(load(moved), "app", cluster.state(), cluster.normalize).changes_anything


async def test_a_change_the_controlapi_refuses_is_reported_with_file_and_line(cluster):
    await cluster.apply(plan_deploy(load("services:\n  web:\n    image: busybox\n"), "app", cluster.state(),
                                    cluster.normalize))
    with pytest.raises(DeployError) as caught:
        plan_deploy(load("services:\n  web:\n    image: busybox\n    deploy: {mode: global}\n"), "app",
                    cluster.state(), cluster.normalize)
    assert "stack.yml:2: service app_web: changing the mode from replicated to global" in str(caught.value)


# ---- refusals: nothing is written ----------------------------------------------------------------

async def test_a_changed_secret_is_refused_naming_it(cluster):
    await cluster.apply(plan_deploy(load(), "app", cluster.state(), cluster.normalize, salt=SALT))
    label = cluster.store.view().list(Kind.SECRET)[0].spec.annotations.labels[DIGEST_LABEL]
    assert b"s3cret".hex() not in label and "s3cret" not in label
    with pytest.raises(DeployError) as caught:
        plan_deploy(load(WEB.replace("GREETING: hello", "GREETING: changed"), secret=b"other"), "app",
                    cluster.state(), cluster.normalize)
    assert "secret app_db_password" in str(caught.value) and "cannot be changed" in str(caught.value)


def test_a_missing_external_network_is_refused_and_a_present_one_is_used(cluster):
    text = WEB.replace("backend: {}", "backend: {external: true, name: shared}")
    with pytest.raises(DeployError, match="network shared is declared as external, but could not be found"):
        plan_deploy(load(text), "app", cluster.state(), cluster.normalize)
    shared = pb.Network(id="n1", spec=pb.NetworkSpec(driver="overlay", annotations=pb.Annotations(name="shared")))
    state = cluster.state()
    plan = plan_deploy(load(text), "app", ClusterState(state.services, [shared], state.secrets, state.configs),
                       cluster.normalize)
    assert [s.annotations.name for s in plan.networks] == ["app_default"]


async def test_objects_of_the_same_name_outside_the_stack_are_refused(cluster):
    await cluster.apply(plan_deploy(load("services:\n  web:\n    image: busybox\n"), "solo", cluster.state(), cluster.normalize))
    spec = pb.ServiceSpec(replicas=1)
    spec.annotations.name = "app_db"
    spec.task.container.image = "busybox"
    await cluster.services.create_service(control_pb2.CreateServiceRequest(spec=spec))
    with pytest.raises(DeployError, match="service app_db already exists and is not part of stack app"):
        plan_deploy(load(), "app", cluster.state(), cluster.normalize)


async def test_an_ingress_port_held_by_another_service_is_refused_with_file_and_line(cluster):
    await cluster.apply(plan_deploy(load("services:\n  x:\n    image: busybox\n    ports: ['8080:80']\n"),
                                    "other", cluster.state(), cluster.normalize))
    with pytest.raises(DeployError) as caught:
        plan_deploy(load(), "app", cluster.state(), cluster.normalize)
    assert "stack.yml:2: service app_web: port 8080/tcp is already published by service other_x" in str(caught.value)


def test_secrets_on_a_cluster_without_them_are_refused(cluster):
    with pytest.raises(DeployError, match="does not offer secrets"):
        plan_deploy(load(), "app", cluster.state(secrets=False), cluster.normalize)


# ---- digests and dependencies ---------------------------------------------------------------------

@pytest.mark.parametrize("secret", [True, False])
def test_digest_matches_its_data_only(secret):
    label = data_digest(b"data", secret, SALT)
    assert digest_matches(b"data", label) is True
    assert digest_matches(b"Data", label) is False
    assert digest_matches(b"data", "something else") is None


def _service(mode=pb.ServiceSpec.REPLICATED, replicas=1):
    return pb.Service(id="s1", spec_version=2, spec=pb.ServiceSpec(mode=mode, replicas=replicas))


def _task(state, slot=1, version=2, desired=pb.RUNNING, health="", err=""):
    task = pb.Task(id=f"t{slot}{state}", service_id="s1", slot=slot, spec_version=version, desired_state=desired)
    task.status.state = state
    task.status.health = health
    task.status.err = err
    return task


@pytest.mark.parametrize("service, tasks, condition, ready", [
    (_service(), [_task(pb.RUNNING)], "service_started", True),
    (_service(), [_task(pb.STARTING, health="starting")], "service_healthy", False),
    (_service(), [_task(pb.RUNNING, version=1)], "service_started", False),       # an old spec's task
    (_service(), [_task(pb.RUNNING, desired=pb.SHUTDOWN)], "service_started", False),
    (_service(pb.ServiceSpec.REPLICATED_JOB, 2), [_task(pb.COMPLETE), _task(pb.RUNNING, 2)], "service_started", False),
    (_service(pb.ServiceSpec.REPLICATED_JOB, 2), [_task(pb.COMPLETE), _task(pb.COMPLETE, 2)], "service_started", True),
    (_service(pb.ServiceSpec.GLOBAL_JOB), [_task(pb.COMPLETE, 0)], "service_started", True),
    (_service(), [_task(pb.COMPLETE)], "service_completed_successfully", True),
    (None, [], "service_started", False),
])
def test_dependency_state(service, tasks, condition, ready):
    assert dependency_state(service, tasks, condition).ready is ready


def test_a_dependency_whose_tasks_keep_failing_is_reported_failed():
    tasks = [_task(pb.FAILED, slot=1, err=f"exit {i}") for i in range(3)]
    for i, task in enumerate(tasks):
        task.id, task.meta.created_at = f"f{i}", float(i)
    state = dependency_state(_service(), tasks, "service_started")
    assert not state.ready and state.failed == "its tasks failed 3 times (last: exit 2)"
    assert dependency_state(_service(), tasks[:2], "service_started").failed is None


# ---- the command line ---------------------------------------------------------------------------

@pytest.mark.parametrize("args, detach, wait", [
    ([], True, False), (["--detach=false"], False, False), (["--detach=true"], True, False),
    (["-d"], True, False), (["--wait"], True, True),
])
def test_deploy_accepts_dockers_detach_spellings(args, detach, wait):
    import click

    from shoal.cli.main import cli   # its lazy group gives a command docker's --flag=BOOL spellings as it loads
    stack = cli.get_command(click.Context(cli), "stack")
    stack_deploy = stack.commands["deploy"]
    params = stack_deploy.make_context("deploy", [*args, "-c", "a.yml", "web"]).params
    assert (params["detach"], params["wait"], params["name"]) == (detach, wait, "web")
