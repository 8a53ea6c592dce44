"""Docker's commands and results on a 1-manager lab, checked as a user sees them: DNS answers
from inside a container for a service's network aliases.
"""

from __future__ import annotations

import pytest

from tests.cluster.waiting import wait_for

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def lab(lab_factory):
    return lab_factory(managers=1, workers=0)


def resolve(lab, container: str, name: str) -> list[str] | None:
    """The addresses ``nslookup NAME`` prints inside ``container`` (None when it fails)."""
    result = lab.shoal("manager1", "container", "exec", container, "nslookup", name, "127.0.0.11", check=False)
    if result.returncode != 0:
        return None
    answers = result.stdout.split("Name:", 1)[-1] if "Name:" in result.stdout else ""
    return sorted({line.split()[-1] for line in answers.splitlines() if line.startswith("Address")})


def test_network_aliases_of_dnsrr_and_vip_services_resolve_with_tasks_names(lab, image):
    lab.shoal("manager1", "network", "create", "--attachable", "aliasnet")
    lab.shoal("manager1", "service", "create", "-d", "--name", "rr", "--endpoint-mode", "dnsrr", "--replicas", "2",
              "--network", "name=aliasnet,alias=db", image, "sleep", "3600")
    lab.shoal("manager1", "service", "create", "-d", "--name", "vv", "--network", "name=aliasnet,alias=vdb",
              image, "sleep", "3600")
    lab.shoal("manager1", "run", "-d", "--name", "probe", "--network", "aliasnet", image, "sleep", "3600")
    try:
        tasks = wait_for(lambda: (lambda ips: ips if ips and len(ips) == 2 else None)(resolve(lab, "probe", "tasks.rr")),
                         90, what="both tasks of rr in DNS")
        assert wait_for(lambda: resolve(lab, "probe", "tasks.db"), 30, what="tasks.db") == tasks   # was SERVFAIL
        assert resolve(lab, "probe", "db") == tasks                       # dnsrr: the alias gives the tasks
        vip = lab.shoal("manager1", "service", "inspect", "-f",
                        "{{(index .Endpoint.VirtualIPs 0).Addr}}", "vv").stdout.strip().split("/")[0]
        task = wait_for(lambda: resolve(lab, "probe", "tasks.vv"), 60, what="tasks.vv")
        assert resolve(lab, "probe", "vdb") == [vip]                      # vip mode: the alias gives the VIP
        assert resolve(lab, "probe", "tasks.vdb") == task
    finally:
        lab.shoal("manager1", "container", "rm", "-f", "probe", check=False)
        lab.shoal("manager1", "service", "rm", "rr", "vv", check=False)
