"""Disaster recovery of a manager's state: backups of the store, and Raft state rebuilt for one member.

Two operations share one primitive, ``reset_raft_state``: it replaces a manager's Raft files by a
fresh one-member cluster whose only content is a store snapshot.

- ``swarm init --force-new-cluster`` (quorum lost): the survivor's own store, read offline from its
  journal and dump (``manager.state.raft.read_local_state``), becomes the snapshot; the manager
  restarts as the only member. The new membership is written as the dump's member list and
  ``members.json``, and the old journal is moved aside, so no replay of an old membership entry can
  bring the dead members back.
- ``swarm init --restore FILE``: the snapshot comes from a backup file made by ``encode_backup``.

The backup file carries the secrets key, because secrets are sealed in the store with a key that
is never proposed to it (manager.secretbox): a backup without the key would restore secrets nobody
can read. So a backup file is as sensitive as a manager's state directory; it is written 0600.

Layout of a backup file::

    b"SHOALBACKUP1\\n" | u32 header length | header JSON | StoreSnapshot bytes (to the end)

header JSON: {"format": 1, "cluster_id", "created" (RFC 3339 UTC), "store_version",
"objects": {kind: count}, "snapshot_sha256": hex, "secrets_key": base64}.

No pysyncobj here; file I/O only in the functions whose names say so.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

from proto import store_pb2

from . import raft_files
from .errors import StoreError
from .kinds import unwrap

BACKUP_MAGIC = b"SHOALBACKUP1\n"
BACKUP_FORMAT = 1
_U32 = struct.Struct("<I")
MAX_BACKUP_HEADER = 64 * 1024

# PySyncObj's command type byte of a no-op entry (pysyncobj.syncobj._COMMAND_TYPE.NO_OP). The two
# entries a fresh dump carries are no-ops: they are never applied (the dump says they are).
_NO_OP = b"\x01"


class RecoveryError(StoreError):
    """A backup or a Raft state directory cannot be used; the message says which and why."""


@dataclass(frozen=True)
class Backup:
    """A store snapshot and what is needed to use it on a fresh manager."""

    cluster_id: str
    store_version: int
    snapshot: bytes                       # StoreSnapshot bytes
    secrets_key: bytes                    # manager.secretbox key; b"" for a swarm without one
    created: str = ""                     # RFC 3339 UTC
    objects: dict[str, int] = field(default_factory=dict)


def describe_snapshot(snapshot: bytes) -> tuple[int, str, dict[str, int]]:
    """(store version, cluster ID, object counts by kind) of StoreSnapshot bytes.

    Raises RecoveryError if the bytes are not a snapshot.
    """
    try:
        snap = store_pb2.StoreSnapshot.FromString(snapshot)
        counts: dict[str, int] = {}
        cluster_id = ""
        for envelope in snap.objects:
            kind, obj = unwrap(envelope)
            counts[kind.name.lower()] = counts.get(kind.name.lower(), 0) + 1
            if kind.name == "CLUSTER":
                cluster_id = obj.id
    except Exception as exc:    # DecodeError, or an envelope of no known kind
        raise RecoveryError(f"the store snapshot does not decode: {exc}") from exc
    return snap.version, cluster_id, counts


def make_backup(snapshot: bytes, secrets_key: bytes, now: float | None = None) -> Backup:
    """A Backup of ``snapshot`` (taken by MemoryStore.snapshot) with the manager's secrets key."""
    version, cluster_id, counts = describe_snapshot(snapshot)
    if not cluster_id:
        raise RecoveryError("the store snapshot holds no cluster object: not a swarm's store")
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if now is None else now))
    return Backup(cluster_id=cluster_id, store_version=version, snapshot=snapshot,
                  secrets_key=secrets_key, created=created, objects=counts)


def encode_backup(backup: Backup) -> bytes:
    """The bytes of a backup file (layout in the module docstring)."""
    header = json.dumps({
        "format": BACKUP_FORMAT, "cluster_id": backup.cluster_id, "created": backup.created,
        "store_version": backup.store_version, "objects": backup.objects,
        "snapshot_sha256": hashlib.sha256(backup.snapshot).hexdigest(),
        "secrets_key": base64.b64encode(backup.secrets_key).decode(),
    }, sort_keys=True).encode()
    return BACKUP_MAGIC + _U32.pack(len(header)) + header + backup.snapshot


def decode_backup(data: bytes, source: str = "backup") -> Backup:
    """Parse and check a backup file's bytes; RecoveryError names what is wrong with ``source``."""
    if not data.startswith(BACKUP_MAGIC):
        raise RecoveryError(f"{source} is not a shoal swarm backup (it does not start with "
                            f"{BACKUP_MAGIC.strip().decode()})")
    offset = len(BACKUP_MAGIC)
    try:
        (length,) = _U32.unpack_from(data, offset)
        if length > MAX_BACKUP_HEADER or offset + _U32.size + length > len(data):
            raise ValueError("the header is truncated")
        header = json.loads(data[offset + _U32.size:offset + _U32.size + length])
        snapshot = data[offset + _U32.size + length:]
        if header.get("format") != BACKUP_FORMAT:
            raise ValueError(f"format {header.get('format')!r} is not {BACKUP_FORMAT}")
        if hashlib.sha256(snapshot).hexdigest() != header["snapshot_sha256"]:
            raise ValueError("the store snapshot does not match its checksum (truncated or altered)")
        secrets_key = base64.b64decode(header["secrets_key"], validate=True)
        cluster_id = str(header["cluster_id"])
    except (ValueError, KeyError, TypeError, struct.error) as exc:
        raise RecoveryError(f"{source} is damaged: {exc}") from exc
    version, snap_cluster, counts = describe_snapshot(snapshot)
    if snap_cluster != cluster_id:
        raise RecoveryError(f"{source} is damaged: its header names cluster {cluster_id} but the "
                            f"store holds {snap_cluster or 'no cluster'}")
    if secrets_key and len(secrets_key) != 32:
        raise RecoveryError(f"{source} is damaged: the secrets key is {len(secrets_key)} bytes, not 32")
    return Backup(cluster_id=cluster_id, store_version=version, snapshot=snapshot,
                  secrets_key=secrets_key, created=str(header.get("created", "")), objects=counts)


def write_backup_file(path: Path, backup: Backup) -> None:
    """Write ``backup`` to ``path`` atomically, mode 0600 from the start (it holds the secrets key).

    Refuses to replace a directory; an existing file is replaced only once the new one is complete.
    """
    path = Path(path)
    if path.is_dir():
        raise RecoveryError(f"cannot write the backup to {path}: it is a directory")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    data = encode_backup(backup)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise RecoveryError(f"cannot write the backup to {path}: {exc.strerror}") from exc
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def read_backup_file(path: Path) -> Backup:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise RecoveryError(f"cannot read the backup {path}: {exc.strerror}") from exc
    return decode_backup(data, str(path))


PENDING_STATE = "pending-state.json"    # what the node must record once the new state is current
_COMPLETE = "complete"                  # written last into the new directory: it is whole


def _new_dir(data_dir: Path) -> Path:
    return data_dir.with_name(f"{data_dir.name}.new")


def reset_raft_state(data_dir: Path, self_addr: str, snapshot: bytes, after_index: int = 0,
                     now: float | None = None, pending: bytes = b"") -> Path | None:
    """Make ``data_dir`` the Raft state of a one-member cluster (``self_addr``) holding ``snapshot``.

    What was in ``data_dir`` is moved, not deleted, to ``<data_dir>.old-<UTC time>`` (returned;
    None if there was nothing): the old journal may be needed for forensics. The new state is a
    dump whose member list is ``[self_addr]`` plus the same in ``members.json``; the journal starts
    empty, so nothing replayed at the next start can change the membership back.

    The dump's two entries sit at ``after_index + 2`` and ``+ 3`` (never 1: a fresh member's
    journal starts with a no-op at index 1, term 0, and would look caught up, so the leader would
    send it log entries instead of the snapshot).

    Crash safety: the new state is written whole into ``<data_dir>.new`` (every file fsynced, a
    ``complete`` marker last), then the old directory is moved aside and the new one renamed into
    place. A crash between those two renames leaves no ``data_dir``; ``finish_interrupted_reset``
    (run before the state is used) completes the swap. ``pending`` (opaque bytes, e.g. the node's
    new addresses) is stored in the new directory as PENDING_STATE, for the caller to apply after
    the swap and drop with ``drop_pending``: the directory rename is the one commit point.
    """
    data_dir = Path(data_dir)
    raft_files.check_addr(self_addr, "raft address")
    describe_snapshot(snapshot)          # refuse garbage before touching anything
    finish_interrupted_reset(data_dir)
    tmp = _new_dir(data_dir)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(mode=0o700, parents=True)
    last = max(after_index, 0) + 3
    raft_files.write_dump(str(tmp / "raft.dump"), snapshot, (_NO_OP, last, 0), (_NO_OP, last - 1, 0),
                          [self_addr])
    raft_files.save_members(tmp / "members.json", self_addr, [self_addr])
    if pending:
        _write_synced(tmp / PENDING_STATE, pending)
    _write_synced(tmp / _COMPLETE, b"")
    _fsync_dir(tmp)
    moved = None
    if data_dir.exists() and any(data_dir.iterdir()):
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
        moved = data_dir.with_name(f"{data_dir.name}.old-{stamp}")
        n = 1
        while moved.exists():
            moved = data_dir.with_name(f"{data_dir.name}.old-{stamp}-{n}")
            n += 1
        os.replace(data_dir, moved)
    elif data_dir.exists():
        data_dir.rmdir()
    _fsync_dir(data_dir.parent)
    os.replace(tmp, data_dir)
    (data_dir / _COMPLETE).unlink()
    _fsync_dir(data_dir.parent)
    return moved


def finish_interrupted_reset(data_dir: Path) -> bool:
    """Complete a ``reset_raft_state`` a crash cut short; True if it did. Idempotent.

    A whole ``<data_dir>.new`` with no ``data_dir`` is renamed into place; a partial one (no
    ``complete`` marker: the crash came while it was written, before anything was moved) is
    removed, leaving the old state as it was.
    """
    data_dir = Path(data_dir)
    tmp = _new_dir(data_dir)
    if not tmp.exists():
        return False
    if not data_dir.exists() and (tmp / _COMPLETE).exists():
        os.replace(tmp, data_dir)
        (data_dir / _COMPLETE).unlink()
        _fsync_dir(data_dir.parent)
        return True
    shutil.rmtree(tmp)
    return False


def pending_state(data_dir: Path) -> bytes | None:
    """The ``pending`` bytes a reset left in ``data_dir`` and nobody dropped yet, or None."""
    try:
        return (Path(data_dir) / PENDING_STATE).read_bytes()
    except FileNotFoundError:
        return None


def drop_pending(data_dir: Path) -> None:
    (Path(data_dir) / PENDING_STATE).unlink(missing_ok=True)


def _write_synced(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
