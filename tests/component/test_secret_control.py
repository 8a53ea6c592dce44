"""SecretControl (secrets and configs of the ControlAPI) against a real store whose proposer
records every serialized change, as Raft would write it to its journal: data sealed before it
is proposed and never returned, unique names, lookups, filters, removal refused while a service
uses the object, and services resolving references by name."""

from __future__ import annotations

import pytest

from manager.controlapi import ControlError
from manager.controlapi.secrets import SecretControl
from manager.controlapi.services import ServiceControl
from manager.secretbox import SecretBox, new_key
from manager.state import Kind, MemoryStore, Store
from proto import control_pb2, objects_pb2 as pb

PLAINTEXT = b"correct horse battery staple"


class RecordingProposer:
    """Applies changes at once, like LocalProposer, and keeps the bytes of every proposal."""

    def __init__(self, memory: MemoryStore):
        self.memory = memory
        self.journal: list[bytes] = []

    async def propose(self, change, timeout):
        data = change.SerializeToString()
        self.journal.append(data)
        return self.memory.apply(type(change).FromString(data))

    def is_leader(self) -> bool:
        return True


@pytest.fixture
def proposer():
    return RecordingProposer(MemoryStore())


@pytest.fixture
def store(proposer):
    return Store(proposer.memory, proposer, clock=lambda: 1000.0)


@pytest.fixture
def key():
    return new_key()


@pytest.fixture
def control(store, key):
    return SecretControl(store, SecretBox(key))


def secret_spec(name="db-password", data=PLAINTEXT, **labels):
    spec = pb.SecretSpec(data=data)
    spec.annotations.name = name
    spec.annotations.labels.update(labels)
    return spec


def config_spec(name="app.conf", data=b"listen 80;\n"):
    spec = pb.ConfigSpec(data=data)
    spec.annotations.name = name
    return spec


async def create_secret(control, **kwargs) -> pb.Secret:
    return (await control.create_secret(control_pb2.CreateSecretRequest(spec=secret_spec(**kwargs)))).secret


async def create_service(store, name="web", secrets=(), configs=()):
    spec = pb.ServiceSpec(mode=pb.ServiceSpec.REPLICATED, replicas=1)
    spec.annotations.name = name
    spec.task.container.image = "busybox:1.36"
    for secret in secrets:
        spec.task.container.secrets.add(secret_name=secret)
    for config in configs:
        spec.task.container.configs.add(config_name=config)
    return (await ServiceControl(store).create_service(control_pb2.CreateServiceRequest(spec=spec))).service


async def test_created_secret_is_sealed_in_every_proposal_and_never_returned(control, store, proposer, key):
    created = await create_secret(control, env="prod")
    assert created.id and created.spec.annotations.name == "db-password"
    assert created.spec.annotations.labels == {"env": "prod"}
    assert created.spec.data == b"" and created.meta.version > 0
    assert proposer.journal and not any(PLAINTEXT in entry for entry in proposer.journal)
    stored = store.view().get(Kind.SECRET, created.id)
    assert SecretBox(key).open(created.id, stored.spec.data) == PLAINTEXT
    got = (await control.get_secret(control_pb2.GetSecretRequest(secret_id="db-password"))).secret
    listed = (await control.list_secrets(control_pb2.ListSecretsRequest())).secrets
    assert got.id == created.id and got.spec.data == b""
    assert [s.id for s in listed] == [created.id] and listed[0].spec.data == b""


async def test_duplicate_names_are_refused_and_nothing_is_written(control, store, proposer):
    await create_secret(control)
    before = len(proposer.journal)
    with pytest.raises(ControlError, match="secret db-password already exists") as err:
        await create_secret(control, data=b"other")
    assert err.value.code == "conflict"
    assert len(proposer.journal) == before and len(store.view().list(Kind.SECRET)) == 1


async def test_a_config_may_share_a_secrets_name_and_keeps_its_data(control, store):
    await create_secret(control, name="shared")
    config = (await control.create_config(control_pb2.CreateConfigRequest(spec=config_spec("shared")))).config
    assert config.spec.data == b"listen 80;\n"
    got = (await control.get_config(control_pb2.GetConfigRequest(config_id=config.id[:6]))).config
    assert got.spec.data == b"listen 80;\n"


async def test_invalid_specs_are_refused_naming_the_problem(control, store):
    with pytest.raises(ControlError, match="invalid name"):
        await create_secret(control, name="bad name")
    with pytest.raises(ControlError, match="less than 500 KiB"):
        await create_secret(control, data=b"x" * 600 * 1024)
    assert store.view().list(Kind.SECRET) == []


async def test_lookup_by_name_id_or_prefix_and_list_filters(control):
    a = await create_secret(control, name="alpha", env="prod")
    b = await create_secret(control, name="beta", env="dev")
    for ref in (a.id, "alpha", a.id[:8]):
        assert (await control.get_secret(control_pb2.GetSecretRequest(secret_id=ref))).secret.id == a.id
    with pytest.raises(ControlError, match="secret nope not found") as err:
        await control.get_secret(control_pb2.GetSecretRequest(secret_id="nope"))
    assert err.value.code == "not_found"

    async def names(**filters):
        response = await control.list_secrets(control_pb2.ListSecretsRequest(filters=filters))
        return [s.spec.annotations.name for s in response.secrets]

    assert await names() == ["alpha", "beta"]
    assert await names(name="be") == ["beta"]
    assert await names(label="env=prod") == ["alpha"]
    assert await names(id=b.id[:10]) == ["beta"]
    with pytest.raises(ControlError, match="invalid filter 'driver'"):
        await names(driver="x")


async def test_services_resolve_references_by_name_with_docker_defaults(control, store):
    secret = await create_secret(control)
    config = (await control.create_config(control_pb2.CreateConfigRequest(spec=config_spec()))).config
    service = await create_service(store, secrets=["db-password"], configs=["app.conf"])
    ref = service.spec.task.container.secrets[0]
    assert (ref.secret_id, ref.secret_name, ref.file.name, ref.file.uid, ref.file.gid, ref.file.mode) == (
        secret.id, "db-password", "db-password", "0", "0", 0o444)
    assert service.spec.task.container.configs[0].config_id == config.id


async def test_a_service_naming_an_unknown_secret_is_refused(control, store):
    with pytest.raises(ControlError, match="service web: secret missing not found"):
        await create_service(store, secrets=["missing"])
    assert store.view().services() == []


async def test_removal_is_refused_while_a_service_uses_it(control, store):
    secret = await create_secret(control)
    await create_service(store, name="web", secrets=["db-password"])
    await create_service(store, name="api", secrets=["db-password"])
    with pytest.raises(ControlError, match="secret 'db-password' is in use by the following services: api, web") as err:
        await control.remove_secret(control_pb2.RemoveSecretRequest(secret_id="db-password"))
    assert err.value.code == "precondition"
    assert store.view().get(Kind.SECRET, secret.id) is not None

    def drop_services(tx):
        for service in tx.list(Kind.SERVICE):
            tx.delete(service)
    await store.update(drop_services)
    await control.remove_secret(control_pb2.RemoveSecretRequest(secret_id=secret.id[:7]))
    assert store.view().get(Kind.SECRET, secret.id) is None


async def test_config_removal_names_the_service_too(control, store):
    await control.create_config(control_pb2.CreateConfigRequest(spec=config_spec()))
    await create_service(store, name="web", configs=["app.conf"])
    with pytest.raises(ControlError, match="config 'app.conf' is in use by the following service: web"):
        await control.remove_config(control_pb2.RemoveConfigRequest(config_id="app.conf"))


async def test_a_manager_without_a_secrets_key_refuses_to_store_secrets(store):
    control = SecretControl(store, SecretBox(b""))
    with pytest.raises(ControlError, match="no secrets key") as err:
        await create_secret(control)
    assert err.value.code == "unavailable"
    assert store.view().list(Kind.SECRET) == []


# ---- update (docker stack deploy of a stack whose secret or config exists) ----------------------

async def test_update_secret_changes_only_labels_and_checks_data_and_version(control):
    secret = await create_secret(control)
    version = secret.meta.version
    same = secret_spec(tier="db")                                   # the data sent again, labels changed
    updated = (await control.update_secret(control_pb2.UpdateSecretRequest(
        secret_id="db-password", version=version, spec=same))).secret
    assert dict(updated.spec.annotations.labels) == {"tier": "db"} and not updated.spec.data
    assert updated.meta.version > version
    with pytest.raises(ControlError, match="update out of sequence"):
        await control.update_secret(control_pb2.UpdateSecretRequest(secret_id=secret.id, version=version, spec=same))
    for spec in (secret_spec(data=b"other"), secret_spec(name="renamed")):
        with pytest.raises(ControlError, match="only updates to Labels are allowed") as err:
            await control.update_secret(control_pb2.UpdateSecretRequest(
                secret_id=secret.id, version=updated.meta.version, spec=spec))
        assert err.value.code == "invalid"


async def test_update_config_changes_only_labels(control):
    config = (await control.create_config(control_pb2.CreateConfigRequest(spec=config_spec()))).config
    spec = config_spec()
    spec.annotations.labels["a"] = "b"
    updated = (await control.update_config(control_pb2.UpdateConfigRequest(
        config_id="app.conf", version=config.meta.version, spec=spec))).config
    assert dict(updated.spec.annotations.labels) == {"a": "b"} and updated.spec.data == b"listen 80;\n"
    with pytest.raises(ControlError, match="only updates to Labels are allowed"):
        await control.update_config(control_pb2.UpdateConfigRequest(
            config_id="app.conf", version=updated.meta.version, spec=config_spec(data=b"listen 81;\n")))
