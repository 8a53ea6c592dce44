"""Issue 11 item 7 as a user sees it, on a 1-manager + 1-worker lab: a service's container runs
under Docker's default seccomp profile (no user namespaces) and is fenced off the cluster: the
manager's 2377/2378/2379/9323 and the lab registry refuse it, while the routing mesh (published
ports on every node) and `--security-opt seccomp=unconfined` work.
"""

from __future__ import annotations

import pytest

from tests.support.labs import in_container
from tests.cluster.waiting import wait_for

pytestmark = pytest.mark.cluster

HTTPD = "mkdir -p /www && echo web > /www/index.html && exec httpd -f -p 80 -h /www"
DAEMON_PORTS = (2377, 2378, 2379, 9323)


@pytest.fixture(scope="module")
def lab(lab_factory):
    return lab_factory(managers=1, workers=1)


@pytest.fixture(scope="module")
def web(lab):
    image = f"{lab.registry}/shoal/busybox:latest"
    lab.shoal("manager1", "network", "create", "-d", "overlay", "front")
    lab.shoal("manager1", "service", "create", "--name", "web", "--network", "front", "-p", "8080:80",
              "--constraint", "node.role==worker", "--stop-signal", "KILL", image, "sh", "-c", HTTPD, timeout=120)
    return image


def probe(target: str) -> str:
    """Shell: 'open' if a TCP connection to ``target`` (host:port) succeeds within 3 s, else 'closed'."""
    host, port = target.rsplit(":", 1)
    return f"if nc -w 3 {host} {port} </dev/null >/dev/null 2>&1; then echo open; else echo closed; fi"


def test_task_container_is_confined_and_fenced(lab, web):
    manager = lab.address("manager1")
    targets = [f"{manager}:{port}" for port in DAEMON_PORTS] + [lab.registry]
    # positive signal: each of them answers from the worker host itself
    assert [lab.exec("worker1", ["sh", "-c", probe(t)]).stdout.strip() for t in targets] == ["open"] * len(targets)
    script = ("grep '^Seccomp:' /proc/self/status; unshare -U -r true 2>/dev/null && echo USERNS; "
              + "; ".join(probe(t) for t in targets))
    out = in_container(lab, "web", script).split("\n")
    assert out[0] == "Seccomp:\t2" and "USERNS" not in out, out
    assert [line for line in out[1:] if line] == ["closed"] * len(targets), list(zip(targets, out[1:]))
    for host in ("manager1", "worker1"):  # the routing mesh still answers, from the container too
        url = f"http://{lab.address(host)}:8080/"
        assert in_container(lab, "web", f"timeout 5 wget -qO- {url} || echo FAIL").strip() == "web", url


def test_security_opt_unconfined_on_service_update(lab, web):
    lab.shoal("manager1", "service", "update", "--security-opt", "seccomp=unconfined", "web", timeout=120)
    inspect = lab.shoal("manager1", "service", "inspect", "web").stdout
    assert '"Mode": "unconfined"' in inspect
    wait_for(lambda: "Seccomp:\t0" in in_container(lab, "web", "grep '^Seccomp:' /proc/self/status"), 60,
             what="the updated task's container without a filter")
