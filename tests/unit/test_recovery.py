"""Backup files and Raft state reset (manager.state.recovery): format, damage, file modes."""

from __future__ import annotations

import json
import stat

import pytest

from manager.state import LocalProposer, MemoryStore, Store
from manager.state.raft_files import read_dump
from manager.state.recovery import (BACKUP_MAGIC, RecoveryError, decode_backup, encode_backup,
                                    make_backup, read_backup_file, reset_raft_state, write_backup_file)
from proto import objects_pb2

KEY = bytes(range(32))
SELF = "192.0.2.11:2378"


async def swarm_snapshot() -> bytes:
    memory = MemoryStore()
    store = Store(memory, LocalProposer(memory))

    def fn(tx):
        tx.create(objects_pb2.Cluster(id="cluster1"))
        tx.create(objects_pb2.Service(id="svc1"))
        tx.create(objects_pb2.Secret(id="sec1"))
    await store.update(fn)
    return memory.snapshot()


async def test_a_backup_round_trips_with_its_key_and_counts():
    snapshot = await swarm_snapshot()
    backup = make_backup(snapshot, KEY, now=0)
    assert backup.created == "1970-01-01T00:00:00Z" and backup.cluster_id == "cluster1"
    decoded = decode_backup(encode_backup(backup))
    assert decoded == backup
    assert decoded.objects == {"cluster": 1, "service": 1, "secret": 1}


@pytest.mark.parametrize("damage, message", [
    (lambda data: b"NOTABACKUP" + data, "not a shoal swarm backup"),
    (lambda data: data[:-3], "checksum"),
    (lambda data: data[:len(BACKUP_MAGIC) + 6], "truncated"),
    (lambda data: data[:-1] + bytes([data[-1] ^ 1]), "checksum"),
])
async def test_a_damaged_backup_is_refused_with_what_is_wrong(damage, message):
    data = encode_backup(make_backup(await swarm_snapshot(), KEY))
    with pytest.raises(RecoveryError, match=message):
        decode_backup(damage(data), "b.bak")


async def test_a_store_without_a_cluster_is_not_a_swarm_backup():
    memory = MemoryStore()
    with pytest.raises(RecoveryError, match="no cluster"):
        make_backup(memory.snapshot(), KEY)


async def test_backup_files_are_private_and_replace_atomically(tmp_path):
    backup = make_backup(await swarm_snapshot(), KEY)
    path = tmp_path / "swarm.bak"
    path.write_bytes(b"old")
    write_backup_file(path, backup)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_backup_file(path) == backup
    assert [p.name for p in tmp_path.iterdir()] == ["swarm.bak"]       # no temp file left
    with pytest.raises(RecoveryError, match="is a directory"):
        write_backup_file(tmp_path, backup)
    with pytest.raises(RecoveryError, match="cannot read"):
        read_backup_file(tmp_path / "missing.bak")


async def test_reset_moves_the_old_state_aside_and_writes_one_member(tmp_path):
    snapshot = await swarm_snapshot()
    raft_dir = tmp_path / "raft"
    raft_dir.mkdir()
    (raft_dir / "raft.journal").write_bytes(b"old journal")
    moved = reset_raft_state(raft_dir, SELF, snapshot, after_index=40, now=0)
    assert moved == tmp_path / "raft.old-19700101T000000Z"
    assert (moved / "raft.journal").read_bytes() == b"old journal"
    assert sorted(p.name for p in raft_dir.iterdir()) == ["members.json", "raft.dump"]
    assert json.loads((raft_dir / "members.json").read_text()) == {"self": SELF, "members": [SELF]}
    restored, last, prev, members = read_dump(str(raft_dir / "raft.dump"))
    assert restored == snapshot and members == [SELF]
    assert (last[1], prev[1]) == (43, 42)
    assert stat.S_IMODE(raft_dir.stat().st_mode) == 0o700
    again = reset_raft_state(raft_dir, SELF, snapshot, now=0)           # a second reset keeps both
    assert again == tmp_path / "raft.old-19700101T000000Z-1"


async def test_reset_refuses_garbage_and_touches_nothing(tmp_path):
    raft_dir = tmp_path / "raft"
    raft_dir.mkdir()
    (raft_dir / "raft.journal").write_bytes(b"keep")
    with pytest.raises(RecoveryError, match="does not decode"):
        reset_raft_state(raft_dir, SELF, b"\xff\xff not a snapshot")
    assert (raft_dir / "raft.journal").read_bytes() == b"keep"


async def test_a_crash_between_the_two_renames_is_finished_at_the_next_start(tmp_path, monkeypatch):
    from manager.state import recovery
    snapshot = await swarm_snapshot()
    raft_dir = tmp_path / "raft"
    raft_dir.mkdir()
    (raft_dir / "raft.journal").write_bytes(b"old journal")
    real_replace = recovery.os.replace

    def crash_on_second(src, dst):
        if str(dst) == str(raft_dir):
            raise KeyboardInterrupt("SIGKILL")     # the old state is moved aside, the new one not yet in place
        real_replace(src, dst)

    monkeypatch.setattr(recovery.os, "replace", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        reset_raft_state(raft_dir, SELF, snapshot, pending=b'{"node": 1}', now=0)
    monkeypatch.setattr(recovery.os, "replace", real_replace)
    assert not raft_dir.exists()
    assert recovery.finish_interrupted_reset(raft_dir)
    assert read_dump(str(raft_dir / "raft.dump"))[0] == snapshot
    assert recovery.pending_state(raft_dir) == b'{"node": 1}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raft", "raft.old-19700101T000000Z"]
    assert not recovery.finish_interrupted_reset(raft_dir)          # idempotent


def test_a_crash_while_the_new_state_is_written_leaves_the_old_one(tmp_path):
    from manager.state import recovery
    raft_dir = tmp_path / "raft"
    raft_dir.mkdir()
    (raft_dir / "raft.journal").write_bytes(b"old journal")
    partial = tmp_path / "raft.new"
    partial.mkdir()
    (partial / "raft.dump").write_bytes(b"half a dump")              # no 'complete' marker
    assert not recovery.finish_interrupted_reset(raft_dir)
    assert not partial.exists() and (raft_dir / "raft.journal").read_bytes() == b"old journal"
    partial.mkdir()                                                  # the same with no old state at all
    (partial / "raft.dump").write_bytes(b"half a dump")
    raft_dir.rename(tmp_path / "elsewhere")
    assert not recovery.finish_interrupted_reset(raft_dir)
    assert not raft_dir.exists() and not partial.exists()


async def test_the_state_directory_records_a_pending_recovery_once(tmp_path):
    from shoal.nodestate import NodeState, StateDir
    state = StateDir(tmp_path / "state")
    node = NodeState(node_id="n1", role="manager", cluster_id="c1", advertise_addr="192.0.2.13",
                     listen_addr="192.0.2.13:2377", managers=["192.0.2.13:2377"])
    pending = state.recovery_pending(node, raft_password=b"pw", secrets_key=KEY)
    reset_raft_state(state.raft_dir, "192.0.2.13:2378", await swarm_snapshot(), pending=pending)
    assert state.load() == node                                      # load() finishes it first
    assert state.load_raft_password() == b"pw" and state.load_secrets_key() == KEY
    assert not (state.raft_dir / "pending-state.json").exists()
    assert not state.finish_recovery()
