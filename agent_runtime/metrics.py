"""shoal-runtimed's Prometheus metrics, served as text on its own socket (`GET /metrics`); shoald
appends them to its `/metrics`, so one scrape target per node is enough.

Read at scrape time (nothing on hot paths but two counters and a histogram):
- shoal_runtime_containers{state}: containers by state (created, running, exited, ...).
- shoal_container_cpu_seconds_total, shoal_container_memory_usage_bytes, shoal_container_memory_limit_bytes,
  shoal_container_pids, shoal_container_oom_killed: per running (or, for OOM, exited) container from its
  cgroup, labelled cAdvisor-style with the swarm labels the worker sets: service, task, node (a container
  started by `shoal run` has empty ones) and the container name.
- shoal_runtime_events_total{action}: container events published (create, start, die, oom, ...).
- shoal_image_pulls_total{outcome}, shoal_image_pull_bytes_total, shoal_image_pull_duration_seconds.
- shoal_runtime_api_request_duration_seconds{method, route, code}: every API call.
Labels stay of low cardinality except the per-container series, which exist once per container, as
cAdvisor's do.
"""
from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any, Iterator

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

log = logging.getLogger(__name__)

SERVICE, TASK, NODE = "com.docker.swarm.service.name", "com.docker.swarm.task.name", "com.docker.swarm.node.id"
CONTAINER_LABELS = ["service", "task", "node", "name"]


class RuntimeMetrics:
    """Counters the runtime updates, and the scrape-time collector over its containers."""

    def __init__(self, manager: Any) -> None:
        self.manager = manager
        self.registry = CollectorRegistry(auto_describe=True)
        self.api_latency = Histogram(
            "shoal_runtime_api_request_duration_seconds", "shoal-runtimed API calls by route and status code",
            ["method", "route", "code"], registry=self.registry,
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30))
        self.pull_duration = Histogram(
            "shoal_image_pull_duration_seconds", "Image pulls, from request to stored image",
            registry=self.registry, buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300))
        self.pulls: Counter[str] = Counter()
        self.pull_bytes = 0
        self.registry.register(self)

    def pulled(self, seconds: float, size: int | None, ok: bool) -> None:
        self.pulls["ok" if ok else "error"] += 1
        if ok:
            self.pull_duration.observe(seconds)
            self.pull_bytes += size or 0

    def text(self) -> bytes:
        return generate_latest(self.registry)

    def describe(self) -> list:
        return []

    def collect(self) -> Iterator[Any]:
        containers = list(self.manager.containers.values())
        states = GaugeMetricFamily("shoal_runtime_containers", "Containers by state", labels=["state"])
        for state, count in sorted(Counter(c.state.status for c in containers).items()):
            states.add_metric([state], count)
        yield states
        cpu = CounterMetricFamily("shoal_container_cpu_seconds", "CPU time used by a running container",
                                  labels=CONTAINER_LABELS)
        mem = GaugeMetricFamily("shoal_container_memory_usage_bytes", "Memory a running container uses",
                                labels=CONTAINER_LABELS)
        limit = GaugeMetricFamily("shoal_container_memory_limit_bytes", "A running container's memory limit",
                                  labels=CONTAINER_LABELS)
        pids = GaugeMetricFamily("shoal_container_pids", "Processes in a running container", labels=CONTAINER_LABELS)
        oom = GaugeMetricFamily("shoal_container_oom_killed", "1 if the container's last exit was an OOM kill",
                                labels=CONTAINER_LABELS)
        for c in containers:
            labels = [c.spec.labels.get(SERVICE, ""), c.spec.labels.get(TASK, ""), c.spec.labels.get(NODE, ""), c.name]
            if c.state.status == "running":
                try:
                    s = self.manager.cgroup(c).stats()
                except OSError as exc:   # the container ended between the list and the read
                    log.debug("no cgroup figures for %s: %s", c.name, exc)
                    continue
                cpu.add_metric(labels, s.cpu_usage_ns / 1e9)
                mem.add_metric(labels, s.memory_usage_bytes)
                if s.memory_limit_bytes:
                    limit.add_metric(labels, s.memory_limit_bytes)
                pids.add_metric(labels, s.pids_current)
            elif c.state.oom_killed:
                oom.add_metric(labels, 1)
        yield from (cpu, mem, limit, pids, oom)
        events = CounterMetricFamily("shoal_runtime_events", "Container events published", labels=["action"])
        for action, count in sorted(self.manager.events.counts.items()):
            events.add_metric([action], count)
        yield events
        pulls = CounterMetricFamily("shoal_image_pulls", "Image pulls by outcome", labels=["outcome"])
        for outcome in ("ok", "error"):
            pulls.add_metric([outcome], self.pulls[outcome])
        yield pulls
        pulled = CounterMetricFamily("shoal_image_pull_bytes", "Bytes of the images pulled (their size)")
        pulled.add_metric([], self.pull_bytes)
        yield pulled


def route_of(request: Any) -> str:
    """A request's route pattern ("/containers/{id}/stats"), not its path: labels stay few."""
    resource = request.match_info.route.resource if request.match_info.route else None
    return resource.canonical if resource is not None else "unmatched"


def middleware(metrics: RuntimeMetrics) -> Any:
    from aiohttp import web

    @web.middleware
    async def measure(request: Any, handler: Any) -> Any:
        start = time.perf_counter()
        code = 500
        try:
            response = await handler(request)
            code = response.status
            return response
        except web.HTTPException as exc:
            code = exc.status
            raise
        finally:
            metrics.api_latency.labels(request.method, route_of(request), str(code)).observe(time.perf_counter() - start)

    return measure
