"""Issue 14 as a Swarm user meets it on a 1-manager + 1-worker lab: `--format` Go templates on
the commands scripts use, and the errors a template with a mistake gives.

One lab for the module; each test removes what it created.
"""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def lab(lab_factory):
    return lab_factory(managers=1, workers=1)


@pytest.fixture(scope="module")
def image(lab) -> str:
    return f"{lab.registry}/shoal/busybox:latest"


def out(lab, *args: str, host: str = "manager1") -> str:
    return lab.shoal(host, *args).stdout


def test_format_templates_on_ls_ps_inspect_info_version(lab, image):
    lab.shoal("manager1", "service", "create", "--name", "fmt", "--replicas", "2", "--stop-signal", "KILL",
              "--label", "tier=web", image, "sleep", "3600", timeout=120)
    try:
        assert sorted(out(lab, "node", "ls", "--format", "{{.Hostname}}").split()) == ["manager1", "worker1"]
        assert out(lab, "service", "ls", "--format", "{{.Name}} {{.Mode}} {{.Replicas}}") == "fmt replicated 2/2\n"
        row = json.loads(out(lab, "service", "ls", "--format", "{{json .}}"))
        assert list(row) == sorted(row) and row["Name"] == "fmt"
        table = out(lab, "service", "ls", "--format", "table {{.Name}}\t{{.Replicas}}").splitlines()
        assert table == ["NAME      REPLICAS", "fmt       2/2"]
        assert out(lab, "service", "inspect", "--format", "{{.Spec.Name}} {{index .Spec.Labels \"tier\"}}",
                   "fmt") == "fmt web\n"
        assert out(lab, "service", "ps", "--format", "{{.Name}}", "fmt").split() == ["fmt.1", "fmt.2"]
        assert out(lab, "node", "inspect", "-f", "{{.ManagerStatus.Leader}} {{.Spec.Role}}", "self") == "true manager\n"
        assert out(lab, "info", "--format", "{{.Swarm.LocalNodeState}}") == "active\n"
        assert out(lab, "info", "--format", "{{.Swarm.LocalNodeState}}", host="worker1") == "active\n"
        assert out(lab, "version", "--format", "{{.Server.Version}}").strip()
        assert out(lab, "network", "ls", "--format", "{{.Name}}", "--filter", "name=ingress") == "ingress\n"
        for args in (["service", "ls", "--format", "{{.Bogus}}"], ["node", "ls", "--format", "{{bogus}}"],
                     ["service", "inspect", "--format", "{{.Spec.Nmae}}", "fmt"], ["info", "--format", "{{.NCPU}}"]):
            result = lab.shoal("manager1", *args, check=False)
            assert result.returncode == 1 and result.stdout == "", args
            assert result.stderr.startswith("template parsing error: template: "), result.stderr
    finally:
        lab.shoal("manager1", "service", "rm", "fmt", check=False)
