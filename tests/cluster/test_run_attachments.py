"""`shoal run --network NET` on a worker of a 1-manager + 1-worker lab: one call to shoald
allocates the address and runs the container; the address is released when the container goes
(`-d --rm`: runtimed's AutoRemove; `container rm -f`: shoald sees it go); an attachment leaked by a client that died between allocating
and creating (the old two-call CLI) is released when the node's shoald restarts after a SIGKILL."""
from __future__ import annotations

import json

import pytest

from tests.cluster.waiting import wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]

LEAK = """
import sys
from proto import control_pb2
from shoal.cli.client import Client
c = Client(None)
r = c.stub.AttachNetwork(control_pb2.AttachNetworkRequest(network_id=sys.argv[1], container_id="died"), timeout=60)
print(r.attachment_id)
"""


@pytest.fixture(scope="module")
def lab(lab_factory):
    return lab_factory(managers=1, workers=1)


def network_removable(lab, name: str) -> bool:
    return lab.shoal("manager1", "network", "rm", name, check=False).returncode == 0


def containers(lab, host: str) -> list[dict]:
    out = lab.shoal(host, "ps", "-a", "--format", "json").stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_run_detached_rm_releases_and_a_restart_releases_a_leak(lab, image):
    lab.shoal("manager1", "network", "create", "-d", "overlay", "--attachable", "--subnet", "198.19.21.0/24", "att")
    # one call: the container runs with its cluster address
    out = lab.shoal("worker1", "run", "--rm", "--network", "att", image, "sh", "-c", "ip -4 addr | grep -c 198.19.21.",
                    timeout=120)
    assert out.stdout.split() == ["1"], out
    # runs until stopped: a short sleep could end before the refusal below on a slow machine
    cid = lab.shoal("worker1", "run", "-d", "--rm", "--network", "att", image, "sleep", "1d", timeout=120).stdout.strip()
    refused = lab.shoal("manager1", "network", "rm", "att", check=False)
    assert refused.returncode != 0            # the running container holds an address of it
    lab.shoal("worker1", "stop", "-t", "1", cid)
    wait_for(lambda: not [c for c in containers(lab, "worker1") if c["ID"] in cid], 60,
             what="the -d --rm container removed on exit")
    wait_for(lambda: network_removable(lab, "att"), 60, interval=1, what="its address released")

    # `container rm -f` of a running attached container: shoald sees it go and releases the address
    lab.shoal("manager1", "network", "create", "-d", "overlay", "--attachable", "--subnet", "198.19.21.0/24", "att")
    cid = lab.shoal("worker1", "run", "-d", "--network", "att", image, "sleep", "1d", timeout=120).stdout.strip()
    assert lab.shoal("manager1", "network", "rm", "att", check=False).returncode != 0
    removed = lab.shoal("worker1", "container", "rm", "-f", cid)
    assert "Warning" not in removed.stderr, removed.stderr
    wait_for(lambda: network_removable(lab, "att"), 60, interval=1, what="the removed container's address released")

    lab.shoal("manager1", "network", "create", "-d", "overlay", "--attachable", "--subnet", "198.19.21.0/24", "att")
    leaked = lab.exec("worker1", [lab_python(), "-c", LEAK, "att"]).stdout.strip()
    assert leaked
    assert lab.shoal("manager1", "network", "rm", "att", check=False).returncode != 0
    lab.kill("worker1")                       # SIGKILL shoald; runtimed and containers stay
    lab.start("worker1")
    wait_for(lambda: network_removable(lab, "att"), 120, interval=1,
             what=f"the leaked attachment {leaked} released after shoald's restart")


def lab_python() -> str:
    import sys
    return sys.executable


def test_network_connect_and_disconnect(lab, image):
    """docker network connect/disconnect of a running container on a worker: --ip and --alias are
    given, the new interface works at once, connecting twice is Docker's error, and each network's
    address is released when the container leaves it (disconnect) or goes (rm -f)."""
    for name, subnet in (("conn1", "198.19.22.0/24"), ("conn2", "198.19.23.0/24")):
        lab.shoal("manager1", "network", "create", "-d", "overlay", "--attachable", "--subnet", subnet, name)
    lab.shoal("worker1", "run", "-d", "--name", "hop", "--network", "conn1", image, "sleep", "1d", timeout=120)
    out = lab.shoal("worker1", "network", "connect", "--ip", "198.19.23.9", "--alias", "db", "conn2", "hop")
    assert out.stdout == "" and out.stderr == "", out
    # eth0 conn1, eth1 egress (as Docker's docker_gwbridge), so the new network is eth2; db is its alias there only
    addrs = lab.shoal("worker1", "exec", "hop", "sh", "-c", "ip -o -4 addr show eth2; nslookup db").stdout
    assert "inet 198.19.23.9/24" in addrs and "198.19.22." not in addrs.partition("Name:")[2], addrs
    again = lab.shoal("worker1", "network", "connect", "conn2", "hop", check=False)
    assert again.returncode == 1 and again.stderr.strip() == \
        "Error response from daemon: endpoint with name hop already exists in network conn2", again
    taken = lab.shoal("worker1", "network", "connect", "--ip", "198.19.23.9", "conn1", "hop", check=False)
    assert taken.returncode == 1 and "no configured subnet contains the IP address 198.19.23.9" in taken.stderr

    lab.shoal("worker1", "network", "disconnect", "conn1", "hop")
    assert "eth0" not in lab.shoal("worker1", "exec", "hop", "ip", "-o", "link").stdout
    wait_for(lambda: network_removable(lab, "conn1"), 60, interval=1, what="conn1's address released")
    missing = lab.shoal("worker1", "network", "disconnect", "conn2", "nosuch", check=False)
    assert missing.returncode == 1 and "No such container: nosuch" in missing.stderr, missing
    lab.shoal("worker1", "container", "rm", "-f", "hop")
    wait_for(lambda: network_removable(lab, "conn2"), 60, interval=1, what="the connected address released")


def test_run_publish_port_and_ps(lab, image):
    """`shoal run -d -p HOST:CONTAINER` on a worker (no swarm network): another node reaches the
    container at the worker's address; `port` and `ps` print Docker's texts; -p 80 gets a free port."""
    web = ("mkdir -p /www && echo published > /www/index.html && exec httpd -f -p 80 -h /www")
    lab.shoal("worker1", "run", "-d", "--name", "pub", "-p", "18080:80", "-p", "80", image, "sh", "-c", web,
              timeout=120)
    try:
        lines = lab.shoal("worker1", "port", "pub").stdout.splitlines()
        assert lines[0].startswith("80/tcp -> 0.0.0.0:") and "80/tcp -> 0.0.0.0:18080" in lines, lines
        free = [line.rpartition(":")[2] for line in lines if not line.endswith(":18080")][0]
        assert 32768 <= int(free) <= 60999
        assert lab.shoal("worker1", "port", "pub", "80/tcp").stdout.split() == sorted(
            ["0.0.0.0:18080", f"0.0.0.0:{free}"])
        missing = lab.shoal("worker1", "port", "pub", "81", check=False)
        assert missing.returncode == 1 and missing.stderr.strip() == "Error: No public port '81/tcp' published for pub"
        row = [r for r in containers(lab, "worker1") if r["Names"] == "pub"][0]
        assert row["Ports"] == f"0.0.0.0:18080->80/tcp, 0.0.0.0:{free}->80/tcp" or \
            row["Ports"] == f"0.0.0.0:{free}->80/tcp, 0.0.0.0:18080->80/tcp"
        url = f"http://{lab.address('worker1')}:18080/"
        wait_for(lambda: lab.exec("manager1", ["wget", "-qO-", "-T", "3", url], check=False).stdout.strip()
                 == "published", 30, what=f"{url} from manager1")
    finally:
        lab.shoal("worker1", "container", "rm", "-f", "pub")
