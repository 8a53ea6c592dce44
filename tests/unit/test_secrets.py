"""Secrets and configs without a cluster: sealing at rest, what a node is sent (and when it is
taken back), how a task's references become files of its container, the runtime's checks of
those files, and the CLI's rendering (a secret's data never shows)."""

from __future__ import annotations

import base64

import pytest

from agent_runtime.errors import InvalidArgument
from agent_runtime.files import decode, without_data
from agent_runtime.spec import ContainerSpec, File, Mount, validate_spec
from manager.controlapi.secrets import CONFIGS, SECRETS, check_spec, matches
from manager.controlapi.api import ControlError
from manager.dispatcher.assignments import assigned_objects, assigned_set, diff
from manager.secretbox import SecretBox, SecretBoxError, is_sealed, new_key
from proto import cluster_pb2, objects_pb2 as pb
from shoal.cli.secrets import CONFIG, SECRET, inspect_json, ls_row, summary
from tests.support.store import store_with
from worker.executor import container_files, container_spec

PLAINTEXT = b"hunter2-very-secret"


# ---- sealing ------------------------------------------------------------------------------------

def test_sealed_data_hides_the_plaintext_and_opens_back():
    box = SecretBox(new_key())
    sealed = box.seal("s1", PLAINTEXT)
    assert is_sealed(sealed)
    assert PLAINTEXT not in sealed
    assert box.open("s1", sealed) == PLAINTEXT


def test_each_seal_uses_a_fresh_nonce():
    box = SecretBox(new_key())
    assert box.seal("s1", PLAINTEXT) != box.seal("s1", PLAINTEXT)


@pytest.mark.parametrize("tamper", [
    lambda box, sealed: SecretBox(new_key()).open("s1", sealed),          # another cluster's key
    lambda box, sealed: box.open("s2", sealed),                           # moved to another secret
    lambda box, sealed: box.open("s1", sealed[:-1] + bytes([sealed[-1] ^ 1])),  # tampered
    lambda box, sealed: box.open("s1", PLAINTEXT),                        # never sealed
    lambda box, sealed: box.open("s1", sealed[:20]),                      # truncated
])
def test_opening_refuses_what_this_key_did_not_seal_for_this_secret(tamper):
    box = SecretBox(new_key())
    sealed = box.seal("s1", PLAINTEXT)
    with pytest.raises(SecretBoxError, match="s1|s2"):
        tamper(box, sealed)


def test_without_a_key_nothing_is_sealed_in_plaintext_instead():
    with pytest.raises(SecretBoxError, match="no secrets key"):
        SecretBox(b"").seal("s1", PLAINTEXT)
    with pytest.raises(SecretBoxError, match="32 bytes"):
        SecretBox(b"short")


# ---- spec rules ---------------------------------------------------------------------------------

def secret_spec(name="db-password", data=PLAINTEXT, **labels) -> pb.SecretSpec:
    spec = pb.SecretSpec(data=data)
    spec.annotations.name = name
    spec.annotations.labels.update(labels)
    return spec


@pytest.mark.parametrize("name", ["a", "db_password", "db.password-2", "A1", "x" * 64])
def test_docker_names_are_accepted(name):
    check_spec(secret_spec(name), SECRETS)


@pytest.mark.parametrize("name,why", [("", "name is required"), ("-lead", "invalid name"),
                                      ("trail.", "invalid name"), ("sp ace", "invalid name"),
                                      ("sl/ash", "invalid name"), ("x" * 65, "invalid name")])
def test_bad_names_are_refused_with_the_reason(name, why):
    with pytest.raises(ControlError, match=why) as err:
        check_spec(secret_spec(name), SECRETS)
    assert err.value.code == "invalid"


def test_data_must_be_between_one_byte_and_the_docker_limit():
    with pytest.raises(ControlError, match="larger than 0 and less than 500 KiB"):
        check_spec(secret_spec(data=b""), SECRETS)
    with pytest.raises(ControlError, match="500 KiB"):
        check_spec(secret_spec(data=b"x" * (500 * 1024)), SECRETS)
    check_spec(secret_spec(data=b"x" * (500 * 1024 - 1)), SECRETS)
    config = pb.ConfigSpec(data=b"x" * (600 * 1024))
    config.annotations.name = "big"
    check_spec(config, CONFIGS)     # configs may be up to 1000 KiB


def test_list_filters_match_id_and_name_prefixes_and_labels():
    secret = pb.Secret(id="abc123", spec=secret_spec("db-password", env="prod"))
    assert matches(secret, {"name": "db"}) and matches(secret, {"id": "abc"})
    assert matches(secret, {"label": "env"}) and matches(secret, {"label": "env=prod"})
    assert not matches(secret, {"name": "password"})
    assert not matches(secret, {"label": "env=dev"})


# ---- what a node is sent ----------------------------------------------------------------------

def make_task(task_id, node="n1", state=pb.RUNNING, desired=pb.RUNNING, secrets=(), configs=()):
    task = pb.Task(id=task_id, node_id=node, service_id="svc", slot=1, desired_state=desired)
    task.annotations.name = "web.1"
    task.status.state = state
    task.spec.container.image = "shoal/busybox:latest"
    for secret_id in secrets:
        task.spec.container.secrets.add(secret_id=secret_id, secret_name=f"name-{secret_id}")
    for config_id in configs:
        task.spec.container.configs.add(config_id=config_id, config_name=f"name-{config_id}")
    return task


def sealed_secret(box: SecretBox, secret_id: str, data: bytes) -> pb.Secret:
    return pb.Secret(id=secret_id, spec=pb.SecretSpec(data=box.seal(secret_id, data)))


def opener(box: SecretBox):
    def open_secret(secret):
        out = pb.Secret()
        out.CopyFrom(secret)
        out.spec.data = box.open(secret.id, secret.spec.data)
        return out
    return open_secret


async def test_a_node_gets_only_the_secrets_and_configs_of_its_own_tasks_opened():
    box = SecretBox(new_key())
    store = await store_with(
        make_task("t1", secrets=["s1"], configs=["c1"]), make_task("t2", node="n2", secrets=["s2"], configs=["c2"]),
        sealed_secret(box, "s1", b"one"), sealed_secret(box, "s2", b"two"), sealed_secret(box, "s3", b"three"),
        pb.Config(id="c1", spec=pb.ConfigSpec(data=b"conf1")), pb.Config(id="c2", spec=pb.ConfigSpec(data=b"conf2")))
    current = assigned_set(store.view(), "n1", opener(box))
    assert set(current) == {("task", "t1"), ("secret", "s1"), ("config", "c1")}
    assert current[("secret", "s1")].secret.spec.data == b"one"          # opened for sending
    assert current[("config", "c1")].config.spec.data == b"conf1"
    assert is_sealed(store.view().get(*_secret_key("s1")).spec.data)     # the store keeps it sealed


def _secret_key(secret_id):
    from manager.state import Kind
    return Kind.SECRET, secret_id


async def test_a_secret_is_taken_back_once_no_task_there_is_meant_to_run():
    box = SecretBox(new_key())
    store = await store_with(make_task("t1", secrets=["s1"]), make_task("t2", secrets=["s1"]),
                             sealed_secret(box, "s1", b"one"))
    sent = {}
    changes, sent = diff(sent, assigned_objects(store.view(), "n1", opener(box)))
    assert ("secret", "s1") in sent

    async def stop(task_id):
        def fn(tx):
            from manager.state import Kind
            task = pb.Task()
            task.CopyFrom(tx.get(Kind.TASK, task_id))
            task.desired_state = pb.SHUTDOWN
            tx.update(task)
        await store.update(fn)

    await stop("t1")
    changes, sent = diff(sent, assigned_objects(store.view(), "n1", opener(box)))
    assert ("secret", "s1") in sent          # t2 still uses it
    assert not any(c.action == cluster_pb2.AssignmentChange.REMOVE for c in changes)
    await stop("t2")
    changes, sent = diff(sent, assigned_objects(store.view(), "n1", opener(box)))
    removes = [c for c in changes if c.action == cluster_pb2.AssignmentChange.REMOVE]
    assert [(c.assignment.WhichOneof("item"), c.assignment.secret.id) for c in removes] == [("secret", "s1")]
    assert removes[0].assignment.secret.spec.data == b""                 # a removal carries no data
    assert {("task", "t1"), ("task", "t2")} <= set(sent)                # stopped tasks stay listed


async def test_a_secret_that_cannot_be_opened_is_not_sent():
    box = SecretBox(new_key())
    store = await store_with(make_task("t1", secrets=["s1"]), sealed_secret(box, "s1", b"one"))
    current = assigned_set(store.view(), "n1", lambda secret: None)
    assert set(current) == {("task", "t1")}


# ---- a task's files -------------------------------------------------------------------------------

def test_references_become_files_at_docker_targets_with_owner_and_mode():
    task = make_task("t1", secrets=["s1", "s2"], configs=["c1", "c2"])
    container = task.spec.container
    container.secrets[1].file.name = "custom"
    container.secrets[1].file.uid, container.secrets[1].file.gid, container.secrets[1].file.mode = "1000", "2000", 0o400
    container.configs[0].file.name = "/etc/app/app.conf"
    secrets = {"s1": pb.Secret(id="s1", spec=pb.SecretSpec(data=b"one")),
               "s2": pb.Secret(id="s2", spec=pb.SecretSpec(data=b"two"))}
    configs = {"c1": pb.Config(id="c1", spec=pb.ConfigSpec(data=b"conf1")),
               "c2": pb.Config(id="c2", spec=pb.ConfigSpec(data=b"conf2"))}
    files = container_files(task, secrets, configs)
    assert [(f.target, base64.b64decode(f.data), f.uid, f.gid, f.mode) for f in files] == [
        ("/run/secrets/name-s1", b"one", 0, 0, 0o444),
        ("/run/secrets/custom", b"two", 1000, 2000, 0o400),
        ("/etc/app/app.conf", b"conf1", 0, 0, 0o444),
        ("/name-c2", b"conf2", 0, 0, 0o444),
    ]
    assert container_spec(task, secrets, configs).files == files


def test_a_task_whose_secret_was_not_sent_cannot_be_made_into_a_container():
    with pytest.raises(ValueError, match="secret name-s1 .s1. was not sent to this node"):
        container_spec(make_task("t1", secrets=["s1"]), {}, {})


def test_a_non_numeric_owner_is_refused():
    task = make_task("t1", secrets=["s1"])
    task.spec.container.secrets[0].file.uid = "app"
    with pytest.raises(ValueError, match="uid: 'app' is not a numeric ID"):
        container_files(task, {"s1": pb.Secret(id="s1")}, {})


# ---- the runtime's side -------------------------------------------------------------------------

def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_runtime_decodes_files_and_keeps_a_copy_without_data():
    files = [File(target="/run/secrets/a", data=b64(PLAINTEXT), uid=1000, gid=1000, mode=0o400)]
    assert decode(files) == [PLAINTEXT]
    stripped = without_data(files)
    assert stripped[0].data == "" and stripped[0].uid == 1000 and files[0].data   # the original is untouched
    round_trip = ContainerSpec.from_json(ContainerSpec(image="x", files=files).to_json())
    assert round_trip.files == files


@pytest.mark.parametrize("files,mounts,why", [
    ([File(target="run/secrets/a")], [], "absolute file path"),
    ([File(target="/run/../etc/shadow")], [], "without '..'"),
    ([File(target="/a"), File(target="/a")], [], "already a mount point or another file"),
    ([File(target="/data")], [Mount(type="tmpfs", target="/data")], "already a mount point"),
    ([File(target="/a", mode=0o10000)], [], "not a file mode"),
    ([File(target="/a", uid=-1)], [], "UID and GID"),
])
def test_runtime_refuses_bad_files(files, mounts, why):
    with pytest.raises(InvalidArgument, match=why):
        validate_spec(ContainerSpec(image="x", files=files, mounts=mounts))


def test_runtime_refuses_data_that_is_not_base64():
    with pytest.raises(InvalidArgument, match=r"Files\[0\].Data: not base64"):
        decode([File(target="/a", data="not base64!")])


# ---- the CLI's rendering -------------------------------------------------------------------------

def test_secret_inspect_and_ls_never_show_data_and_config_inspect_does():
    secret = pb.Secret(id="sid", spec=secret_spec("db", data=PLAINTEXT, env="prod"))
    secret.meta.version, secret.meta.created_at, secret.meta.updated_at = 11, 1000.0, 1060.0
    shown = inspect_json(secret, SECRET)
    assert shown == {"ID": "sid", "Version": {"Index": 11}, "CreatedAt": "1970-01-01T00:16:40Z",
                     "UpdatedAt": "1970-01-01T00:17:40Z", "Spec": {"Name": "db", "Labels": {"env": "prod"}}}
    item = summary(secret, SECRET, now=1120.0)
    assert item == {"ID": "sid", "Name": "db", "Driver": "", "Labels": "env=prod",
                    "CreatedAt": "2 minutes ago", "UpdatedAt": "About a minute ago"}
    assert ls_row(item, SECRET) == ["sid", "db", "", "2 minutes ago", "About a minute ago"]
    assert PLAINTEXT.decode() not in repr(shown) + repr(item)
    config = pb.Config(id="cid", spec=pb.ConfigSpec(data=b"port: 80\n"))
    config.spec.annotations.name = "app.conf"
    assert inspect_json(config, CONFIG)["Spec"]["Data"] == base64.b64encode(b"port: 80\n").decode()
    assert "Driver" not in summary(config, CONFIG, now=0)


def test_the_cli_refuses_secret_data_over_the_limit_before_sending_it(tmp_path):
    """A 10 MB secret used to come back as gRPC's raw "Received message larger than max"; the
    CLI now says what Docker's daemon says, and reads no more than the limit allows."""
    from click.testing import CliRunner

    from shoal.cli import secrets as cli_secrets

    class NoCalls:
        def call(self, method, request, timeout=None):
            raise AssertionError(f"{method} must not be called")

    big = tmp_path / "big"
    big.write_bytes(b"x" * (10 << 20))
    group = cli_secrets._make_group(cli_secrets.SECRET)
    result = CliRunner().invoke(group, ["create", "big", str(big)], obj=NoCalls())
    assert result.exit_code == 1
    assert "secret data must be larger than 0 and less than 500 KiB" in result.output
