"""The Raft port (2378) admits only cluster peers, and nobody else can make it grow or stall.

Hostile input from the network: 100 MB of random bytes, 3,000 idle connections, a peer with
another cluster's key, an authenticated peer sending an oversized or altered frame.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import socket
import struct

import pytest

from manager.state import raft_transport
from member_procs import leader_of, members  # noqa: F401 (members is a fixture)
from peer_client import PeerClient
from raft_cluster import PASSWORD, wait_for

pytestmark = [pytest.mark.raft, pytest.mark.timeout(240)]


def blast(addr: str, total: int) -> int:
    """Send ``total`` random bytes to ``addr``, reconnecting whenever it hangs up; return bytes sent."""
    host, port = addr.rsplit(":", 1)
    junk = os.urandom(1 << 20)
    sent = connections = 0
    while sent < total:
        connections += 1
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            try:
                while sent < total:
                    sent += sock.send(junk)
            except (ConnectionResetError, BrokenPipeError, TimeoutError):
                pass
    return connections


def open_idle(addr: str, count: int) -> list[socket.socket]:
    host, port = addr.rsplit(":", 1)
    socks = []
    for _ in range(count):
        sock = socket.socket()
        sock.setblocking(False)
        try:
            sock.connect((host, int(port)))
        except BlockingIOError:
            pass
        socks.append(sock)
    return socks


async def test_a_blast_and_thousands_of_idle_connections_leave_the_leader_as_it_was(members):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    cluster = members(3, shadow=False)
    for member in cluster:
        await member.start()
    leader = await leader_of(cluster)
    leader.send({"op": "write", "prefix": "warm", "count": 200, "parallel": 4})
    while "done" not in (reply := await leader.read()):
        assert "ack" in reply, reply
    term = (await leader.ask({"op": "status"}))["term"]
    rss_before = leader.rss_kib()

    fds_before = leader.open_fds()

    connections = await asyncio.to_thread(blast, leader.addr, 100 * 1024 * 1024)
    socks = await asyncio.to_thread(open_idle, leader.addr, 3000)
    try:
        # the leader still commits while the idle connections are open
        leader.send({"op": "write", "prefix": "during", "count": 20, "parallel": 1})
        while "done" not in (reply := await leader.read()):
            assert "ack" in reply, reply
        rss_after, fds_during = leader.rss_kib(), leader.open_fds()
        # and closes every connection that does not finish its handshake
        await wait_for(lambda: leader.open_fds() <= fds_before, raft_transport.HANDSHAKE_TIMEOUT * 6,
                       "the leader to close the idle connections")
    finally:
        for sock in socks:
            sock.close()
    statuses = [await m.ask({"op": "status"}) for m in cluster]
    assert rss_after - rss_before < 50 * 1024, (
        f"leader RSS grew from {rss_before} to {rss_after} KiB ({connections} blast connections)")
    assert fds_during <= fds_before + raft_transport.MAX_PENDING + 2, (
        f"the leader held {fds_during - fds_before} more sockets with 3000 idle connections open")
    assert {s["term"] for s in statuses} == {term}, f"an election happened: {statuses}"
    assert all(s["leader"] == leader.addr for s in statuses)


async def test_a_peer_with_another_clusters_key_is_refused(cluster_factory, caplog):
    cluster = cluster_factory(2)
    refused = raft_transport.refusals.count
    raft_transport.refusals.reset()         # so that this refusal is logged, whatever came before
    with caplog.at_level(logging.WARNING, "manager.state.raft_transport"):
        cluster.start(0)
        cluster.start(1, password="another cluster's raft password")
        await wait_for(lambda: raft_transport.refusals.count > refused, 15, "a refused handshake")
    assert "know this cluster's raft key" in caplog.text
    status = cluster.nodes[0].status()
    assert not [m for m in status.members if m.addr == cluster.addrs[1] and m.reachable]
    assert status.leader_addr is None and cluster.nodes[1].status().leader_addr is None

    client = await asyncio.to_thread(PeerClient, cluster.addrs[0], "not the key", 10)
    try:
        await asyncio.to_thread(client.handshake, False)
        assert await asyncio.to_thread(client.closed_by_server)
    finally:
        client.close()


@pytest.mark.parametrize("abuse", ["oversized length", "altered frame", "not a member", "pysyncobj utility"])
async def test_an_authenticated_peer_breaking_the_rules_is_dropped(cluster_factory, abuse):
    cluster = cluster_factory(1)
    cluster.start_all()
    await cluster.leader()
    client = await asyncio.to_thread(PeerClient, cluster.addrs[0], PASSWORD, 10)
    try:
        await asyncio.to_thread(client.handshake)
        refused = raft_transport.refusals.count
        if abuse == "oversized length":
            client.sock.sendall(struct.pack("<I", 0xFFFFFFF0))
        elif abuse == "altered frame":
            frame = bytearray(client.seal("127.0.0.1:1"))
            frame[-1] ^= 1
            client.sock.sendall(bytes(frame))
        elif abuse == "not a member":
            client.send("127.0.0.1:1")
        else:
            client.send(["status"])
        assert await asyncio.to_thread(client.closed_by_server)
        assert raft_transport.refusals.count == refused + 1     # counted, and logged unless a flood
    finally:
        client.close()
    assert cluster.nodes[0].status().is_leader
