"""/metrics for Prometheus: Raft term, commit index, leader flag, proposal latency,
store object counts and node counts by state.

Values are read from the daemon at scrape time by a custom collector, so nothing is
updated on hot paths except the proposal-latency histogram (owned by manager.state).
"""

from __future__ import annotations

import logging

from prometheus_client import REGISTRY, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from manager.quorum import node_state_counts, quorum_view
from manager.state import Kind

log = logging.getLogger(__name__)


PROPOSAL_LATENCY = Histogram(
    "shoal_store_proposal_latency_seconds", "Time from proposing a store change to its local apply",
    ["outcome"], buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))


def observe_proposal(seconds: float, outcome: str) -> None:
    """Store's on_proposal hook; called on the manager's loop after every proposal."""
    PROPOSAL_LATENCY.labels(outcome).observe(seconds)


class DaemonCollector:
    def __init__(self, daemon):
        self._daemon = daemon

    def collect(self):
        raft = self._daemon.raft
        manager = self._daemon.manager
        is_manager = GaugeMetricFamily("shoal_node_manager", "1 if this node is a swarm manager")
        is_manager.add_metric([], 1 if manager is not None else 0)
        yield is_manager
        certs = getattr(self._daemon, "certs", None)
        if certs is not None:
            expiry = GaugeMetricFamily("shoal_node_certificate_expiry_timestamp_seconds",
                                       "When this node's TLS certificate expires (seconds since the epoch)")
            expiry.add_metric([], certs.tls.not_after.timestamp())
            yield expiry
            renewals = GaugeMetricFamily("shoal_node_certificate_renewals",
                                         "Certificate renewals since shoald started this node's roles")
            renewals.add_metric([], certs.renewer.renewals)
            yield renewals
        if raft is None or manager is None:
            return
        status = raft.status()
        term = GaugeMetricFamily("shoal_raft_term", "Current Raft term")
        term.add_metric([], status.term)
        commit = GaugeMetricFamily("shoal_raft_commit_index", "Raft commit index")
        commit.add_metric([], status.commit_index)
        quorum = quorum_view(status)
        leader = GaugeMetricFamily("shoal_raft_leader", "1 if this manager is the Raft leader")
        leader.add_metric([], 1 if status.is_leader and quorum.leader == status.self_addr else 0)
        has_leader = GaugeMetricFamily("shoal_raft_has_leader",
                                       "1 if this manager can confirm a leader (0: election or quorum lost)")
        has_leader.add_metric([], 1 if quorum.leader else 0)
        has_quorum = GaugeMetricFamily("shoal_raft_quorum",
                                       "1 if more than half of the Raft members are reachable from here")
        has_quorum.add_metric([], 1 if quorum.has_quorum else 0)
        members = GaugeMetricFamily("shoal_raft_members", "Raft members by reachability from here",
                                    labels=["reachable"])
        reachable = sum(1 for m in status.members if m.reachable)
        members.add_metric(["true"], reachable)
        members.add_metric(["false"], len(status.members) - reachable)
        restarts = CounterMetricFamily("shoal_manager_component_restarts",
                                       "Restarts of a leader component after it failed", labels=["component"])
        for name, count in sorted(manager.component_restarts.items()):
            restarts.add_metric([name], count)
        yield from (term, commit, leader, has_leader, has_quorum, members, restarts)
        view = manager.store.view()
        objects = GaugeMetricFamily("shoal_store_objects", "Objects in the store by kind", labels=["kind"])
        for kind in Kind:
            objects.add_metric([kind.name.lower()], len(view.list(kind)))
        yield objects
        nodes = GaugeMetricFamily("shoal_nodes", "Nodes by state as node ls shows them (unknown while "
                                  "this manager sees no leader)", labels=["state"])
        for name, count in node_state_counts(view.nodes(), quorum).items():
            nodes.add_metric([name], count)
        yield nodes


def serve_metrics(daemon, host: str, port: int) -> None:
    """Serve /metrics on host:port from a background thread (prometheus_client's server)."""
    REGISTRY.register(DaemonCollector(daemon))
    try:
        start_http_server(port, addr=host)
    except OSError as err:
        log.warning("metrics disabled: cannot listen on %s:%d: %s", host, port, err)
