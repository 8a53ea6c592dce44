"""raft_journal.Journal: records, torn and corrupt tails, durable term/vote, PySyncObj conversion."""

from __future__ import annotations

import json
import logging
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from manager.state import raft_journal
from manager.state.raft_journal import MAGIC, Journal, JournalError, read_journal, read_state

pytestmark = [pytest.mark.raft]


def fill(journal: Journal, first: int, count: int, term: int = 1) -> list:
    entries = [(f"cmd-{i}".encode() * (i % 7 + 1), i, term) for i in range(first, first + count)]
    for entry in entries:
        journal.add(*entry)
    journal.sync()
    return entries


def test_entries_and_state_survive_reopen(tmp_path):
    journal = Journal(tmp_path)
    entries = fill(journal, 1, 50)
    journal.setCurrentTerm(3, "127.0.0.1:1")
    journal.setRaftCommitIndex(40)
    journal._destroy()
    again = Journal(tmp_path)
    assert list(again[:]) == entries and len(again) == 50
    assert (again.getCurrentTerm(), again.getVotedForNodeId(), again.getRaftCommitIndex()) == (3, "127.0.0.1:1", 40)
    assert again.recovery.dropped_bytes == 0
    assert read_state(tmp_path) == {"term": 3, "voted_for": "127.0.0.1:1", "commit_index": 40}


def test_term_and_vote_are_on_disk_when_set_current_term_returns(tmp_path):
    journal = Journal(tmp_path)
    journal.setCurrentTerm(7, "127.0.0.1:9")
    assert read_state(tmp_path)["term"] == 7 and read_state(tmp_path)["voted_for"] == "127.0.0.1:9"
    journal._destroy()


def test_every_torn_tail_recovers_the_valid_prefix(tmp_path, caplog):
    journal = Journal(tmp_path)
    entries = fill(journal, 1, 5)
    journal._destroy()
    data = (tmp_path / "raft.journal").read_bytes()
    _, offsets, end, _ = raft_journal.scan(data)
    last = offsets[-1]
    for cut in range(last + 1, end):
        (tmp_path / "raft.journal").write_bytes(data[:cut])
        caplog.clear()
        with caplog.at_level(logging.WARNING, "manager.state.raft_journal"):
            again = Journal(tmp_path)
        assert list(again[:]) == entries[:-1], cut
        assert again.recovery.dropped_bytes == cut - last
        assert "dropped the last" in caplog.text
        assert (tmp_path / "raft.journal").stat().st_size == last  # the cut is made on disk
        again.add(*entries[-1])                                     # and appending goes on from there
        again._destroy()
        assert list(Journal(tmp_path)[:]) == entries


@pytest.mark.parametrize("damage", ["flip a payload byte", "zero tail", "huge length", "index gap"])
def test_a_corrupt_record_ends_the_log_there(tmp_path, damage):
    journal = Journal(tmp_path)
    entries = fill(journal, 1, 6)
    journal._destroy()
    path = tmp_path / "raft.journal"
    data = bytearray(path.read_bytes())
    _, offsets, _, _ = raft_journal.scan(bytes(data))
    at = offsets[3]
    if damage == "flip a payload byte":
        data[at + 8 + 17] ^= 0x40
    elif damage == "zero tail":
        data[at:] = b"\0" * (len(data) - at)
    elif damage == "huge length":
        data[at:at + 4] = struct.pack("<I", 2**31)
    else:
        data[at:] = raft_journal.encode_record(b"x", 99, 1)
    path.write_bytes(bytes(data))
    again = Journal(tmp_path)
    assert list(again[:]) == entries[:3]
    assert bool(again.recovery.reason) == (damage != "zero tail")   # zeros are the preallocated end


def test_a_commit_index_past_the_log_is_clamped(tmp_path):
    journal = Journal(tmp_path)
    fill(journal, 1, 4)
    journal.setRaftCommitIndex(4)
    journal._destroy()
    data = (tmp_path / "raft.journal").read_bytes()
    _, _, end, _ = raft_journal.scan(data)
    (tmp_path / "raft.journal").write_bytes(data[:end - 3])
    assert Journal(tmp_path).getRaftCommitIndex() == 3


def test_the_preallocated_zeros_are_not_a_torn_tail_but_a_half_written_record_in_them_is(tmp_path, caplog):
    journal = Journal(tmp_path)
    entries = fill(journal, 1, 3)
    journal._destroy()
    path = tmp_path / "raft.journal"
    assert path.stat().st_size == raft_journal.PREALLOCATE
    with caplog.at_level(logging.WARNING, "manager.state.raft_journal"):
        again = Journal(tmp_path)
    assert list(again[:]) == entries and not again.recovery.reason and not caplog.text
    end = again._end
    again._destroy()
    record = raft_journal.encode_record(b"payload" * 20, 4, 1)
    with open(path, "r+b") as f:          # only the first half of record 4 reached the disk
        f.seek(end)
        f.write(record[:len(record) // 2])
    with caplog.at_level(logging.WARNING, "manager.state.raft_journal"):
        again = Journal(tmp_path)
    assert list(again[:]) == entries and "fails its checksum" in caplog.text


def test_stale_records_past_a_truncation_never_come_back(tmp_path):
    journal = Journal(tmp_path)
    fill(journal, 1, 10)
    journal.deleteEntriesFrom(4)        # entries 5.. dropped; 5' is exactly as long as 5 was
    journal.add(b"cmd-5" * 6, 5, 2)
    journal.sync()
    journal._destroy()
    assert [e[1:] for e in Journal(tmp_path)[:]] == [(1, 1), (2, 1), (3, 1), (4, 1), (5, 2)]


def test_delete_from_and_to_persist(tmp_path):
    journal = Journal(tmp_path)
    entries = fill(journal, 1, 10)
    journal.deleteEntriesFrom(7)
    journal.add(b"new", 8, 2)
    journal.sync()
    journal.deleteEntriesTo(3)
    journal._destroy()
    assert list(Journal(tmp_path)[:]) == entries[3:7] + [(b"new", 8, 2)]


def test_not_a_journal_is_refused_with_its_name(tmp_path):
    (tmp_path / "raft.journal").write_bytes(b"something else entirely")
    with pytest.raises(JournalError, match="raft.journal is not a shoal raft journal"):
        Journal(tmp_path)


def test_a_pysyncobj_directory_is_converted(tmp_path):
    from pysyncobj.journal import FileJournal
    old = FileJournal(str(tmp_path / "raft.journal"))
    old.add(b"\x00", 1, 0)
    old.add(b"first", 2, 4)
    old.add(b"second", 3, 4)
    old.setCurrentTerm(4, "127.0.0.1:5")
    old.setRaftCommitIndex(3)
    old.onOneSecondTimer()
    old._destroy()
    journal = Journal(tmp_path)
    assert list(journal[:]) == [(b"\x00", 1, 0), (b"first", 2, 4), (b"second", 3, 4)]
    assert (journal.getCurrentTerm(), journal.getVotedForNodeId(), journal.getRaftCommitIndex()) == (4, "127.0.0.1:5", 3)
    assert not (tmp_path / "raft.journal.meta").exists()
    assert (tmp_path / "raft.journal").read_bytes().startswith(MAGIC)


def test_offline_read_and_write_for_recovery_tools(tmp_path):
    raft_journal.write_journal(tmp_path, [(b"a", 5, 2), (b"b", 6, 2)])
    raft_journal.write_state(tmp_path, 2, None, 6)
    entries, recovery = read_journal(tmp_path)
    assert entries == [(b"a", 5, 2), (b"b", 6, 2)] and recovery.last_index == 6
    assert json.loads((tmp_path / "raft.state").read_bytes())["commit_index"] == 6


operations = st.lists(st.one_of(
    st.tuples(st.just("add"), st.binary(max_size=40)),
    st.tuples(st.just("from"), st.integers(0, 30)),
    st.tuples(st.just("to"), st.integers(0, 30)),
    st.tuples(st.just("clear"), st.none()),
    st.tuples(st.just("reopen"), st.none())), max_size=40)


@settings(max_examples=60, deadline=None)
@given(operations)
def test_the_file_always_matches_the_entries_in_memory(tmp_path_factory, ops):
    path = tmp_path_factory.mktemp("j")
    journal = Journal(path)
    model: list = []
    for op, arg in ops:
        if op == "add":
            index = model[-1][1] + 1 if model else 1
            journal.add(arg, index, 1)
            model.append((arg, index, 1))
        elif op == "from":
            journal.deleteEntriesFrom(arg)
            del model[arg:]
        elif op == "to":
            journal.deleteEntriesTo(arg)
            model = model[arg:]
        elif op == "clear":
            journal.clear()
            model = []
        else:
            journal._destroy()
            journal = Journal(path)
        assert list(journal[:]) == model
    journal._destroy()
    assert list(Journal(path)[:]) == model
