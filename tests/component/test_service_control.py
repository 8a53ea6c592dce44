"""ServiceControl against a store with a LocalProposer: create, lookup, update with
compare-and-set, rollback, remove, list statuses and `service ps` filters."""

from __future__ import annotations

import pytest

from manager.controlapi import ControlError
from manager.controlapi.services import ServiceControl
from manager.state import Kind, LocalProposer, MemoryStore, Store
from proto import control_pb2, objects_pb2 as pb


def make_store(now=lambda: 1000.0) -> Store:
    memory = MemoryStore()
    return Store(memory, LocalProposer(memory), clock=now)


@pytest.fixture
def store():
    return make_store()


@pytest.fixture
def control(store):
    return ServiceControl(store)


def make_spec(name="web", image="busybox:1.36", replicas=2, mode=pb.ServiceSpec.REPLICATED, **container):
    spec = pb.ServiceSpec(mode=mode, replicas=replicas)
    spec.annotations.name = name
    spec.task.container.image = image
    for key, value in container.items():
        getattr(spec.task.container, key).extend(value) if isinstance(value, list) else setattr(
            spec.task.container, key, value)
    return spec


async def create(control, **kwargs) -> pb.Service:
    return (await control.create_service(control_pb2.CreateServiceRequest(spec=make_spec(**kwargs)))).service


async def add(store, *objects):
    def fn(tx):
        for obj in objects:
            tx.create(obj)
    await store.update(fn)


def make_node(node_id, hostname, state=pb.NodeStatus.READY):
    node = pb.Node(id=node_id)
    node.description.hostname = hostname
    node.status.state = state
    return node


def make_task(task_id, service, slot=0, node_id="", state=pb.RUNNING, desired=pb.RUNNING, created=1.0,
              spec_version=None):
    task = pb.Task(id=task_id, service_id=service.id, slot=slot, node_id=node_id, desired_state=desired,
                   spec_version=service.spec_version if spec_version is None else spec_version)
    task.status.state = state
    task.meta.created_at = created
    return task


# ---- create and get --------------------------------------------------------------------------

async def test_create_writes_the_service_with_an_id_and_spec_version_1(control, store):
    service = await create(control)
    stored = store.view().get(Kind.SERVICE, service.id)
    assert len(service.id) == 25 and stored.spec_version == 1
    assert stored.spec.annotations.name == "web" and stored.spec.task.container.image == "busybox:1.36"
    assert not stored.HasField("previous_spec")
    assert store.view().tasks() == []   # tasks are the orchestrator's to make


async def test_create_refuses_a_second_service_with_the_same_name(control, store):
    await create(control)
    with pytest.raises(ControlError) as err:
        await create(control, image="nginx")
    assert err.value.code == "conflict" and "service web already exists" in str(err.value)
    assert len(store.view().services()) == 1


@pytest.mark.parametrize("kwargs, code, fragment", [
    ({"image": ""}, "invalid", "service web: image is required"),
    ({"name": ""}, "invalid", "name is required"),
    ({"mode": pb.ServiceSpec.GLOBAL, "replicas": 3}, "invalid", "invalid --replicas for mode global"),
])
async def test_create_rejects_bad_specs_and_writes_nothing(control, store, kwargs, code, fragment):
    with pytest.raises(ControlError) as err:
        await create(control, **kwargs)
    assert err.value.code == code and fragment in str(err.value)
    assert store.view().services() == []


async def test_get_resolves_full_id_name_and_unique_prefix(control, store):
    web = await create(control)
    for ref in (web.id, "web", web.id[:6]):
        got = await control.get_service(control_pb2.GetServiceRequest(service_id=ref))
        assert got.service.id == web.id
    with pytest.raises(ControlError) as err:
        await control.get_service(control_pb2.GetServiceRequest(service_id="nosuch"))
    assert err.value.code == "not_found" and "service nosuch not found" in str(err.value)


async def test_an_ambiguous_prefix_is_refused(store, control):
    await add(store, pb.Service(id="abc111", spec=make_spec("one")), pb.Service(id="abc222", spec=make_spec("two")))
    with pytest.raises(ControlError) as err:
        await control.get_service(control_pb2.GetServiceRequest(service_id="abc"))
    assert err.value.code == "invalid" and "ambiguous" in str(err.value)


async def test_ingress_ports_are_unique_across_services_and_get_a_number_when_left_out(control):
    spec = make_spec()
    spec.endpoint.ports.add(target_port=80, published_port=8080)
    spec.endpoint.ports.add(target_port=81)
    web = (await control.create_service(control_pb2.CreateServiceRequest(spec=spec))).service
    assert [p.published_port for p in web.spec.endpoint.ports] == [8080, 30000]
    other = make_spec("api")
    other.endpoint.ports.add(target_port=9000, published_port=8080)
    with pytest.raises(ControlError, match=r"port 8080/tcp is already in use by service web"):
        await control.create_service(control_pb2.CreateServiceRequest(spec=other))
    other.endpoint.ports[0].protocol = pb.PortConfig.UDP     # another protocol is another port
    await control.create_service(control_pb2.CreateServiceRequest(spec=other))


async def test_networks_and_secrets_are_resolved_to_ids(control, store):
    net = pb.Network(id="net123")
    net.spec.annotations.name = "backend"
    ingress = pb.Network(id="ing123")
    ingress.spec.annotations.name = "ingress"
    ingress.spec.ingress = True
    secret = pb.Secret(id="sec123")
    secret.spec.annotations.name = "dbpass"
    await add(store, net, ingress, secret)
    spec = make_spec()
    spec.task.networks.add(target="backend")
    spec.task.container.secrets.add(secret_name="dbpass")
    web = (await control.create_service(control_pb2.CreateServiceRequest(spec=spec))).service
    assert web.spec.task.networks[0].target == "net123"
    ref = web.spec.task.container.secrets[0]
    assert (ref.secret_id, ref.secret_name, ref.file.name) == ("sec123", "dbpass", "dbpass")
    for target, fragment in (("nosuch", "network nosuch not found"), ("ingress", "is the ingress network")):
        bad = make_spec("api")
        bad.task.networks.add(target=target)
        with pytest.raises(ControlError, match=fragment):
            await control.create_service(control_pb2.CreateServiceRequest(spec=bad))


# ---- update and rollback ---------------------------------------------------------------------

async def update(control, service, spec=None, version=None, rollback=False):
    request = control_pb2.UpdateServiceRequest(service_id=service.id, rollback=rollback,
                                               version=service.meta.version if version is None else version)
    if spec is not None:
        request.spec.CopyFrom(spec)
    return (await control.update_service(request)).service


async def test_update_keeps_the_previous_spec_and_bumps_spec_version_for_a_new_image(control):
    web = await create(control)
    spec = pb.ServiceSpec()
    spec.CopyFrom(web.spec)
    spec.task.container.image = "busybox:1.37"
    updated = await update(control, web, spec)
    assert updated.spec_version == 2 and updated.spec.task.container.image == "busybox:1.37"
    assert updated.previous_spec.task.container.image == "busybox:1.36"
    assert updated.meta.version > web.meta.version


async def test_scaling_alone_does_not_bump_spec_version_nor_reset_an_update_in_progress(control, store):
    web = await create(control)

    def updating(tx):
        svc = pb.Service()
        svc.CopyFrom(tx.get(Kind.SERVICE, web.id))
        svc.update_status.state = pb.UpdateStatus.UPDATING
        svc.update_status.started_at = 5.0
        tx.update(svc)
    await store.update(updating)
    web = store.view().get(Kind.SERVICE, web.id)
    spec = pb.ServiceSpec()
    spec.CopyFrom(web.spec)
    spec.replicas = 5
    scaled = await update(control, web, spec)
    assert scaled.spec.replicas == 5 and scaled.spec_version == 1
    assert scaled.update_status.state == pb.UpdateStatus.UPDATING and scaled.update_status.started_at == 5.0


async def test_update_with_a_stale_version_is_a_conflict_and_changes_nothing(control, store):
    web = await create(control)
    spec = pb.ServiceSpec()
    spec.CopyFrom(web.spec)
    spec.replicas = 3
    await update(control, web, spec)
    spec.replicas = 9
    with pytest.raises(ControlError) as err:
        await update(control, web, spec)         # web still carries the version read before
    assert err.value.code == "conflict" and "out of sequence" in str(err.value)
    assert store.view().get(Kind.SERVICE, web.id).spec.replicas == 3


async def test_an_update_after_only_system_writes_is_in_sequence(control, store):
    """`docker stack deploy` twice in a row: the client read the service, then the allocator or the
    orchestrator wrote it (endpoint, update status). The client saw the current spec, so its update
    applies; found by the Docker API test in a quiet CI run ("update out of sequence")."""
    web = await create(control)

    def system_write(tx):
        svc = pb.Service()
        svc.CopyFrom(tx.get(Kind.SERVICE, web.id))
        svc.update_status.message = "the orchestrator was here"
        tx.update(svc)
    await store.update(system_write)
    assert store.view().get(Kind.SERVICE, web.id).meta.version > web.meta.version
    spec = pb.ServiceSpec()
    spec.CopyFrom(web.spec)
    spec.replicas = 4
    first = await update(control, web, spec)                 # web: the version read before the system write
    assert first.spec.replicas == 4

    spec.replicas = 7                                          # a second client that read what `web` read
    with pytest.raises(ControlError) as err:
        await update(control, web, spec)
    assert err.value.code == "conflict" and "out of sequence" in str(err.value)
    assert store.view().get(Kind.SERVICE, web.id).spec.replicas == 4


async def test_a_service_written_before_spec_base_version_needs_the_current_version(control, store):
    web = await create(control)

    def as_written_by_an_older_release(tx):
        svc = pb.Service()
        svc.CopyFrom(tx.get(Kind.SERVICE, web.id))
        svc.ClearField("spec_base_version")
        tx.update(svc)
    await store.update(as_written_by_an_older_release)
    spec = pb.ServiceSpec()
    spec.CopyFrom(web.spec)
    spec.replicas = 4
    with pytest.raises(ControlError, match="out of sequence"):
        await update(control, web, spec)
    current = store.view().get(Kind.SERVICE, web.id)
    assert (await update(control, current, spec)).spec.replicas == 4


async def test_update_refuses_renames_and_mode_changes(control):
    web = await create(control)
    for field, value, fragment in (("name", "api", "renaming"), ("mode", pb.ServiceSpec.REPLICATED_JOB, "mode")):
        spec = pb.ServiceSpec()
        spec.CopyFrom(web.spec)
        if field == "name":
            spec.annotations.name = value
        else:
            spec.mode = value
        with pytest.raises(ControlError, match=fragment) as err:
            await update(control, web, spec)
        assert err.value.code == "invalid"


async def test_update_clears_a_paused_update_so_the_orchestrator_resumes(control, store):
    web = await create(control)

    def paused(tx):
        svc = pb.Service()
        svc.CopyFrom(tx.get(Kind.SERVICE, web.id))
        svc.update_status.state = pb.UpdateStatus.PAUSED
        tx.update(svc)
    await store.update(paused)
    web = store.view().get(Kind.SERVICE, web.id)
    spec = pb.ServiceSpec()
    spec.CopyFrom(web.spec)
    spec.replicas = 4
    assert (await update(control, web, spec)).update_status.state == pb.UpdateStatus.UNKNOWN


async def test_rollback_swaps_the_specs_and_starts_a_rollback(control):
    web = await create(control)
    spec = pb.ServiceSpec()
    spec.CopyFrom(web.spec)
    spec.task.container.image = "busybox:1.37"
    web = await update(control, web, spec)
    back = await update(control, web, rollback=True)
    assert back.spec.task.container.image == "busybox:1.36"
    assert back.previous_spec.task.container.image == "busybox:1.37"
    assert back.spec_version == 3
    assert back.update_status.state == pb.UpdateStatus.ROLLBACK_STARTED
    assert back.update_status.message == "manually requested rollback"


async def test_rolling_back_a_scale_restores_replicas_and_is_complete_at_once(control):
    web = await create(control)
    spec = pb.ServiceSpec()
    spec.CopyFrom(web.spec)
    spec.replicas = 7
    web = await update(control, web, spec)
    back = await update(control, web, rollback=True)
    assert back.spec.replicas == 2 and back.spec_version == 1
    assert back.update_status.state == pb.UpdateStatus.ROLLBACK_COMPLETED


async def test_rollback_without_a_previous_spec_is_refused(control):
    web = await create(control)
    with pytest.raises(ControlError) as err:
        await update(control, web, rollback=True)
    assert err.value.code == "precondition"
    assert str(err.value) == "service web does not have a previous spec"


# ---- remove ----------------------------------------------------------------------------------

async def test_remove_deletes_the_service_and_leaves_its_tasks_to_the_orchestrator(control, store):
    web = await create(control)
    await add(store, make_task("t1", web, slot=1))
    await control.remove_service(control_pb2.RemoveServiceRequest(service_id="web"))
    assert store.view().services() == []
    assert [t.id for t in store.view().tasks()] == ["t1"]
    with pytest.raises(ControlError) as err:
        await control.remove_service(control_pb2.RemoveServiceRequest(service_id="web"))
    assert err.value.code == "not_found"


# ---- list services and their statuses --------------------------------------------------------

async def test_list_services_counts_running_desired_and_completed(control, store):
    web = await create(control, replicas=3)
    agent = await create(control, name="agent", mode=pb.ServiceSpec.GLOBAL, replicas=0)
    job = await create(control, name="migrate", mode=pb.ServiceSpec.REPLICATED_JOB, replicas=3)
    await add(store, make_node("n1", "one"), make_node("n2", "two"), make_node("n3", "three", pb.NodeStatus.DOWN),
              make_task("w1", web, slot=1, node_id="n1"),
              make_task("w2", web, slot=2, node_id="n2", state=pb.STARTING),
              make_task("w3", web, slot=3, node_id="n1", desired=pb.SHUTDOWN),   # on its way out
              make_task("a1", agent, node_id="n1"),
              make_task("a2", agent, node_id="n2", state=pb.PREPARING),
              make_task("a3", agent, node_id="n3"),                             # its node is down
              make_task("j1", job, slot=1, node_id="n1", state=pb.COMPLETE, desired=pb.COMPLETE),
              make_task("j2", job, slot=2, node_id="n2"),
              make_task("j3", job, slot=3, node_id="n2", state=pb.COMPLETE, spec_version=0))   # an older run
    response = await control.list_services(control_pb2.ListServicesRequest())
    assert [s.spec.annotations.name for s in response.services] == ["agent", "migrate", "web"]
    counts = {s.service_id: (s.running_tasks, s.desired_tasks, s.completed_tasks) for s in response.statuses}
    assert counts[web.id] == (1, 3, 0)
    assert counts[agent.id] == (1, 2, 0)
    assert counts[job.id] == (1, 2, 1)


async def test_list_services_filters(control):
    await create(control, name="web")
    await create(control, name="webapi")
    agent = make_spec("agent", mode=pb.ServiceSpec.GLOBAL, replicas=0)
    agent.annotations.labels["tier"] = "infra"
    await control.create_service(control_pb2.CreateServiceRequest(spec=agent))

    async def names(**filters):
        response = await control.list_services(control_pb2.ListServicesRequest(filters=filters))
        return [s.spec.annotations.name for s in response.services]

    assert await names(name="web") == ["web", "webapi"]
    assert await names(mode="global") == ["agent"]
    assert await names(label="tier=infra") == ["agent"]
    assert await names(label="tier=app") == []


# ---- list tasks (service ps) -----------------------------------------------------------------

@pytest.fixture
async def cluster(control, store):
    web = await create(control, replicas=2)
    api = await create(control, name="api", replicas=1)
    await add(store, make_node("node-aaa", "one"), make_node("node-bbb", "two"),
              make_task("t-web1-new", web, slot=1, node_id="node-aaa", created=3.0),
              make_task("t-web1-old", web, slot=1, node_id="node-bbb", state=pb.FAILED, desired=pb.SHUTDOWN,
                        created=2.0),
              make_task("t-web2", web, slot=2, node_id="node-bbb", created=1.0),
              make_task("t-api1", api, slot=1, node_id="node-aaa", state=pb.ACCEPTED, created=1.0))
    return web, api


async def task_ids(control, **filters):
    response = await control.list_tasks(control_pb2.ListTasksRequest(filters=filters))
    return [t.id for t in response.tasks]


async def test_list_tasks_filters_like_service_ps(control, cluster):
    web, _ = cluster
    assert await task_ids(control, service="web") == ["t-web1-new", "t-web1-old", "t-web2"]
    assert await task_ids(control, service=web.id[:5]) == ["t-web1-new", "t-web1-old", "t-web2"]
    assert await task_ids(control, service="web", **{"desired-state": "running"}) == ["t-web1-new", "t-web2"]
    assert await task_ids(control, **{"desired-state": "shutdown"}) == ["t-web1-old"]
    assert await task_ids(control, node="two") == ["t-web1-old", "t-web2"]
    assert await task_ids(control, node="node-a") == ["t-api1", "t-web1-new"]
    assert await task_ids(control, id="t-web1") == ["t-web1-new", "t-web1-old"]
    assert await task_ids(control, name="web.2") == ["t-web2"]
    assert await task_ids(control, service="web,api") == ["t-api1", "t-web1-new", "t-web1-old", "t-web2"]


async def test_list_tasks_label_filter_reads_the_service_labels(control, store):
    """`docker stack ps NS`: GET /tasks?filters={"label":{"com.docker.stack.namespace=NS":true}}."""
    stacked = make_spec("app_web")
    stacked.annotations.labels["com.docker.stack.namespace"] = "app"
    web = (await control.create_service(control_pb2.CreateServiceRequest(spec=stacked))).service
    other = await create(control, name="other")
    orphan = make_task("t-orphan", other, slot=2)
    orphan.service_id = "gone"                      # its service removed: its own labels are read
    orphan.annotations.labels["com.docker.stack.namespace"] = "app"
    await add(store, make_task("t-web1", web, slot=1), make_task("t-other1", other, slot=1), orphan)
    assert await task_ids(control, label="com.docker.stack.namespace=app") == ["t-web1", "t-orphan"]
    assert await task_ids(control, label="com.docker.stack.namespace") == ["t-web1", "t-orphan"]
    assert await task_ids(control, label="com.docker.stack.namespace=other") == []


async def test_list_tasks_rejects_unknown_filters_and_services(control, cluster):
    with pytest.raises(ControlError, match="invalid filter 'colour'"):
        await task_ids(control, colour="blue")
    with pytest.raises(ControlError, match="desired-state=sleeping"):
        await task_ids(control, **{"desired-state": "sleeping"})
    with pytest.raises(ControlError) as err:
        await task_ids(control, service="nosuch")
    assert err.value.code == "not_found"


async def test_get_task_by_id_and_prefix(control, cluster):
    assert (await control.get_task(control_pb2.GetTaskRequest(task_id="t-web2"))).task.slot == 2
    assert (await control.get_task(control_pb2.GetTaskRequest(task_id="t-api"))).task.id == "t-api1"
    with pytest.raises(ControlError) as err:
        await control.get_task(control_pb2.GetTaskRequest(task_id="t-web1"))
    assert err.value.code == "invalid"


async def test_rollback_is_checked_against_what_changed_since(control, store):
    spec = make_spec()
    spec.endpoint.ports.add(target_port=80, published_port=8080)
    web = (await control.create_service(control_pb2.CreateServiceRequest(spec=spec))).service
    unpublished = pb.ServiceSpec()
    unpublished.CopyFrom(web.spec)
    del unpublished.endpoint.ports[:]
    web = await update(control, web, unpublished)
    api = make_spec("api")
    api.endpoint.ports.add(target_port=80, published_port=8080)
    await control.create_service(control_pb2.CreateServiceRequest(spec=api))
    with pytest.raises(ControlError, match="port 8080/tcp is already in use by service api"):
        await update(control, web, rollback=True)
    assert not store.view().get(Kind.SERVICE, web.id).spec.endpoint.ports


# ---- NormalizeServiceSpec: what create/update would store, nothing written ----------------------

def _with_port(spec: pb.ServiceSpec, target: int, published: int = 0) -> pb.ServiceSpec:
    spec.endpoint.ports.append(pb.PortConfig(target_port=target, published_port=published,
                                             publish_mode=pb.PortConfig.INGRESS))
    return spec


async def test_an_update_keeps_the_port_the_cluster_chose_when_the_spec_gives_none(control):
    first = await control.create_service(control_pb2.CreateServiceRequest(spec=_with_port(make_spec("a"), 80)))
    second = await control.create_service(control_pb2.CreateServiceRequest(spec=_with_port(make_spec("b"), 80)))
    assert [p.published_port for p in second.service.spec.endpoint.ports] == [30001]
    await control.remove_service(control_pb2.RemoveServiceRequest(service_id=first.service.id))
    # b again without a number (as a redeployed stack file says it): 30000 is free now, but b keeps 30001
    again = _with_port(make_spec("b", image="busybox:1.37"), 80)
    assert [p.published_port for p in control.normalized(again, "b").endpoint.ports] == [30001]
    updated = await control.update_service(control_pb2.UpdateServiceRequest(service_id="b", spec=again))
    assert [p.published_port for p in updated.service.spec.endpoint.ports] == [30001]


async def test_normalize_resolves_like_create_and_writes_nothing(control, store):
    await add(store, pb.Secret(id="sec1", spec=pb.SecretSpec(annotations=pb.Annotations(name="pw"))))
    spec = make_spec("web")
    spec.task.container.secrets.append(pb.SecretReference(secret_name="pw"))
    response = await control.normalize_service_spec(control_pb2.NormalizeServiceSpecRequest(spec=spec))
    ref = response.spec.task.container.secrets[0]
    assert (ref.secret_id, ref.file.name, ref.file.uid, ref.file.gid, ref.file.mode) == ("sec1", "pw", "0", "0", 0o444)
    assert store.view().services() == []
    created = await control.create_service(control_pb2.CreateServiceRequest(spec=spec))
    assert created.service.spec == response.spec


async def test_normalize_refuses_what_update_refuses(control):
    await control.create_service(control_pb2.CreateServiceRequest(spec=_with_port(make_spec("a"), 80, 8080)))
    await create(control, name="web")
    with pytest.raises(ControlError, match="port 8080/tcp is already in use by service a"):
        control.normalized(_with_port(make_spec("web"), 80, 8080), "web")
    with pytest.raises(ControlError, match="changing the mode"):
        control.normalized(make_spec("web", mode=pb.ServiceSpec.GLOBAL, replicas=0), "web")
    a = next(s for s in control._store.view().services() if s.spec.annotations.name == "a")
    # as if `a` were pruned first, its port is free for web
    taken = control.normalized(_with_port(make_spec("web"), 80, 8080), "web", [a.id])
    assert taken.endpoint.ports[0].published_port == 8080


class RacingProposer:
    """LocalProposer, except that its first proposal lets another writer commit first: the
    orchestrator's update-status write landing between `service rm`'s read and its commit, as it
    does on a Raft leader right after a rolling update (found by bench/converge.py)."""

    def __init__(self, inner, before):
        self.inner, self.before = inner, before

    def __getattr__(self, name):
        return getattr(self.inner, name)

    async def propose(self, change, timeout):
        before, self.before = self.before, None
        if before is not None:
            await before()
        return await self.inner.propose(change, timeout)


async def test_service_rm_succeeds_when_the_service_changes_under_it():
    memory = MemoryStore()
    store = Store(memory, LocalProposer(memory), clock=lambda: 1000.0)
    control = ServiceControl(store)
    service = await create(control)

    async def status_write():
        def bump(tx):
            current = tx.get(Kind.SERVICE, service.id)
            new = pb.Service()
            new.CopyFrom(current)
            new.update_status.state = pb.UpdateStatus.COMPLETED
            tx.update(new)
        await store.update(bump)

    store.proposer = RacingProposer(store.proposer, status_write)
    await control.remove_service(control_pb2.RemoveServiceRequest(service_id="web"))
    assert store.view().get(Kind.SERVICE, service.id) is None
