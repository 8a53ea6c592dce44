"""`docker swarm init|join|leave` through shoald's Docker API on fresh nodes (shoald running, no
swarm), checked through `shoal`."""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from tests.cluster.waiting import wait_for

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def lab(lab_factory):
    return lab_factory(managers=1, workers=1, form=False)


@pytest.fixture(scope="module")
def docker(lab, tmp_path_factory):
    if shutil.which("docker") is None:
        pytest.skip("the docker CLI is not installed (make install gets it)")
    hosts = {h["name"]: h for h in lab.status()["hosts"]}
    config = str(tmp_path_factory.mktemp("docker-config"))

    def run(host: str, *args: str, check: bool = True):
        env = {"DOCKER_HOST": f"unix://{hosts[host]['docker_socket']}", "DOCKER_CONFIG": config,
               "PATH": "/usr/local/bin:/usr/bin:/bin"}
        result = subprocess.run(["docker", *args], env=env, capture_output=True, text=True, timeout=120)
        if check and result.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
        return result
    run.hosts = hosts
    return run


def nodes(lab) -> dict[str, dict]:
    out = lab.shoal("manager1", "node", "ls", "--format", "json").stdout
    return {n["Hostname"]: n for n in map(json.loads, out.splitlines())}


def test_init_join_leave(lab, docker):
    address = docker.hosts["manager1"]["address"]
    left = docker("worker1", "swarm", "leave", check=False)
    assert left.returncode == 1 and "This node is not part of a swarm" in left.stderr
    init = docker("manager1", "swarm", "init", "--advertise-addr", address, "--default-addr-pool", "198.18.0.0/15",
                  "--task-history-limit", "2")
    node_id = lab.shoal("manager1", "node", "inspect", "self", "--format", "{{.ID}}").stdout.strip()
    assert f"Swarm initialized: current node ({node_id}) is now a manager." in init.stdout
    token = lab.shoal("manager1", "swarm", "join-token", "-q", "worker").stdout.strip()
    assert f"docker swarm join --token {token} {address}:2377" in init.stdout
    again = docker("manager1", "swarm", "init", "--advertise-addr", address, check=False)
    assert again.returncode == 1 and "This node is already part of a swarm." in again.stderr
    spec = json.loads(docker("manager1", "info", "--format", "{{json .Swarm.Cluster.Spec}}").stdout)
    assert spec["Orchestration"]["TaskHistoryRetentionLimit"] == 2

    # No --advertise-addr: the worker advertises the address it reaches the manager from.
    joined = docker("worker1", "swarm", "join", "--token", token, f"{address}:2377")
    assert joined.stdout.strip() == "This node joined a swarm as a worker."
    wait_for(lambda: nodes(lab).get("worker1", {}).get("Status") == "Ready", 60, what="worker1 Ready")
    assert json.loads(docker("worker1", "info", "--format", "{{json .Swarm}}").stdout)["NodeAddr"] == \
        docker.hosts["worker1"]["address"]
    worker_ls = docker("worker1", "node", "ls", check=False)
    assert worker_ls.returncode == 1 and "Worker nodes can't be used to view or modify cluster state" in worker_ls.stderr

    assert docker("worker1", "swarm", "leave").stdout.strip() == "Node left the swarm."
    assert json.loads(docker("worker1", "info", "--format", "{{json .Swarm}}").stdout)["LocalNodeState"] == "inactive"
    refused = docker("manager1", "swarm", "leave", check=False)
    assert refused.returncode == 1 and "--force" in refused.stderr
    assert docker("manager1", "swarm", "leave", "--force").stdout.strip() == "Node left the swarm."
    assert json.loads(docker("manager1", "info", "--format", "{{json .Swarm}}").stdout)["LocalNodeState"] == "inactive"
