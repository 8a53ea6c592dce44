"""Autolock: the unlock key's format, key files locked at rest, the ControlAPI's unlock key."""

from __future__ import annotations

import datetime as dt

import pytest

from manager.ca import MANAGER_ROLE, RootCA, make_node_key_and_csr
from manager.secretbox import (InvalidUnlockKey, format_unlock_key, new_key, new_unlock_key, parse_unlock_key)
from shoal.nodestate import StateDir

NOW = dt.datetime.now(dt.timezone.utc)
CA = RootCA.create("c1", NOW)


def test_unlock_keys_have_dockers_shape_and_round_trip() -> None:
    key = new_unlock_key()
    text = format_unlock_key(key)
    assert text.startswith("SWMKEY-1-") and "=" not in text and len(text) == 9 + 43
    assert parse_unlock_key(f"  {text}\n") == key
    for bad, why in [("SWMTKN-1-abc", "expected SWMKEY-1-"), ("SWMKEY-1-!!!", "not base64"),
                     ("SWMKEY-1-" + "A" * 10, "bytes, not 32")]:
        with pytest.raises(InvalidUnlockKey, match=why):
            parse_unlock_key(bad)


def filled(tmp_path) -> tuple[StateDir, bytes, bytes, bytes]:
    state = StateDir(tmp_path)
    key, csr = make_node_key_and_csr()
    cert = CA.sign_node_csr(csr, "m1", MANAGER_ROLE, NOW)
    password, secrets_key = b"p4ssw0rd" * 8, new_key()
    state.save_certificates(cert + CA.cert_pem, key, CA.cert_pem)
    state.save_raft_password(password)
    state.save_secrets_key(secrets_key)
    return state, key, password, secrets_key


def every_byte(root) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


def test_locked_key_files_hold_no_plaintext_and_open_only_with_the_key(tmp_path) -> None:
    state, key, password, secrets_key = filled(tmp_path)
    kek = new_unlock_key()
    state.set_unlock_key(kek)
    raw = every_byte(tmp_path)
    for secret in (key, b"PRIVATE KEY", password, secrets_key, kek, format_unlock_key(kek).encode()):
        assert secret not in raw
    restarted = StateDir(tmp_path)
    assert restarted.locked()
    with pytest.raises(InvalidUnlockKey, match="invalid key"):
        restarted.unlock(new_unlock_key())
    assert restarted.locked()                                  # a wrong key changes nothing
    restarted.unlock(kek)
    assert restarted.load_certificates()[1] == key
    assert restarted.load_raft_password() == password and restarted.load_secrets_key() == secrets_key


def test_rotating_the_key_rewrites_only_the_data_key_and_turning_off_unlocks(tmp_path) -> None:
    state, key, _, _ = filled(tmp_path)
    first, second = new_unlock_key(), new_unlock_key()
    state.set_unlock_key(first)
    node_key = (tmp_path / "certificates" / "node.key").read_bytes()
    state.set_unlock_key(second)
    assert (tmp_path / "certificates" / "node.key").read_bytes() == node_key   # same DEK
    again = StateDir(tmp_path)
    with pytest.raises(InvalidUnlockKey):
        again.unlock(first)
    again.unlock(second)
    again.set_unlock_key(None)
    assert not StateDir(tmp_path).locked() and StateDir(tmp_path).load_certificates()[1] == key
    assert b"PRIVATE KEY" in (tmp_path / "certificates" / "node.key").read_bytes()


def test_a_crash_while_turning_autolock_on_leaves_every_file_readable(tmp_path, monkeypatch) -> None:
    import shoal.nodestate as nodestate

    state, key, password, _ = filled(tmp_path)
    real = nodestate._write_atomic
    calls = []

    def crash_on_second_key_file(path, data, mode=0o600):
        calls.append(path.name)
        if len(calls) == 3:
            raise KeyboardInterrupt("SIGKILL")
        real(path, data, mode)

    monkeypatch.setattr(nodestate, "_write_atomic", crash_on_second_key_file)
    kek = new_unlock_key()
    with pytest.raises(KeyboardInterrupt):
        state.set_unlock_key(kek)
    monkeypatch.setattr(nodestate, "_write_atomic", real)
    after = StateDir(tmp_path)
    after.unlock(kek)
    assert after.load_certificates()[1] == key and after.load_raft_password() == password


async def test_the_control_api_keeps_the_unlock_key_sealed_and_never_returns_it_in_the_cluster() -> None:
    from manager.controlapi import ControlAPI, ControlError
    from manager.state import LocalProposer, MemoryStore, Store
    from proto import control_pb2, objects_pb2

    memory = MemoryStore()
    store = Store(memory, LocalProposer(memory))
    await store.update(lambda tx: tx.create(objects_pb2.Cluster(id="c1")))
    api = ControlAPI(store, raft=None, secrets_key=new_key())
    assert (await api.get_unlock_key(control_pb2.GetUnlockKeyRequest())).unlock_key == ""
    spec = objects_pb2.ClusterSpec()
    with pytest.raises(ControlError, match="autolock is not turned on"):
        await api.update_cluster(control_pb2.UpdateClusterRequest(spec=spec, rotate_manager_unlock_key=True))
    spec.encryption_config.auto_lock_managers = True
    returned = (await api.update_cluster(control_pb2.UpdateClusterRequest(spec=spec))).cluster
    text = (await api.get_unlock_key(control_pb2.GetUnlockKeyRequest())).unlock_key
    key = parse_unlock_key(text)
    assert not returned.unlock_key and key not in store.view().cluster().unlock_key   # sealed in the store
    await api.update_cluster(control_pb2.UpdateClusterRequest(spec=spec))           # unchanged: same key
    assert (await api.get_unlock_key(control_pb2.GetUnlockKeyRequest())).unlock_key == text
    await api.update_cluster(control_pb2.UpdateClusterRequest(spec=spec, rotate_manager_unlock_key=True))
    assert (await api.get_unlock_key(control_pb2.GetUnlockKeyRequest())).unlock_key != text
    spec.encryption_config.auto_lock_managers = False
    await api.update_cluster(control_pb2.UpdateClusterRequest(spec=spec))
    assert not store.view().cluster().unlock_key
