"""Issue 2 as a user sees it: a 3-manager + 2-worker lab through the `shoal` CLI.

The tests share one lab and run in file order: failover, partition and a full restart
each leave the lab healthy for the next (every test waits for all nodes Ready first).
"""

from __future__ import annotations

import json

import pytest

from tests.cluster.waiting import wait_for

pytestmark = pytest.mark.cluster


def by_host(nodes: list[dict]) -> dict[str, dict]:
    return {n["Hostname"]: n for n in nodes}


def labels(lab, on: str, node: str) -> dict:
    out = lab.shoal(on, "node", "inspect", node).stdout
    return json.loads(out)[0]["Spec"]["Labels"]


def test_five_nodes_ready_with_their_roles(lab):
    nodes = by_host(lab.nodes("manager2"))
    assert sorted(nodes) == ["manager1", "manager2", "manager3", "worker1", "worker2"]
    assert all(n["Status"] == "Ready" for n in nodes.values()), nodes
    managers = {h for h, n in nodes.items() if n["ManagerStatus"]}
    assert managers == {"manager1", "manager2", "manager3"}
    assert sum(n["ManagerStatus"] == "Leader" for n in nodes.values()) == 1
    assert all(n["ManagerStatus"] in ("Leader", "Reachable") for h, n in nodes.items() if h in managers)
    inspect = json.loads(lab.shoal("manager3", "node", "inspect", "worker1", "self").stdout)
    assert inspect[0]["Description"]["Hostname"] == "worker1"
    assert inspect[0]["Spec"]["Role"] == "worker"
    assert inspect[0]["Description"]["Resources"]["NanoCPUs"] > 0
    assert inspect[0]["Description"]["Resources"]["MemoryBytes"] > 0
    assert inspect[1]["Description"]["Hostname"] == "manager3"
    assert inspect[1]["ManagerStatus"]["Reachability"] == "reachable"


def test_worker_cannot_read_or_change_cluster_state(lab):
    result = lab.shoal("worker1", "node", "ls", check=False)
    assert result.returncode == 1
    assert "not a swarm manager" in result.stderr


def test_node_update_labels_and_availability_from_any_manager(lab):
    lab.shoal("manager2", "node", "update", "--label-add", "zone=a", "--availability", "pause", "worker1")
    assert labels(lab, "manager3", "worker1") == {"zone": "a"}
    assert by_host(lab.nodes("manager1"))["worker1"]["Availability"] == "Pause"
    lab.shoal("manager3", "node", "update", "--label-rm", "zone", "--availability", "active", "worker1")
    assert labels(lab, "manager1", "worker1") == {}
    bad = lab.shoal("manager1", "node", "update", "--label-rm", "nope", "worker1", check=False)
    assert bad.returncode != 0 and "nope" in bad.stderr


def test_join_errors_name_the_problem_and_change_nothing(lab):
    worker_token = lab.shoal("manager1", "swarm", "join-token", "-q", "worker").stdout.strip()
    manager1 = lab.address("manager1")
    # Joining a node that is already in a swarm.
    again = lab.shoal("worker2", "swarm", "join", "--token", worker_token, f"{manager1}:2377", check=False)
    assert again.returncode == 1 and "already part of a swarm" in again.stderr
    # Leave, then try to come back with bad input.
    old_id = by_host(lab.nodes("manager1"))["worker2"]["ID"]
    lab.shoal("worker2", "swarm", "leave")
    before = lab.nodes("manager1")
    wrong = worker_token[:-5] + ("00000" if not worker_token.endswith("00000") else "11111")
    result = lab.shoal("worker2", "swarm", "join", "--token", wrong, f"{manager1}:2377", check=False)
    assert result.returncode == 1 and "token" in result.stderr.lower()
    result = lab.shoal("worker2", "swarm", "join", "--token", "SHTKN-garbage", f"{manager1}:2377", check=False)
    assert result.returncode == 1 and "invalid join token" in result.stderr
    result = lab.shoal("worker2", "swarm", "join", "--token", worker_token, "manager-one:23x7", check=False)
    assert result.returncode == 1 and "invalid remote address" in result.stderr
    # A rotated token no longer admits anyone.
    lab.shoal("manager2", "swarm", "join-token", "--rotate", "worker")
    result = lab.shoal("worker2", "swarm", "join", "--token", worker_token, f"{manager1}:2377", check=False)
    assert result.returncode == 1 and "rotated" in result.stderr
    assert len(lab.nodes("manager1")) == len(before)
    info = json.loads(lab.shoal("worker2", "info", "--format", "json").stdout)
    assert info.get("localNodeState") == "inactive"
    # The new token works; the old node entry stays Down until removed, as in Docker.
    token = lab.shoal("manager1", "swarm", "join-token", "-q", "worker").stdout.strip()
    assert token != worker_token
    lab.shoal("worker2", "swarm", "join", "--token", token, "--advertise-addr", lab.address("worker2"),
              f"{manager1}:2377")
    wait_for(lambda: any(n["Hostname"] == "worker2" and n["Status"] == "Ready" and n["ID"] != old_id
                         for n in lab.nodes("manager1")), 15, what="worker2 Ready again")
    wait_for(lambda: {n["ID"]: n for n in lab.nodes("manager1")}[old_id]["Status"] == "Down", 15,
             what="the node worker2 left behind to be Down")
    lab.shoal("manager1", "node", "rm", old_id)
    assert sorted(n["Hostname"] for n in lab.nodes("manager1")) == \
        ["manager1", "manager2", "manager3", "worker1", "worker2"]


def test_node_rm_refuses_a_ready_node_and_a_manager(lab):
    ready = lab.shoal("manager1", "node", "rm", "worker1", check=False)
    assert ready.returncode == 1 and "is not down" in ready.stderr
    manager = lab.shoal("manager1", "node", "rm", "--force", "manager3", check=False)
    assert manager.returncode == 1 and "demoted" in manager.stderr
    assert len(lab.nodes("manager1")) == 5


def test_leader_killed_another_takes_over_and_the_old_one_rejoins(lab):
    lab.wait_ready()
    old = lab.leader("manager1")
    assert old and old.startswith("manager")
    survivors = [m for m in ("manager1", "manager2", "manager3") if m != old]
    lab.kill(old)
    new = wait_for(lambda: (lambda l: l if l and l != old else None)(lab.leader(survivors[0])), 15,
                   what="a new leader")
    assert new in survivors
    lab.shoal(survivors[1], "node", "update", "--label-add", "after-failover=yes", "worker2")
    assert labels(lab, survivors[0], "worker2") == {"after-failover": "yes"}
    wait_for(lambda: by_host(lab.nodes(survivors[1]))[old]["Status"] == "Down", 20, what=f"{old} Down")
    assert by_host(lab.nodes(survivors[0]))[old]["ManagerStatus"] == "Unreachable"
    lab.start(old)
    wait_for(lambda: by_host(lab.nodes(old))[old]["Status"] == "Ready", 30, what=f"{old} Ready again")
    wait_for(lambda: by_host(lab.nodes(survivors[0]))[old]["ManagerStatus"] == "Reachable", 15,
             what=f"{old} reachable")
    assert labels(lab, old, "worker2") == {"after-failover": "yes"}


def test_partitioned_manager_cannot_commit_alone_and_catches_up(lab):
    lab.wait_ready()
    leader = lab.leader("manager1")
    follower = next(m for m in ("manager1", "manager2", "manager3") if m != leader)
    other = next(m for m in ("manager1", "manager2", "manager3") if m not in (leader, follower))
    lab.partition(follower)
    try:
        alone = lab.shoal(follower, "node", "update", "--label-add", "split=brain", "worker1", check=False,
                          timeout=60)
        assert alone.returncode != 0, alone.stdout
        lab.shoal(other, "node", "update", "--label-add", "majority=yes", "worker1")
    finally:
        lab.heal(follower)
    wait_for(lambda: labels(lab, follower, "worker1") == {"majority": "yes"}, 20,
             what="the healed manager to catch up")
    assert labels(lab, leader, "worker1") == {"majority": "yes"}


def test_full_restart_keeps_every_committed_object(lab):
    lab.wait_ready()
    lab.shoal("manager1", "node", "update", "--label-add", "durable=1", "manager2")
    hosts = ["manager1", "manager2", "manager3", "worker1", "worker2"]
    ids = {n["Hostname"]: n["ID"] for n in lab.nodes("manager1")}
    for host in hosts:
        lab.stop(host)
    for host in hosts:
        lab.start(host)
    nodes = wait_for(lambda: (lambda ns: ns if len(ns) == 5 and all(n["Status"] == "Ready" for n in ns) else None)(
        lab.nodes("manager3")), 40, what="all five Ready after a full restart")
    assert {n["Hostname"]: n["ID"] for n in nodes} == ids
    assert labels(lab, "manager2", "manager2") == {"durable": "1"}
    assert labels(lab, "manager3", "worker1") == {"majority": "yes"}
    assert lab.leader("manager1") in ("manager1", "manager2", "manager3")


def test_metrics_report_raft_and_store(lab):
    # The module's earlier tests restart and partition managers: start from a settled cluster, and
    # read the node gauge until manager1 has caught up (a scrape is a snapshot of its own view).
    lab.wait_ready()
    lab.shoal("manager1", "node", "update", "--label-add", "scraped=1", "worker1")

    def scrape() -> str:
        return lab.exec("manager1", ["python3", "-c",
                                     "import urllib.request,sys;"
                                     f"sys.stdout.write(urllib.request.urlopen('http://{lab.address('manager1')}:9323/metrics',timeout=5).read().decode())"]).stdout

    text = wait_for(lambda: (lambda t: t if 'shoal_nodes{state="ready"} 5.0' in t else None)(scrape()), 30,
                    what="manager1's metrics to count five Ready nodes")
    assert "shoal_raft_term" in text
    assert "shoal_raft_commit_index" in text
    assert "shoal_raft_leader" in text
    assert 'shoal_store_objects{kind="node"} 5.0' in text
    assert 'shoal_store_proposal_latency_seconds_count{outcome="committed"}' in text


def test_promote_and_demote_change_raft_membership(lab):
    lab.wait_ready()
    lab.shoal("manager1", "node", "promote", "worker1")
    wait_for(lambda: by_host(lab.nodes("manager2"))["worker1"]["ManagerStatus"] == "Reachable", 30,
             what="worker1 to become a reachable manager")
    # The promoted node now answers ControlAPI calls and has a Raft view of its own.
    wait_for(lambda: lab.shoal("worker1", "node", "ls", check=False).returncode == 0, 15,
             what="worker1 to serve the ControlAPI")
    info = json.loads(lab.shoal("worker1", "info", "--format", "json").stdout)
    assert len(info["managers"]) == 4
    lab.shoal("worker1", "node", "update", "--label-add", "promoted=yes", "worker2")
    lab.shoal("manager3", "node", "demote", "worker1")
    wait_for(lambda: by_host(lab.nodes("manager2"))["worker1"]["ManagerStatus"] == "", 30,
             what="worker1 to be a worker again")
    wait_for(lambda: lab.shoal("worker1", "node", "ls", check=False).returncode == 1, 15,
             what="worker1 to stop serving the ControlAPI")
    info = json.loads(lab.shoal("manager1", "info", "--format", "json").stdout)
    assert len(info["managers"]) == 3
    wait_for(lambda: by_host(lab.nodes("manager1"))["worker1"]["Status"] == "Ready", 15, what="worker1 Ready")


def test_demoting_the_leader_hands_leadership_over(lab):
    lab.wait_ready()
    old = lab.leader("manager1")
    other = next(m for m in ("manager1", "manager2", "manager3") if m != old)
    lab.shoal(other, "node", "demote", old)
    wait_for(lambda: by_host(lab.nodes(other))[old]["ManagerStatus"] == "", 30, what=f"{old} demoted")
    new = lab.leader(other)
    assert new and new != old
    lab.shoal(other, "node", "promote", old)
    wait_for(lambda: by_host(lab.nodes(other))[old]["ManagerStatus"] == "Reachable", 30,
             what=f"{old} a manager again")
    wait_for(lambda: all(n["Status"] == "Ready" for n in lab.nodes(other)), 20, what="all Ready")
