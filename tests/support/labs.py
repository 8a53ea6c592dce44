"""Naming, host checks and commands for tests that build shoal-lab labs (tests/cluster)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil

import pytest

from shoal.lab import procs
from tests.cluster.waiting import wait_for

REQUIRED_PROGRAMS = ("ip", "nsenter", "docker-registry")


def lab_name(module_name: str, index: int) -> str:
    """A lab name unique to this test module and pytest process: a readable hint plus a hash."""
    hint = re.sub(r"[^a-z0-9]+", "-", module_name.rsplit(".", 1)[-1].removeprefix("test_").lower())[:10]
    digest = hashlib.sha1(f"{module_name}:{os.getpid()}:{index}".encode()).hexdigest()[:6]
    return f"t-{hint.strip('-') or 'lab'}-{digest}"


def require_lab_host() -> None:
    """Skip unless this machine can run labs (root, iproute2, nsenter, docker-registry)."""
    if os.geteuid() != 0:
        pytest.skip("shoal-lab needs root")
    missing = [p for p in REQUIRED_PROGRAMS if shutil.which(p) is None]
    if missing:
        pytest.skip(f"shoal-lab needs {', '.join(missing)}")


def shoal_stdin(lab, *args: str, data: str, check: bool = True, on: str = "manager1"):
    """`shoal ARGS` on host ``on`` with ``data`` on its standard input."""
    return lab.exec(on, [procs.program("shoal"), *args], input=data, check=check)


def in_container(lab, service: str, script: str) -> str:
    """Output of ``sh -c script`` run in the container of ``service``'s task on worker1."""
    def container():
        for line in lab.shoal("worker1", "container", "ls", "--format", "json").stdout.splitlines():
            info = json.loads(line)
            if f"{service}." in json.dumps(info):
                return info["ID"]
        return None
    container_id = wait_for(container, 30, what=f"a container of {service}")
    return lab.shoal("worker1", "container", "exec", container_id, "--", "sh", "-c", script).stdout
