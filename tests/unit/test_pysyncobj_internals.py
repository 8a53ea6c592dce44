"""The PySyncObj internals manager/state/raft.py depends on are still there and mean the same.

raft.py overrides a name-mangled private method, reads private attributes and relies on the
shapes of getStatus(), FAIL_REASON and the serializer's dump tuple. pyproject.toml bounds
pysyncobj to the version these checks were written against; this test is what to run (and
extend) before moving that bound.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pysyncobj
import pysyncobj.journal
import pysyncobj.serializer
import pysyncobj.syncobj
from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf

RAFT_PY = Path(__file__).resolve().parents[2] / "manager" / "state" / "raft.py"
SYNCOBJ_SOURCE = inspect.getsource(pysyncobj.syncobj)


def test_every_mangled_name_raft_py_uses_exists_in_syncobj():
    used = set(re.findall(r"_SyncObj__(\w+)", RAFT_PY.read_text()))
    assert used, "raft.py no longer uses SyncObj's private names: drop this check"
    for name in used:
        assert re.search(rf"(def __{name}\(|self\.__{name}\s*=)", SYNCOBJ_SOURCE), \
            f"SyncObj no longer defines __{name} (used by raft.py as _SyncObj__{name})"


def test_the_protected_methods_raft_py_calls_exist():
    for name in ("_doDestroy", "_getLeader", "_isLeader", "getStatus", "addOnTickCallback", "doTick",
                 "addNodeToCluster", "removeNodeFromCluster", "transferLeadership", "_onTick",
                 "removeOnTickCallback"):
        assert callable(getattr(SyncObj, name, None)), f"SyncObj.{name} is gone"


def test_the_message_handler_raft_py_wraps_still_moves_next_index_back_on_a_late_ack():
    """raft.py's override exists because of exactly this assignment; if it is gone, so is the bug."""
    handler = inspect.getsource(getattr(SyncObj, "_SyncObj__onMessageReceived"))
    assert "message['type'] == 'next_node_idx'" in handler
    for key in ("'reset'", "'success'", "'next_node_idx'"):
        assert key in handler
    assert "self.__raftNextIndex[node] = nextNodeIdx" in handler


def test_the_journal_raft_py_replaces_is_built_by_the_module_level_create_journal():
    """raft.py swaps pysyncobj.syncobj.createJournal to hand PySyncObj its own raft_journal.Journal."""
    assert "self.__raftLog = createJournal(self.__conf.journalFile)" in SYNCOBJ_SOURCE
    assert callable(getattr(pysyncobj.journal.FileJournal, "onOneSecondTimer", None))
    # the journal interface raft_journal.Journal implements
    for name in ("add", "clear", "deleteEntriesFrom", "deleteEntriesTo", "__getitem__", "__len__",
                 "_destroy", "setRaftCommitIndex", "getRaftCommitIndex", "setCurrentTerm",
                 "getCurrentTerm", "getVotedForNodeId", "onOneSecondTimer"):
        assert name in vars(pysyncobj.journal.Journal), f"Journal.{name} is gone"
    public = {n for n in vars(pysyncobj.journal.Journal) if not n.startswith("__") or n in
              ("__getitem__", "__len__")}
    from manager.state.raft_journal import Journal
    assert public <= set(dir(Journal)), public - set(dir(Journal))


def test_the_transport_hooks_raft_py_uses():
    """raft.py passes transportClass= and syncs its journal in send(node, message) by message type."""
    import pysyncobj.transport
    assert "transportClass" in inspect.signature(SyncObj.__init__).parameters
    assert list(inspect.signature(pysyncobj.transport.TCPTransport.send).parameters) == ["self", "node", "message"]
    for kind in ("append_entries", "next_node_idx", "request_vote", "response_vote", "apply_command",
                 "apply_command_response", "timeout_now"):
        assert f"'type': '{kind}'" in SYNCOBJ_SOURCE, f"SyncObj no longer sends {kind} messages"
    assert "'commit_index': self.__raftCommitIndex" in SYNCOBJ_SOURCE


def test_the_election_start_raft_py_precedes_with_a_pre_vote():
    """raft.py's _onTick runs a pre-vote where SyncObj._onTick would start an election: the same
    condition, and a timeout_now that zeroes the deadline and marks a transfer."""
    tick = inspect.getsource(SyncObj._onTick)
    assert ("if self.__raftElectionDeadline < monotonicTime() and self.__connectedToAnyone():"
            in tick)
    assert "self.__setCurrentTerm(self.__raftCurrentTerm + 1, self.__selfNode.id)" in tick
    handler = inspect.getsource(getattr(SyncObj, "_SyncObj__onMessageReceived"))
    assert "self.__raftElectionDeadline = 0" in handler
    assert "self.__transferInProgress = True" in handler
    assert "self._onTick(timeToWait)" in inspect.getsource(SyncObj.doTick)


def test_leader_state_and_fail_reasons():
    assert pysyncobj.syncobj._RAFT_STATE.LEADER == 2  # raft.py's _LEADER_STATE
    assert pysyncobj.syncobj._RAFT_STATE.FOLLOWER == 0   # _FOLLOWER_STATE
    assert pysyncobj.syncobj._RAFT_STATE.CANDIDATE == 1  # _CANDIDATE_STATE
    for name in ("SUCCESS", "QUEUE_FULL", "MISSING_LEADER", "DISCARDED", "NOT_LEADER"):
        assert isinstance(getattr(FAIL_REASON, name), int), f"FAIL_REASON.{name} is gone"


def test_get_status_keys_raft_status_reads():
    source = inspect.getsource(SyncObj.getStatus)
    for key in ("raft_term", "commit_idx", "last_applied", "leader", "state", "has_quorum",
                "partner_node_status_server_"):
        assert f"'{key}'" in source, f"getStatus() no longer reports {key}"
    assert "2 if self.isNodeConnected(node) else 0" in source


def test_the_dump_hands_raft_py_three_items_and_takes_back_its_deserializer_tuple():
    serialize = inspect.getsource(pysyncobj.serializer.Serializer.serialize)
    assert "self.__serializer(tmpFile, data[1:])" in serialize
    assert "self.__serializer.serialize((data, lastAppliedEntries[1], lastAppliedEntries[0], cluster)" \
        in SYNCOBJ_SOURCE
    deserialize = inspect.getsource(pysyncobj.serializer.Serializer.deserialize)
    assert "return (None,) + self.__deserializer(self.__fileName)" in deserialize


def test_every_option_raft_py_sets_is_one_syncobjconf_knows():
    """SyncObjConf takes any keyword: a renamed option would be ignored silently."""
    source = RAFT_PY.read_text()
    block = source[source.index("SyncObjConf("):]
    block = block[:block.index("\n        )")]
    options = re.findall(r"^\s+(\w+)=", block, re.MULTILINE)
    assert "onStateChanged" in options and "journalFile" in options
    defaults = SyncObjConf()
    for name in options:
        assert hasattr(defaults, name), f"SyncObjConf has no option {name} (raft.py sets it)"


def test_the_transport_internals_raft_py_replaces_connections_through():
    """raft.py's _Transport swaps TcpServer/TcpConnection for raft_transport's through these."""
    import pysyncobj.poller
    import pysyncobj.tcp_connection
    import pysyncobj.transport

    from manager.state import raft_transport
    transport = pysyncobj.transport.TCPTransport
    for name in ("_createServer", "addNode", "_onIncomingMessageReceived", "_onTick", "_onNewIncomingConnection",
                 "_onOutgoingConnected", "_onMessageReceived", "_onDisconnected", "_shouldConnect"):
        assert callable(getattr(transport, name, None)), f"TCPTransport.{name} is gone"
    source = inspect.getsource(transport)
    for attribute in ("self._nodes", "self._nodeAddrToNode", "self._unknownConnections", "self._connections",
                      "self._server"):
        assert attribute in source, f"TCPTransport no longer keeps {attribute}"
    state = pysyncobj.tcp_connection.CONNECTION_STATE
    assert (state.DISCONNECTED, state.CONNECTING, state.CONNECTED) == (
        raft_transport.DISCONNECTED, raft_transport.CONNECTING, raft_transport.CONNECTED)
    events = pysyncobj.poller.POLL_EVENT_TYPE
    assert (events.READ, events.WRITE, events.ERROR) == (raft_transport.READ, raft_transport.WRITE,
                                                         raft_transport.ERROR)
