"""Version skew: a store written by the previous release loads and works; unknown fields survive;
what older managers cannot use is refused before it is proposed."""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path

import pytest

from manager import versions
from manager.ca import WORKER_ROLE, make_node_key_and_csr, rotation, verify_node_cert
from manager.secretbox import SecretBox
from manager.state import InvalidChange, Kind, LocalProposer, MemoryStore, Store
from proto import control_pb2, objects_pb2, store_pb2

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def previous_release() -> tuple[MemoryStore, dict]:
    """The store shoal 0.1.0 wrote (tests/fixtures/store-0.1.0.*, made at commit 8bc3e82)."""
    memory = MemoryStore()
    memory.restore((FIXTURES / "store-0.1.0.snapshot").read_bytes())
    return memory, json.loads((FIXTURES / "store-0.1.0.json").read_text())


def test_a_store_written_by_the_previous_release_loads_and_its_keys_still_work() -> None:
    memory, meta = previous_release()
    view = memory.view()
    cluster = view.cluster()
    assert cluster.id == "clusterold" and cluster.root_ca.ca_digest == meta["ca_digest"]
    assert [s.spec.annotations.name for s in view.list(Kind.SERVICE)] == ["web"]
    assert [n.spec.annotations.name for n in view.list(Kind.NETWORK)] == ["backend"]
    secrets_key = base64.b64decode(meta["secrets_key"])
    secret = view.list(Kind.SECRET)[0]
    assert SecretBox(secrets_key).open(secret.id, secret.spec.data) == b"hunter2"
    # its CA key was stored in clear (before keys were sealed): still used to sign
    root = rotation.signing_root(cluster, secrets_key)
    key, csr = make_node_key_and_csr()
    now = dt.datetime.now(dt.timezone.utc)
    cert = root.sign_node_csr(csr, "n2", WORKER_ROLE, now)
    assert verify_node_cert(cert, cluster.root_ca.ca_cert, now).cluster_id == "clusterold"
    assert rotation.trusted_roots(cluster) == cluster.root_ca.ca_cert and not rotation.in_rotation(cluster)
    assert versions.cluster_version(view) == (0, 1)                  # its manager announced 0.1.0


def test_unknown_fields_written_by_a_newer_version_are_kept() -> None:
    memory, _ = previous_release()
    cluster = memory.view().cluster()
    unknown = b"\xc2\x3e\x05hello"                                     # field 1000, bytes "hello"
    newer = objects_pb2.Cluster.FromString(cluster.SerializeToString() + unknown)
    change = store_pb2.StoreChange()
    action = change.actions.add(kind=store_pb2.StoreAction.UPDATE)
    action.target.cluster.CopyFrom(newer)
    memory.apply(store_pb2.StoreChange.FromString(change.SerializeToString()))
    again = MemoryStore()
    again.restore(memory.snapshot())                                   # through a snapshot too
    assert unknown in again.view().cluster().SerializeToString()


async def test_an_unknown_kind_is_refused_before_it_is_proposed() -> None:
    memory = MemoryStore()
    proposed = []

    class Recording(LocalProposer):
        async def propose(self, change, timeout):
            proposed.append(change)
            return await super().propose(change, timeout)

    store = Store(memory, Recording(memory))
    with pytest.raises(InvalidChange, match="not a store object kind"):
        await store.update(lambda tx: tx.create(objects_pb2.EncryptionKey(subsystem="x")))
    assert proposed == []


async def test_features_older_managers_cannot_use_are_refused_until_every_manager_is_new() -> None:
    from manager.controlapi import ControlAPI, ControlError
    from manager.secretbox import new_key

    memory, _ = previous_release()                                     # manager1 announced 0.1.0
    store = Store(memory, LocalProposer(memory))
    api = ControlAPI(store, raft=None, secrets_key=new_key())
    spec = (await api.get_cluster()).cluster.spec
    spec.ca_config.force_rotate += 1
    with pytest.raises(ControlError, match=r"ca-rotation needs every manager at version 0.2 .*upgrade manager1"):
        await api.update_cluster(control_pb2.UpdateClusterRequest(spec=spec))
    spec.ca_config.force_rotate -= 1
    spec.encryption_config.auto_lock_managers = True
    with pytest.raises(ControlError, match="autolock needs every manager"):
        await api.update_cluster(control_pb2.UpdateClusterRequest(spec=spec))
    assert not rotation.in_rotation(store.view().cluster()) and not store.view().cluster().unlock_key

    def upgrade(tx):                                                   # manager1 restarts on 0.2.0
        node = objects_pb2.Node()
        node.CopyFrom(tx.get(Kind.NODE, "nodeold1"))
        node.description.engine.engine_version = "0.2.0"
        tx.update(node)
    await store.update(upgrade)
    await api.update_cluster(control_pb2.UpdateClusterRequest(spec=spec))
    assert store.view().cluster().unlock_key


def test_version_parsing() -> None:
    assert versions.parse("0.2.0") == (0, 2) and versions.parse("v1.10.3-rc1") == (1, 10)
    assert versions.parse("") == versions.OLDEST and versions.parse("dev") == versions.OLDEST
