"""Issue 12 item 4 as an operator sees it, on a 3-manager + 2-worker lab: two managers die, the
survivor says there is no leader, ``swarm init --force-new-cluster`` on it brings the swarm back
with every object and running task, two workers are promoted back to three managers, and the
rebuilt swarm survives losing its leader.

One scenario, one test, in order: each step needs the previous one.
"""

from __future__ import annotations

import json

import pytest

from tests.support.labs import shoal_stdin
from tests.cluster.waiting import wait_for

pytestmark = pytest.mark.cluster

PLAINTEXT = "quorum-lost-but-not-this"


def by_host(nodes: list[dict]) -> dict[str, dict]:
    return {n["Hostname"]: n for n in nodes}


def metrics(lab, host: str) -> str:
    return lab.exec(host, ["python3", "-c",
                           "import urllib.request,sys;"
                           f"sys.stdout.write(urllib.request.urlopen('http://{lab.address(host)}:9323/metrics',"
                           "timeout=5).read().decode())"]).stdout


def running(lab, on: str, service: str) -> int:
    out = lab.shoal(on, "service", "ps", service, "--format", "json", check=False).stdout
    tasks = [json.loads(line) for line in out.splitlines() if line.strip()]
    return sum(1 for t in tasks if t.get("DesiredState") == "Running" and t.get("CurrentState", "").startswith("Running"))


def names(lab, on: str, *command: str) -> set[str]:
    out = lab.shoal(on, *command, "--format", "json").stdout
    return {json.loads(line)["Name"] for line in out.splitlines() if line.strip()}


def read_in_a_container(lab, service: str, path: str) -> str:
    """The content of ``path`` in a running container of ``service`` on worker1 or worker2."""
    def read():
        for host in ("worker1", "worker2"):
            for line in lab.shoal(host, "container", "ls", "--format", "json").stdout.splitlines():
                if f"{service}." in line:
                    container = json.loads(line)["ID"]
                    return lab.shoal(host, "container", "exec", container, "--", "cat", path).stdout
        return None
    return wait_for(read, 30, what=f"a running container of {service}")


def test_two_managers_lost_force_new_cluster_promote_and_fail_over(lab, image):
    lab.wait_ready()
    lab.shoal("manager1", "network", "create", "--driver", "overlay", "backend")
    shoal_stdin(lab, "secret", "create", "db_pass", "-", data=PLAINTEXT)
    shoal_stdin(lab, "config", "create", "app.conf", "-", data="setting=1")
    lab.shoal("manager1", "service", "create", "--name", "app", "--replicas", "2", "--network", "backend",
              "--constraint", "node.role==worker", "--secret", "db_pass", "--config", "app.conf",
              "--stop-signal", "KILL", image, "sleep", "3600", timeout=120)
    wait_for(lambda: running(lab, "manager1", "app") == 2, 60, what="app's two tasks running")

    refused = lab.shoal("manager3", "swarm", "init", "--force-new-cluster", check=False)
    assert refused.returncode == 1 and "sees a leader" in refused.stderr and "nothing was changed" in refused.stderr
    assert len(json.loads(lab.shoal("manager3", "info", "--format", "json").stdout)["managers"]) == 3

    # Two of three managers die; manager3 survives.
    leader = lab.leader("manager1")
    dead = [m for m in ("manager1", "manager2", "manager3") if m != "manager3"]
    for host in dead:
        lab.kill(host)
    def no_leader():
        seen = json.loads(lab.shoal("manager3", "info", "--format", "json").stdout)
        return seen if not seen.get("leaderAddr") and seen.get("error") else None

    info = wait_for(no_leader, 20, what="manager3 to see no leader")
    assert "The swarm does not have a leader" in info["error"]
    assert "--force-new-cluster" in info["error"]
    text = lab.shoal("manager3", "info").stdout
    assert "Leader: (none)" in text and "Error: The swarm does not have a leader" in text
    nodes = by_host(lab.nodes("manager3"))
    assert all(n["Status"] == "Unknown" for n in nodes.values()), nodes
    assert not any(n["ManagerStatus"] == "Leader" for n in nodes.values()), (leader, nodes)
    assert nodes["manager1"]["ManagerStatus"] == nodes["manager2"]["ManagerStatus"] == "Unreachable"
    assert nodes["manager3"]["ManagerStatus"] == "Reachable"
    scraped = metrics(lab, "manager3")
    assert 'shoal_nodes{state="unknown"} 5.0' in scraped and 'shoal_nodes{state="ready"} 0.0' in scraped
    assert "shoal_raft_has_leader 0.0" in scraped and "shoal_raft_quorum 0.0" in scraped

    # The survivor rebuilds the swarm from its own state.
    out = lab.shoal("manager3", "swarm", "init", "--force-new-cluster",
                    "--advertise-addr", lab.address("manager3"), timeout=90).stdout
    assert "is now a manager" in out
    nodes = wait_for(lambda: (lambda ns: ns if ns["manager3"]["ManagerStatus"] == "Leader"
                              and ns["worker1"]["Status"] == ns["worker2"]["Status"] == "Ready" else None)(
        by_host(lab.nodes("manager3"))), 60, what="manager3 leading a rebuilt swarm with both workers Ready")
    assert nodes["manager1"]["ManagerStatus"] == nodes["manager2"]["ManagerStatus"] == ""   # demoted
    assert names(lab, "manager3", "service", "ls") == {"app"}
    assert names(lab, "manager3", "secret", "ls") == {"db_pass"}
    assert names(lab, "manager3", "config", "ls") == {"app.conf"}
    assert "backend" in names(lab, "manager3", "network", "ls")
    # Tasks run; a worker that found the new leader only after its grace had its task replaced.
    wait_for(lambda: running(lab, "manager3", "app") == 2, 60, what="app's two tasks running after the rebuild")
    assert read_in_a_container(lab, "app", "/run/secrets/db_pass") == PLAINTEXT
    info = json.loads(lab.shoal("manager3", "info", "--format", "json").stdout)
    assert len(info["managers"]) == 1 and not info.get("error")

    # Back to three managers, then lose the leader: the swarm fails over.
    lab.shoal("manager3", "node", "promote", "worker1", "worker2")
    wait_for(lambda: all(by_host(lab.nodes("manager3"))[w]["ManagerStatus"] == "Reachable"
                         for w in ("worker1", "worker2")), 60, what="two promoted managers reachable")

    # A lost manager that comes back with its old state is told it is a worker now and rejoins as one.
    lab.start("manager1")
    wait_for(lambda: (lambda n: n["Status"] == "Ready" and n["ManagerStatus"] == "")(
        by_host(lab.nodes("manager3"))["manager1"]), 60, what="the old manager1 back as a Ready worker")
    wait_for(lambda: not (lab.host("manager1").state_dir / "raft").exists(), 30,
             what="the old manager1 to drop its raft state")

    lab.kill("manager3")
    new = wait_for(lambda: (lambda l: l if l in ("worker1", "worker2") else None)(lab.leader("worker1")), 30,
                   what="a new leader among the promoted managers")
    other = "worker2" if new == "worker1" else "worker1"
    shoal_stdin(lab, "config", "create", "after.failover", "-", data="ok", on=other)
    assert "after.failover" in names(lab, new, "config", "ls")
    assert names(lab, other, "service", "ls") == {"app"}

