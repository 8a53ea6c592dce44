"""Fixtures for the raft tier: ``cluster_factory(size, **RaftNode options)`` stops what it made."""

from __future__ import annotations

import pytest
from raft_cluster import RaftCluster


@pytest.fixture
async def cluster_factory(tmp_path):
    made: list[RaftCluster] = []

    def make(size: int = 3, **node_options) -> RaftCluster:
        cluster = RaftCluster(tmp_path, size, **node_options)
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        await cluster.stop_all()
