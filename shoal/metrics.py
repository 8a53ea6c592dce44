"""/metrics for Prometheus: one target per node.

Every node: build info, certificate expiry, and shoal-runtimed's metrics (agent_runtime.metrics:
containers, per-container CPU/memory/pids/OOM, image pulls, API latency), fetched from its socket
at scrape time and passed through. Managers add Raft (term, commit index, leader, quorum,
members, leader changes), the store (objects by kind, proposal latency), tasks of current slots
by service and state, desired and running replicas per service, scheduling delay histograms
(created -> assigned -> running), leader components' pass durations and restarts, dispatcher
sessions and heartbeat misses, and nodes by state.

Values are read at scrape time by custom collectors; the hot paths only add to manager.stats.
"""

from __future__ import annotations

import logging

from prometheus_client import REGISTRY, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.parser import text_string_to_metric_families

from manager import stats
from manager.quorum import node_state_counts, quorum_view
from manager.state import Kind
from proto import objects_pb2
from shoal import __version__

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
        yield build_info()
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
        yield from service_metrics(view)
        yield from manager_stats(manager)


def build_info() -> GaugeMetricFamily:
    import platform
    from importlib import metadata

    import grpc

    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return ""

    info = GaugeMetricFamily("shoal_build_info", "Versions this daemon runs (always 1)",
                             labels=["version", "python", "grpcio", "pysyncobj"])
    info.add_metric([__version__, platform.python_version(), grpc.__version__,
                     version("pysyncobj")], 1)
    return info


def service_metrics(view):
    """Tasks of current slots (desired state at most RUNNING: not the kept history) by service
    and state, and per service the replicas wanted against those running."""
    names = {s.id: s.spec.annotations.name for s in view.services()}
    by_state: dict[tuple[str, str], int] = {}
    running: dict[str, int] = {}
    for task in view.tasks():
        if task.desired_state > objects_pb2.RUNNING or task.service_id not in names:
            continue
        service = names[task.service_id]
        state = objects_pb2.TaskState.Name(task.status.state).lower()
        by_state[(service, state)] = by_state.get((service, state), 0) + 1
        if task.status.state == objects_pb2.RUNNING:
            running[service] = running.get(service, 0) + 1
    tasks = GaugeMetricFamily("shoal_tasks", "Tasks of current slots by service and observed state",
                              labels=["service", "state"])
    for (service, state), count in sorted(by_state.items()):
        tasks.add_metric([service, state], count)
    yield tasks
    desired = GaugeMetricFamily("shoal_service_replicas_desired", "Replicas a replicated service asks for",
                                labels=["service"])
    actual = GaugeMetricFamily("shoal_service_replicas_running", "Tasks of a service running now",
                               labels=["service"])
    for svc in view.services():
        name = svc.spec.annotations.name
        if svc.spec.mode == objects_pb2.ServiceSpec.REPLICATED:
            desired.add_metric([name], svc.spec.replicas)
        actual.add_metric([name], running.get(name, 0))
    yield desired
    yield actual


def _histogram(name: str, doc: str, label: str, series: dict) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=[label])
    for key, hist in sorted(series.items()):
        family.add_metric([key], hist.cumulative(), hist.total)
    return family


def manager_stats(manager):
    yield _histogram("shoal_scheduling_delay_seconds", "From a task's creation to its being assigned, and "
                     "to its running", "stage", dict(stats.SCHEDULING_SECONDS))
    yield _histogram("shoal_manager_pass_duration_seconds", "One pass of a leader component", "component",
                     dict(stats.PASS_SECONDS))
    sessions = GaugeMetricFamily("shoal_dispatcher_sessions", "Agent sessions open on this manager's dispatcher")
    sessions.add_metric([], len(getattr(manager.dispatcher, "_sessions", {})))
    yield sessions
    misses = CounterMetricFamily("shoal_dispatcher_heartbeat_misses", "Nodes marked Down for missed heartbeats")
    misses.add_metric([], stats.COUNTERS["heartbeat_misses"])
    yield misses
    stalls = CounterMetricFamily("shoal_dispatcher_stalls", "Liveness checks that found this manager's event loop "
                                 "had stalled (heartbeat deadlines moved by the stall)")
    stalls.add_metric([], stats.COUNTERS["dispatcher_stalls"])
    yield stalls
    wait = HistogramMetricFamily("shoal_dispatcher_heartbeat_wait_seconds", "How long each heartbeat waited "
                                 "for this manager to handle it (its deadline's part already gone)")
    wait.add_metric([], stats.HEARTBEAT_WAIT.cumulative(), stats.HEARTBEAT_WAIT.total)
    yield wait
    leaders = CounterMetricFamily("shoal_raft_leader_changes", "Leaders this manager has seen take over")
    leaders.add_metric([], stats.COUNTERS["leader_changes"])
    yield leaders


class RuntimeCollector:
    """shoal-runtimed's /metrics (over its unix socket), passed through at scrape time."""

    def __init__(self, socket_path: str, timeout: float = 5.0):
        self._socket = socket_path
        self._timeout = timeout

    def collect(self):
        import http.client
        import socket as socketlib

        class Conn(http.client.HTTPConnection):
            def connect(conn):  # noqa: N805 - http.client's signature
                conn.sock = socketlib.socket(socketlib.AF_UNIX, socketlib.SOCK_STREAM)
                conn.sock.settimeout(self._timeout)
                conn.sock.connect(self._socket)

        up = GaugeMetricFamily("shoal_runtime_up", "1 if shoal-runtimed answered this scrape")
        try:
            conn = Conn("runtimed", timeout=self._timeout)
            conn.request("GET", "/metrics")
            response = conn.getresponse()
            text = response.read().decode()
            conn.close()
            if response.status != 200:
                raise OSError(f"HTTP {response.status}")
        except OSError as err:
            log.warning("runtime metrics unavailable: %s", err)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from text_string_to_metric_families(text)


def serve_metrics(daemon, host: str, port: int, runtime_socket: str | None = None) -> None:
    """Serve /metrics on host:port from a background thread (prometheus_client's server)."""
    REGISTRY.register(DaemonCollector(daemon))
    if runtime_socket:
        REGISTRY.register(RuntimeCollector(runtime_socket))
    try:
        start_http_server(port, addr=host)
    except OSError as err:
        log.warning("metrics disabled: cannot listen on %s:%d: %s", host, port, err)
