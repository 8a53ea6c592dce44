"""Five real stack files from public repositories (tests/stacks/public, origins in ORIGINS.md),
stored unchanged: each loads, converts and is planned against the real ControlAPI on an
in-memory store, and the plan applied creates every service with the mode, replicas, ports,
networks, secrets, configs and placeholders the file asks for; a second plan changes nothing."""

from __future__ import annotations

import glob
import os

import pytest

from manager.controlapi.api import ControlError
from manager.controlapi.networks import NetworkControl
from manager.controlapi.service_spec import SpecError
from manager.controlapi.services import ServiceControl
from manager.ids import new_id
from manager.state import Kind, LocalProposer, MemoryStore, Store
from proto import control_pb2, objects_pb2 as pb
from shoal.stack import load_stack_sources
from shoal.stack.planner import ClusterState, plan_deploy

HERE = os.path.join(os.path.dirname(__file__), "..", "stacks", "public")
FILES = sorted(os.path.basename(p) for p in glob.glob(os.path.join(HERE, "*.yml")))


class Cluster:
    def __init__(self):
        memory = MemoryStore()
        self.store = Store(memory, LocalProposer(memory), clock=lambda: 1000.0)
        self.services = ServiceControl(self.store)
        self.networks = NetworkControl(self.store, allocation_timeout=0.01)

    def state(self) -> ClusterState:
        view = self.store.view()
        return ClusterState(list(view.services()), list(view.list(Kind.NETWORK)),
                            list(view.list(Kind.SECRET)), list(view.list(Kind.CONFIG)))

    def normalize(self, spec, current, without):
        try:
            return self.services.normalized(spec, current.id, without)
        except ControlError as err:
            raise SpecError(str(err)) from None

    async def add(self, *objects):
        def fn(tx):
            for obj in objects:
                tx.create(obj)
        await self.store.update(fn)

    async def apply(self, plan):
        for spec in plan.secrets:
            await self.add(pb.Secret(id=new_id(), spec=spec))
        for spec in plan.configs:
            await self.add(pb.Config(id=new_id(), spec=spec))
        for spec in plan.networks:
            await self.networks.create_network(control_pb2.CreateNetworkRequest(spec=spec))
        for step in plan.services:
            assert step.action == "create"
            await self.services.create_service(control_pb2.CreateServiceRequest(spec=step.spec))

    def service(self, name: str) -> pb.Service:
        return next(s for s in self.store.view().services() if s.spec.annotations.name == name)


def load(name: str):
    with open(os.path.join(HERE, name), encoding="utf-8") as f:
        text = f.read()
    return load_stack_sources([(name, text)], {}, "/project", read_bytes=lambda path: b"content\n")


def test_the_five_files_are_here_byte_for_byte_as_published():
    assert FILES == ["atsea-sample-shop-app.yml", "docker-elk.yml", "example-voting-app.yml",
                     "portainer-agent-stack.yml", "swarmprom.yml"]
    with open(os.path.join(HERE, "ORIGINS.md"), encoding="utf-8") as f:
        origins = f.read()
    assert all(name in origins for name in FILES)


@pytest.mark.parametrize("name", FILES)
async def test_a_public_stack_file_deploys_unchanged(name):
    cluster = Cluster()
    stack = load(name)
    plan = plan_deploy(stack, "app", cluster.state(), cluster.normalize)
    await cluster.apply(plan)
    created = {s.spec.annotations.name for s in cluster.store.view().services()}
    assert created == {f"app_{s}" for s in stack.services}
    again = plan_deploy(stack, "app", cluster.state(), cluster.normalize)
    assert not again.changes_anything, [(s.name, s.changes) for s in again.services if s.action != "unchanged"]


async def test_what_the_files_ask_for_is_what_the_services_get():
    voting = Cluster()
    await voting.apply(plan_deploy(load("example-voting-app.yml"), "vote", voting.state(), voting.normalize))
    redis = voting.service("vote_redis")
    assert redis.spec.replicas == 2 and redis.spec.update.parallelism == 2 and redis.spec.update.delay == 10
    assert redis.spec.task.restart.condition == pb.RestartPolicy.ON_FAILURE
    assert [p.published_port for p in voting.service("vote_vote").spec.endpoint.ports] == [5000]
    assert list(voting.service("vote_db").spec.task.placement.constraints) == ["node.role == manager"]
    worker = voting.service("vote_worker").spec.task.restart
    assert (worker.max_attempts, worker.delay, worker.window) == (3, 10, 120)

    prom = Cluster()
    await prom.apply(plan_deploy(load("swarmprom.yml"), "mon", prom.state(), prom.normalize))
    exporter = prom.service("mon_node-exporter").spec
    assert exporter.mode == pb.ServiceSpec.GLOBAL
    assert list(exporter.task.container.env) == ["NODE_ID={{.Node.ID}}"]        # expanded on each worker
    assert "-collector.filesystem.ignored-mount-points=^/(sys|proc|dev|host|etc)($|/)" in exporter.task.container.args
    grafana = prom.service("mon_grafana").spec.task.container
    assert "GF_SECURITY_ADMIN_USER=admin" in grafana.env
    assert [c.file.name for c in prom.service("mon_caddy").spec.task.container.configs] == ["/etc/caddy/Caddyfile"]

    portainer = Cluster()
    await portainer.apply(plan_deploy(load("portainer-agent-stack.yml"), "p", portainer.state(), portainer.normalize))
    agent = portainer.service("p_agent").spec
    assert agent.endpoint.ports[0].publish_mode == pb.PortConfig.HOST and agent.endpoint.ports[0].published_port == 9001
    assert list(agent.task.placement.constraints) == ["node.platform.os == linux"]

    shop = Cluster()
    await shop.apply(plan_deploy(load("atsea-sample-shop-app.yml"), "shop", shop.state(), shop.normalize))
    ref = shop.service("shop_appserver").spec.task.container.secrets[0]
    assert (ref.secret_name, ref.file.name, ref.file.mode) == ("shop_postgres_password", "postgres_password", 0o444)
