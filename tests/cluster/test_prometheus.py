"""A real Prometheus (Debian's 2.42, scrape interval 1 s) against a lab, asked what an operator
pages on: running tasks per service equal to what `service ps` shows, scheduling-delay
observations, per-task memory from the runtime, Raft commit latency, every node up. It also
checks deploy/prometheus.yml's file-based discovery, written by `shoal node ls --format`."""
from __future__ import annotations

import json
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from shoal.lab import procs
from shoal.lab.netns import run_in_netns
from shoal.lab.plan import METRICS_PORT
from tests.cluster.waiting import wait_for

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def lab(lab_factory):
    return lab_factory(managers=1, workers=1)


@pytest.fixture(scope="module")
def prometheus(lab, tmp_path_factory):
    """Prometheus in the lab's underlay namespace (it reaches every host), configured like
    deploy/prometheus.yml: file-based targets, here written from `shoal node ls`."""
    work = tmp_path_factory.mktemp("prometheus")
    targets = work / "targets"
    targets.mkdir()
    # As deploy/prometheus.yml documents: node inspect --format over node ls -q.
    ids = lab.shoal("manager1", "node", "ls", "-q").stdout.split()
    addrs = lab.shoal("manager1", "node", "inspect", "--format", "{{.Status.Addr}}:" + str(METRICS_PORT),
                      *ids).stdout.split()
    assert len(addrs) == len(lab.hosts), addrs
    (targets / "shoal.json").write_text(json.dumps([{"targets": addrs, "labels": {"cluster": "lab"}}]))
    config = (REPO / "deploy" / "prometheus.yml").read_text()
    config = config.replace("/etc/prometheus/shoal-targets", str(targets)).replace("scrape_interval: 15s",
                                                                                   "scrape_interval: 1s")
    (work / "prometheus.yml").write_text(config)
    listen = f"{lab.plan.bridge_address}:19090"
    proc = subprocess.Popen(procs.in_netns(lab.plan.underlay_netns, [
        "prometheus", f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'data'}",
        f"--web.listen-address={listen}", "--log.level=warn"]),
        stdout=open(work / "prometheus.log", "wb"), stderr=subprocess.STDOUT)
    try:
        yield lab, listen, addrs
    finally:
        proc.terminate()
        proc.wait(30)


def query(lab, listen, expr):
    def get():
        url = f"http://{listen}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.load(response)["data"]["result"]
    return run_in_netns(lab.plan.underlay_netns, get)


def value(lab, listen, expr) -> float | None:
    result = query(lab, listen, expr)
    return float(result[0]["value"][1]) if result else None


def running_in_service_ps(lab, service) -> int:
    out = lab.shoal("manager1", "service", "ps", "--format", "json", service).stdout
    rows = [json.loads(line) for line in out.splitlines() if line.strip()]
    return sum(1 for r in rows if r["DesiredState"] == "Running" and r["CurrentState"].startswith("Running"))


def test_prometheus_sees_what_service_ps_shows(prometheus):
    lab, listen, addrs = prometheus
    image = f"{lab.registry}/shoal/busybox:latest"
    lab.shoal("manager1", "service", "create", "--name", "prom", "--replicas", "2", image, "sleep", "1d",
              timeout=120)
    try:
        lab.shoal("manager1", "service", "scale", "prom=3", timeout=120)
        wait_for(lambda: running_in_service_ps(lab, "prom") == 3, 60, what="3 tasks running")
        containers = [json.loads(line) for host in lab.hosts for line in
                      lab.shoal(host, "container", "ls", "--format", "json").stdout.splitlines() if line]
        victim = next(c for c in containers if "prom." in json.dumps(c))
        node = next(h for h in lab.hosts if victim["ID"] in lab.shoal(h, "container", "ls", "-q").stdout)
        lab.shoal(node, "container", "kill", victim["ID"])
        # The killed task's slot runs a new task; the old one is history (desired shutdown), which
        # shoal_tasks leaves out: it counts current slots only.
        wait_for(lambda: running_in_service_ps(lab, "prom") == 3 and
                 (value(lab, listen, 'sum(shoal_runtime_events_total{action="die"})') or 0) >= 1, 90,
                 what="the killed task replaced and its container's death counted")
        wait_for(lambda: value(lab, listen, 'sum(up)') == len(addrs), 60, what="every node up")
        wait_for(lambda: value(lab, listen, 'shoal_service_replicas_running{service="prom"}')
                 == running_in_service_ps(lab, "prom") == 3, 60, what="running replicas as service ps shows")
        assert value(lab, listen, 'shoal_service_replicas_desired{service="prom"}') == 3
        assert value(lab, listen, 'sum(shoal_tasks{service="prom",state="running"})') == 3
        assert value(lab, listen, 'shoal_scheduling_delay_seconds_count{stage="running"}') >= 4
        wait_for(lambda: value(lab, listen, 'count(shoal_container_memory_usage_bytes{service="prom"})') == 3, 30,
                 what="a memory series per running task")
        assert value(lab, listen, 'sum(shoal_store_proposal_latency_seconds_count)') > 0
        assert value(lab, listen, 'min(shoal_runtime_up)') == 1
        assert value(lab, listen, 'count(shoal_build_info)') == len(addrs)
    finally:
        lab.shoal("manager1", "service", "rm", "prom", check=False)
