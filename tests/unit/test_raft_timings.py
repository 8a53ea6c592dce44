"""Raft election/heartbeat ticks as cluster settings: rules, timers, the ControlAPI and the CLI."""

from __future__ import annotations

import click
import pytest

from manager.state.raft_timings import RaftTimings, check_ticks, timings_from_ticks


def test_the_default_ticks_are_the_default_timings():
    assert timings_from_ticks(0, 0) == RaftTimings() == timings_from_ticks(10, 1)
    assert (RaftTimings().election_min, RaftTimings().election_max, RaftTimings().heartbeat) == (1.0, 1.5, 0.1)


def test_ticks_scale_every_timer():
    timings = timings_from_ticks(30, 2)
    assert (timings.election_min, timings.election_max, timings.heartbeat) == pytest.approx((3.0, 4.5, 0.2))
    assert timings.leader_fallback == pytest.approx(3.0) and timings.connection_timeout == pytest.approx(6.0)


@pytest.mark.parametrize("election, heartbeat, problem", [
    (3, 1, "must be greater than three heartbeat ticks"),
    (10, 4, "must be greater than three heartbeat ticks"),
    (601, 1, "over the maximum of 600"),
    (700, 101, "heartbeat tick 101 is over the maximum"),
    (-1, 1, "must be positive"),
])
def test_bad_ticks_are_named(election, heartbeat, problem):
    assert problem in check_ticks(election, heartbeat)
    with pytest.raises(ValueError, match=problem):
        timings_from_ticks(election, heartbeat)


async def test_update_cluster_refuses_bad_ticks_and_changes_nothing():
    from manager.controlapi import ControlAPI, ControlError
    from manager.state import LocalProposer, MemoryStore, Store
    from proto import control_pb2, objects_pb2

    memory = MemoryStore()
    store = Store(memory, LocalProposer(memory))
    await store.update(lambda tx: tx.create(objects_pb2.Cluster(id="c1")))
    api = ControlAPI(store, raft=None)
    spec = objects_pb2.ClusterSpec()
    spec.raft.election_tick, spec.raft.heartbeat_tick = 2, 1
    with pytest.raises(ControlError, match="invalid raft settings: election tick"):
        await api.update_cluster(control_pb2.UpdateClusterRequest(spec=spec))
    assert store.view().cluster().spec.raft.election_tick == 0
    spec.raft.election_tick = 20
    await api.update_cluster(control_pb2.UpdateClusterRequest(spec=spec))
    assert store.view().cluster().spec.raft.election_tick == 20


def test_the_cli_refuses_a_tick_below_one():
    from shoal.cli.swarm import _tick
    assert _tick("--election-tick", 10) == 10
    with pytest.raises(click.BadParameter, match="must be at least 1"):
        _tick("--heartbeat-tick", 0)
