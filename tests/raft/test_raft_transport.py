"""raft_transport's Connection and Listener on PySyncObj's own poller, without a RaftNode."""

from __future__ import annotations

import time

import pytest
from pysyncobj.poller import createPoller

from manager.state import raft_transport as rt
from raft_cluster import free_port

pytestmark = [pytest.mark.raft, pytest.mark.timeout(60)]


class Pair:
    """A client Connection to a Listener, pumped like PySyncObj's tick does."""

    def __init__(self, timeout: float) -> None:
        self.poller = createPoller("auto")
        key = rt.derive_key("a raft password")
        self.port = free_port()
        self.server_side: list[rt.Connection] = []
        self.received: list = []
        self.listener = rt.Listener(self.poller, "127.0.0.1", self.port, key, self._accepted, timeout=timeout)
        self.listener.bind()
        self.client = rt.Connection(self.poller, key, timeout=timeout)
        self.client.connect("127.0.0.1", self.port)

    def _accepted(self, conn: rt.Connection) -> None:
        conn.setOnMessageReceivedCallback(self.received.append)
        self.server_side.append(conn)

    def pump(self, seconds: float) -> None:
        """Poll for ``seconds``, running the transport's per-tick timeout and keepalive duties."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.poller.poll(0.01)
            now = time.monotonic()
            for conn in [self.client, *self.server_side]:
                conn.check_timeout(now)
                conn.keepalive(now)

    def pump_until(self, predicate, limit: float = 10.0) -> None:
        end = time.monotonic() + limit
        while not predicate():
            assert time.monotonic() < end, "condition not reached"
            self.pump(0.02)

    def close(self) -> None:
        self.client.disconnect()
        self.listener.unbind()


def test_an_idle_connection_stays_up_and_delivers_the_next_message():
    """Two followers say nothing to each other until one stands for election: that vote request
    must not find the connection timed out (it was dropped, costing a whole election timeout)."""
    pair = Pair(timeout=1.0)
    try:
        pair.pump_until(lambda: pair.client.state == rt.CONNECTED and pair.server_side
                        and pair.server_side[0].state == rt.CONNECTED)
        pair.pump(3.5)                  # idle for three and a half timeouts
        assert pair.client.state == rt.CONNECTED
        pair.client.send({"type": "request_vote", "term": 7})
        pair.pump_until(lambda: pair.received)
        assert pair.received == [{"type": "request_vote", "term": 7}]
    finally:
        pair.close()


def test_a_peer_that_goes_silent_is_disconnected():
    pair = Pair(timeout=1.0)
    try:
        pair.pump_until(lambda: pair.server_side and pair.server_side[0].state == rt.CONNECTED)
        server = pair.server_side[0]
        pair.client._on_event = lambda fd, events: None   # the client's process stops answering
        pair.client.keepalive = lambda now: None
        pair.client.check_timeout = lambda now, idle=True: None
        pair.pump_until(lambda: server.state == rt.DISCONNECTED)
    finally:
        pair.close()
