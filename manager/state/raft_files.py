"""The files RaftNode keeps besides PySyncObj's journal, and address checks. No pysyncobj here.

``raft.dump`` (written at log compaction, and received from the leader when a follower is too far
behind) holds our StoreSnapshot bytes and the two log entries PySyncObj keeps with it, in a plain
length-prefixed layout; nothing in it is pickled by us:

    b"SHOALDUMP1\\n" | u32 header length | header JSON | u32 len | last entry command
                     | u32 len | previous entry command | StoreSnapshot bytes (to the end)

header JSON: {"last": [index, term], "prev": [index, term], "members": ["host:port", ...]}.
The entry commands are PySyncObj's own opaque bytes, returned to it unchanged.

``members.json``: {"self": "host:port", "members": ["host:port", ...]}, rewritten atomically
whenever the membership this node sees changes.
"""

from __future__ import annotations

import ipaddress
import json
import os
import struct
from pathlib import Path

from .errors import RaftConfigError

MAGIC = b"SHOALDUMP1\n"
_U32 = struct.Struct("<I")

Entry = tuple[bytes, int, int]      # PySyncObj log entry: (command, index, term)


def check_addr(addr: str, what: str) -> None:
    """Raise RaftConfigError unless ``addr`` is ``host:port`` with a concrete host and a valid port."""
    host, sep, port = addr.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise RaftConfigError(f"{what} {addr!r} is not host:port")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return      # a host name: resolved by PySyncObj
    if ip.is_unspecified:
        raise RaftConfigError(f"{what} {addr!r} is a wildcard; give the address peers reach")


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    make_durable(path)


def make_durable(filename: str | Path) -> None:
    """fsync a file and the directory holding it (after something renamed it into place unsynced)."""
    path = Path(filename)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_members(path: Path, self_addr: str, members: list[str]) -> None:
    """Write the membership atomically."""
    _write_atomically(path, json.dumps({"self": self_addr, "members": sorted(members)}).encode())


def load_members(path: Path, self_addr: str) -> list[str] | None:
    """The saved membership, or None if there is none, it is unreadable, or it belongs to another address."""
    try:
        saved = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    members = saved.get("members") if isinstance(saved, dict) else None
    if saved.get("self") != self_addr or not isinstance(members, list) or self_addr not in members:
        return None
    if not all(isinstance(m, str) for m in members):
        return None
    return sorted(members)


def write_dump(filename: str, snapshot: bytes, last: Entry, prev: Entry, members: list[str]) -> None:
    """Write a dump file (fsynced) in the layout above. PySyncObj renames it into place."""
    header = json.dumps({"last": [last[1], last[2]], "prev": [prev[1], prev[2]],
                         "members": sorted(members)}).encode()
    parts = [MAGIC, _U32.pack(len(header)), header,
             _U32.pack(len(last[0])), bytes(last[0]), _U32.pack(len(prev[0])), bytes(prev[0]), snapshot]
    with open(filename, "wb") as f:
        f.write(b"".join(parts))
        f.flush()
        os.fsync(f.fileno())


def read_dump(filename: str) -> tuple[bytes, Entry, Entry, list[str]]:
    """Read a dump file: (snapshot bytes, last entry, previous entry, members).

    Raises RaftConfigError when the file is not a dump in our layout.
    """
    data = Path(filename).read_bytes()
    try:
        if not data.startswith(MAGIC):
            raise ValueError("bad magic")
        offset = len(MAGIC)
        chunks = []
        for _ in range(3):
            (length,) = _U32.unpack_from(data, offset)
            offset += _U32.size
            if offset + length > len(data):
                raise ValueError("truncated")
            chunks.append(data[offset:offset + length])
            offset += length
        header = json.loads(chunks[0])
        last = (chunks[1], int(header["last"][0]), int(header["last"][1]))
        prev = (chunks[2], int(header["prev"][0]), int(header["prev"][1]))
        members = [str(m) for m in header["members"]]
    except (ValueError, KeyError, IndexError, TypeError, struct.error) as exc:
        raise RaftConfigError(f"raft dump {filename} is unreadable: {exc}") from exc
    return data[offset:], last, prev, members
