"""A full lab: 3 managers + 2 workers running shoald, as a user sees them through `shoal`.

Checks what shoal-lab promises (the swarm forms with the right roles; kill/stop/start drive the
right processes and a restarted node comes back from its state without re-joining). The cluster's
own behaviour under failures (leader election, partitions, persistence) is tested elsewhere.
"""
from __future__ import annotations

import sys
import time
from typing import Callable, TypeVar

import pytest

from shoal.lab import Lab

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]

MANAGERS = ["manager1", "manager2", "manager3"]
WORKERS = ["worker1", "worker2"]
HTTP_STATUS = ("import sys, urllib.request; "
               "print(urllib.request.urlopen(sys.argv[1], timeout=5).status)")
T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T], timeout: float = 60.0) -> T:
    """Poll `probe` until it returns something truthy; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.25)


def by_hostname(lab: Lab, on: str = "manager1") -> dict[str, dict]:
    return {node["Hostname"]: node for node in lab.nodes(on)}


def test_five_nodes_ready_with_their_roles(lab):
    nodes = by_hostname(lab)
    assert sorted(nodes) == sorted(MANAGERS + WORKERS)
    assert {name: node["Status"] for name, node in nodes.items()} == {name: "Ready" for name in nodes}
    # manager1 founded the cluster, but an election (a slow moment on a loaded machine) may move
    # the leadership: what must hold is one Leader among the managers, the others Reachable.
    assert sorted(nodes[m]["ManagerStatus"] for m in MANAGERS) == ["Leader", "Reachable", "Reachable"]
    assert [nodes[w]["ManagerStatus"] for w in WORKERS] == ["", ""]
    assert len({node["ID"] for node in nodes.values()}) == 5


def test_every_manager_lists_the_same_nodes(lab):
    expected = {name: node["ID"] for name, node in by_hostname(lab).items()}
    for manager in MANAGERS[1:]:
        assert {name: node["ID"] for name, node in by_hostname(lab, manager).items()} == expected


def test_status_shows_every_daemon_running(lab):
    status = lab.status()
    assert all(host["running"] for host in status["hosts"])
    assert len({host["pid"] for host in status["hosts"]}) == 5
    assert all(host["runtime_running"] for host in status["hosts"])


def test_metrics_answer_on_each_hosts_address(lab):
    for host in lab.hosts:
        url = f"http://{lab.address(host)}:9323/metrics"
        assert lab.exec("worker1", [sys.executable, "-c", HTTP_STATUS, url]).stdout.strip() == "200"


def test_killed_worker_goes_down_and_comes_back_from_its_state(lab):
    node_id = by_hostname(lab)["worker2"]["ID"]
    old_pid = lab.status()["hosts"][4]["pid"]
    lab.kill("worker2")
    host = lab.status()["hosts"][4]
    assert host["running"] is False and host["pid"] is None
    wait_for("worker2 to be reported Down", lambda: by_hostname(lab)["worker2"]["Status"] == "Down")
    lab.start("worker2")
    lab.wait_ready()
    nodes = by_hostname(lab)
    assert nodes["worker2"]["ID"] == node_id and len(nodes) == 5
    assert lab.status()["hosts"][4]["pid"] not in (None, old_pid)


def test_stopped_manager_restarts_from_its_state(lab):
    node_id = by_hostname(lab)["manager3"]["ID"]
    lab.stop("manager3")
    host = lab.status()["hosts"][2]
    assert host["running"] is False and host["runtime_running"] is False
    lab.start("manager3")
    lab.wait_ready()
    wait_for("manager3 to be Reachable again",
             lambda: by_hostname(lab)["manager3"]["ManagerStatus"] in ("Reachable", "Leader"))
    assert by_hostname(lab)["manager3"]["ID"] == node_id
