"""`shoal image …` through the node's runtimed on lab hosts: the daemon's --insecure-registry
applies (no flag on the command), the image lands in that host's store only, and an image a
running container uses cannot be removed."""
from __future__ import annotations

import json

import pytest

from shoal.lab import Lab, registry

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def lab(lab_factory) -> Lab:
    return lab_factory(managers=1, workers=1, cluster=False)


def test_pull_without_flags_is_this_hosts_and_in_use_is_protected(lab):
    ref = f"{lab.registry}/{registry.BUSYBOX_REPOSITORY}"
    out = lab.shoal("manager1", "image", "pull", ref).stdout.splitlines()
    assert out[-1].endswith(ref.split("/", 1)[1]) and any("Status: " in line for line in out)
    assert lab.shoal("manager1", "run", "--rm", ref, "true").returncode == 0
    [row] = [json.loads(line) for line in lab.shoal("manager1", "images", "--format", "json").stdout.splitlines()]
    assert row["Repository"] == ref.rsplit(":", 1)[0]
    # another host has its own runtimed and store: nothing there
    assert lab.shoal("worker1", "images", "-q").stdout == ""
    missing = lab.shoal("worker1", "image", "inspect", ref, check=False)
    assert missing.returncode == 1 and "No such image" in missing.stderr
    # in use by a running container: refused, and the container keeps running
    lab.shoal("manager1", "run", "-d", "--name", "holds-image", ref, "sleep", "300")
    try:
        refused = lab.shoal("manager1", "rmi", ref, check=False)
        assert refused.returncode == 1 and "holds-image" in refused.stderr and "running" in refused.stderr
        prune = lab.shoal("manager1", "image", "prune", "-a", "-f").stdout
        assert "Deleted" not in prune
        assert lab.shoal("manager1", "container", "exec", "holds-image", "--", "true").returncode == 0
    finally:
        lab.shoal("manager1", "container", "rm", "-f", "holds-image")
    assert lab.shoal("manager1", "rmi", ref).stdout.splitlines()[0] == f"Untagged: {ref}"
