"""The Raft journal: a checksummed append-only log file and a durable term/vote record.

RaftNode hands a ``Journal`` to PySyncObj in place of its own ``FileJournal`` (which writes into an
mmap that is never synced and renames its metadata without fsync; see docs/raft.md). No pysyncobj
import here: the class implements PySyncObj's journal interface by duck typing.

Files in the data directory:

``raft.journal``::

    MAGIC (16 bytes) | record | record | ...
    record = u32 length | u32 crc32(length bytes + payload) | payload
    payload = u64 index | u64 term | command bytes            (little endian)

Records are written with ``pwrite`` into space preallocated with zeros (``PREALLOCATE`` bytes at a
time, so that ``fdatasync`` has only data to flush, not a new file size) and made durable by
``sync()``: one ``fdatasync`` for every record written since the last one (group commit). The log
ends at the first all-zero record header followed only by zeros. Opening the file reads records
until the first that is short, fails its checksum, is longer than ``MAX_RECORD`` or does not
continue the index sequence; everything from there on is a torn or corrupt tail. It is zeroed (and
that made durable), logged, and the node goes on from the valid prefix: Raft fetches the rest from
the leader. Records after the end are always zero (truncating the log zeroes what it drops), so no
stale record can ever look like a continuation of the log.

``raft.state``: JSON ``{"term": int, "voted_for": str|null, "commit_index": int}``, replaced
atomically (write, fsync, rename, fsync of the directory). ``set_current_term`` writes it before
returning, so a vote or a new term is on disk before any message that shows it is sent.

A directory holding PySyncObj's own files (``raft.journal`` in its format, ``raft.journal.meta``)
is converted on first open.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

MAGIC = b"SHOALRAFTLOG\x01\n\x00\x00"
assert len(MAGIC) == 16
JOURNAL_NAME = "raft.journal"
STATE_NAME = "raft.state"
MAX_RECORD = 64 * 1024 * 1024        # far above one entry (MAX_CHANGE_BYTES); a bigger length is garbage
PREALLOCATE = 4 * 1024 * 1024
_ZEROS = bytes(64 * 1024)
_HEAD = struct.Struct("<II")         # length, crc
_ENTRY = struct.Struct("<QQ")        # index, term

Entry = tuple[bytes, int, int]       # PySyncObj's log entry: (command, index, term)

# PySyncObj's FileJournal layout, read only to convert an existing directory.
_PSO_MAGIC = b"PYSYNCOBJ"
_PSO_FIRST_RECORD = 24 + 8 + 4 + 4
_PSO_LAST_OFFSET_AT = 24 + 8 + 4


class JournalError(Exception):
    """The journal cannot be opened or written (the message names the file and the reason)."""


@dataclass(frozen=True)
class Recovery:
    """What opening a journal found: ``entries`` kept, ``dropped_bytes`` of tail cut off, and why."""

    entries: int
    last_index: int
    dropped_bytes: int
    reason: str


def encode_record(command: bytes, index: int, term: int) -> bytes:
    payload = _ENTRY.pack(index, term) + bytes(command)
    length = struct.pack("<I", len(payload))
    return length + struct.pack("<I", zlib.crc32(payload, zlib.crc32(length))) + payload


def scan(data: bytes | memoryview, start: int = len(MAGIC)) -> tuple[list[Entry], list[int], int, str]:
    """Parse records from ``start``: (entries, their offsets, end of the valid prefix, why it ends).

    The reason is "" when the data ends after a whole record, or only zeros follow it (the
    preallocated space).
    """
    entries: list[Entry] = []
    offsets: list[int] = []
    offset = start
    size = len(data)
    while offset < size:
        if not bytes(data[offset:offset + _HEAD.size]).strip(b"\0") and not bytes(data[offset:]).strip(b"\0"):
            return entries, offsets, offset, ""
        if offset + _HEAD.size > size:
            return entries, offsets, offset, "a record header is cut short"
        length, crc = _HEAD.unpack_from(data, offset)
        if length < _ENTRY.size or length > MAX_RECORD:
            return entries, offsets, offset, f"a record length of {length} bytes is impossible"
        end = offset + _HEAD.size + length
        if end > size:
            return entries, offsets, offset, f"a record of {length} bytes is cut short"
        payload = data[offset + _HEAD.size:end]
        if zlib.crc32(payload, zlib.crc32(data[offset:offset + 4])) != crc:
            return entries, offsets, offset, "a record fails its checksum"
        index, term = _ENTRY.unpack_from(payload)
        if entries and index != entries[-1][1] + 1:
            return entries, offsets, offset, (f"record index {index} does not follow "
                                               f"{entries[-1][1]}")
        entries.append((bytes(payload[_ENTRY.size:]), index, term))
        offsets.append(offset)
        offset = end
    return entries, offsets, offset, ""


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file_durably(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data``: write a temporary file, fsync it, rename, fsync the directory."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def write_journal(data_dir: Path, entries: Iterable[Entry]) -> None:
    """Write a complete journal holding ``entries`` (durably). For offline tools (restore, recovery)."""
    data_dir = Path(data_dir)
    write_file_durably(data_dir / JOURNAL_NAME,
                       MAGIC + b"".join(encode_record(c, i, t) for c, i, t in entries))


def read_journal(data_dir: Path) -> tuple[list[Entry], Recovery]:
    """Read a journal without changing it: its valid entries and what a node would cut off."""
    data = (Path(data_dir) / JOURNAL_NAME).read_bytes()
    if not data.startswith(MAGIC):
        raise JournalError(f"{Path(data_dir) / JOURNAL_NAME} is not a shoal raft journal")
    entries, _, end, reason = scan(data)
    return entries, Recovery(len(entries), entries[-1][1] if entries else 0,
                             len(data) - end if reason else 0, reason)


def read_entries(data_dir: Path) -> tuple[list[Entry], Recovery]:
    """Like ``read_journal``, and also reads a journal still in PySyncObj's format (not converting it)."""
    path = Path(data_dir) / JOURNAL_NAME
    with open(path, "rb") as f:
        head = f.read(len(_PSO_MAGIC))
    if head == _PSO_MAGIC:
        entries = _read_pysyncobj_journal(path)
        return entries, Recovery(len(entries), entries[-1][1] if entries else 0, 0, "")
    return read_journal(data_dir)


def read_state(data_dir: Path) -> dict:
    """The durable term/vote/commit record: {"term", "voted_for", "commit_index"} (defaults if absent)."""
    path = Path(data_dir) / STATE_NAME
    state = {"term": 0, "voted_for": None, "commit_index": 1}
    try:
        loaded = json.loads(path.read_bytes())
    except FileNotFoundError:
        return state
    except (OSError, ValueError) as exc:
        raise JournalError(f"{path} is unreadable: {exc}") from exc
    if not isinstance(loaded, dict):
        raise JournalError(f"{path} is not a JSON object")
    state.update({k: loaded[k] for k in state if k in loaded})
    if not isinstance(state["term"], int) or not isinstance(state["commit_index"], int) or \
            not (state["voted_for"] is None or isinstance(state["voted_for"], str)):
        raise JournalError(f"{path} has fields of the wrong type: {loaded}")
    return state


def write_state(data_dir: Path, term: int, voted_for: str | None, commit_index: int) -> None:
    """Replace the term/vote/commit record durably."""
    write_file_durably(Path(data_dir) / STATE_NAME, json.dumps(
        {"term": term, "voted_for": voted_for, "commit_index": commit_index}).encode())


def _read_pysyncobj_journal(path: Path) -> list[Entry]:
    """Entries of a PySyncObj FileJournal, up to its last whole record (its tail may be torn)."""
    data = path.read_bytes()
    entries: list[Entry] = []
    if len(data) < _PSO_FIRST_RECORD:
        return entries
    (last,) = struct.unpack_from("<I", data, _PSO_LAST_OFFSET_AT)
    offset, end = _PSO_FIRST_RECORD, min(last, len(data))
    while offset + 4 <= end:
        (size,) = struct.unpack_from("<I", data, offset)
        if size < 16 or offset + 8 + size > end:
            break
        index, term = struct.unpack_from("<QQ", data, offset + 4)
        entries.append((data[offset + 4 + 16:offset + 4 + size], index, term))
        offset += size + 8
    return entries


def _convert_pysyncobj_files(data_dir: Path) -> None:
    journal, meta = data_dir / JOURNAL_NAME, data_dir / (JOURNAL_NAME + ".meta")
    entries = _read_pysyncobj_journal(journal)
    state = {}
    try:
        # PySyncObj's own metadata file, written by this node: a pickled dict of ints and a str.
        state = pickle.loads(meta.read_bytes())  # noqa: S301
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError):
        pass
    if not isinstance(state, dict):
        state = {}
    write_state(data_dir, int(state.get("currentTerm", 0)), state.get("votedForNodeId"),
                int(state.get("raftCommitIndex", 1)))
    write_journal(data_dir, entries)
    meta.unlink(missing_ok=True)
    fsync_dir(data_dir)
    log.info("raft journal %s: converted from PySyncObj's format (%d entries)", journal, len(entries))


class Journal:
    """PySyncObj's journal interface over ``raft.journal`` and ``raft.state`` in ``data_dir``.

    All methods run on the Raft tick thread. ``add``, ``clear`` and ``deleteEntriesFrom`` change the
    file without syncing it; ``sync()`` makes every change so far durable and must run before any
    message or result that depends on them leaves the node (RaftNode does it before each send and
    before applying committed entries). Raises JournalError when the files cannot be opened.
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / JOURNAL_NAME
        try:
            if self.path.exists() and self.path.read_bytes()[:len(_PSO_MAGIC)] == _PSO_MAGIC:
                _convert_pysyncobj_files(self.data_dir)
            state = read_state(self.data_dir)
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise JournalError(f"cannot open raft journal {self.path}: {exc}") from exc
        self._term: int = state["term"]
        self._voted_for: str | None = state["voted_for"]
        self._commit_index: int = state["commit_index"]
        self._saved_commit_index = self._commit_index
        self._dirty = False
        self.recovery = self._load()
        self._durable_index = self._entries[-1][1] if self._entries else 0

    def _load(self) -> Recovery:
        size = os.fstat(self._fd).st_size
        data = os.pread(self._fd, size, 0) if size else b""
        if size == 0 or (size < len(MAGIC) and MAGIC.startswith(data)):
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, MAGIC, 0)
            os.fsync(self._fd)
            fsync_dir(self.data_dir)
            data = MAGIC
        elif not data.startswith(MAGIC):
            os.close(self._fd)
            raise JournalError(f"{self.path} is not a shoal raft journal (unknown header "
                               f"{data[:16]!r}); move it away to start this manager afresh")
        self._entries, self._offsets, self._end, reason = scan(data)
        self._allocated = len(data)
        last = self._entries[-1][1] if self._entries else 0
        dropped = 0
        if reason:
            dropped = len(data) - self._end
            log.warning("raft journal %s: %s at offset %d; dropped the last %d bytes and kept %d "
                        "entries (up to index %d); the leader sends the rest",
                        self.path, reason, self._end, dropped, len(self._entries), last)
            os.ftruncate(self._fd, self._end)
            os.fsync(self._fd)
            self._allocated = self._end
        if self._commit_index > max(last, 1):
            # Only possible if the tail was corrupt, not torn: the commit index is saved after a sync.
            log.warning("raft journal %s: saved commit index %d is past the last entry %d; using %d",
                        self.path, self._commit_index, last, max(last, 1))
            self._commit_index = max(last, 1)
        return Recovery(len(self._entries), last, dropped, reason)

    # -- the log -----------------------------------------------------------------------------

    def add(self, command, idx: int, term: int) -> None:
        command = bytes(command)
        record = encode_record(command, idx, term)
        if len(record) - _HEAD.size > MAX_RECORD:
            raise JournalError(f"raft entry {idx} is {len(record)} bytes; the journal limit is {MAX_RECORD}")
        if self._end + len(record) > self._allocated:
            self._preallocate(self._end + len(record))
        self._pwrite_all(record, self._end)
        self._entries.append((command, idx, term))
        self._offsets.append(self._end)
        self._end += len(record)
        self._dirty = True

    def _pwrite_all(self, data: bytes, offset: int) -> None:
        view = memoryview(data)
        while view:
            written = os.pwrite(self._fd, view, offset)
            view, offset = view[written:], offset + written

    def _preallocate(self, needed: int) -> None:
        """Extend the file with zeros to a multiple of PREALLOCATE covering ``needed`` bytes."""
        size = -(-needed // PREALLOCATE) * PREALLOCATE
        self._zero(self._allocated, size)
        self._allocated = size

    def _zero(self, start: int, end: int) -> None:
        while start < end:
            chunk = _ZEROS[:min(len(_ZEROS), end - start)]
            self._pwrite_all(chunk, start)
            start += len(chunk)

    def _truncate(self, end: int) -> None:
        """Drop every record from ``end`` on: zero them, so none can reappear after a restart."""
        self._zero(end, self._end)
        self._end = end
        self._durable_index = min(self._durable_index, self._entries[-1][1] if self._entries else 0)
        self._dirty = True

    def clear(self) -> None:
        self._entries, self._offsets = [], []
        self._truncate(len(MAGIC))

    def deleteEntriesFrom(self, entryFrom: int) -> None:  # noqa: N802 (PySyncObj's names)
        if entryFrom >= len(self._entries):
            return
        end = self._offsets[entryFrom]
        del self._entries[entryFrom:]
        del self._offsets[entryFrom:]
        self._truncate(end)

    def deleteEntriesTo(self, entryTo: int) -> None:  # noqa: N802
        """Drop the first ``entryTo`` entries (after a compaction dump): rewrite the file durably."""
        kept = self._entries[entryTo:]
        write_journal(self.data_dir, kept)
        old_fd = self._fd
        self._fd = os.open(self.path, os.O_RDWR)
        os.close(old_fd)
        self._entries = kept
        self._offsets = []
        offset = len(MAGIC)
        for command, index, term in kept:
            self._offsets.append(offset)
            offset += _HEAD.size + _ENTRY.size + len(command)
        self._end = self._allocated = offset
        self._durable_index = kept[-1][1] if kept else 0
        self._dirty = False

    def __getitem__(self, item):
        return self._entries[item]

    def __len__(self) -> int:
        return len(self._entries)

    def sync(self) -> None:
        """Make every change to the log so far durable (one fdatasync; nothing if nothing changed)."""
        if self._dirty:
            os.fdatasync(self._fd)
            self._dirty = False
            self._durable_index = self._entries[-1][1] if self._entries else 0

    @property
    def durable_index(self) -> int:
        """Index of the last entry on disk (0 if none); every entry up to it is durable."""
        return self._durable_index

    def _destroy(self) -> None:
        if self._fd < 0:
            return
        try:
            self.sync()
            self._save_commit_index()
        finally:
            os.close(self._fd)
            self._fd = -1

    # -- term, vote and commit index ---------------------------------------------------------

    def setCurrentTerm(self, term: int, votedForNodeId: str | None) -> None:  # noqa: N802
        """Record the term and vote durably before returning (Raft §5.1: before any reply shows them)."""
        self.sync()
        write_state(self.data_dir, term, votedForNodeId, self._commit_index)
        self._term, self._voted_for = term, votedForNodeId
        self._saved_commit_index = self._commit_index

    def getCurrentTerm(self) -> int:  # noqa: N802
        return self._term

    def getVotedForNodeId(self) -> str | None:  # noqa: N802
        return self._voted_for

    def setRaftCommitIndex(self, raftCommitIndex: int) -> None:  # noqa: N802
        self._commit_index = raftCommitIndex      # saved within a second (onOneSecondTimer)

    def getRaftCommitIndex(self) -> int:  # noqa: N802
        return self._commit_index

    def onOneSecondTimer(self) -> None:  # noqa: N802
        self._save_commit_index()

    def _save_commit_index(self) -> None:
        """Save the commit index, after the entries it covers are durable (never ahead of them)."""
        if self._commit_index != self._saved_commit_index:
            self.sync()
            write_state(self.data_dir, self._term, self._voted_for, self._commit_index)
            self._saved_commit_index = self._commit_index
