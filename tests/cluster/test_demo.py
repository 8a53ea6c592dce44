"""`make demo` from a clean state, as a new user runs it (issue 6): it must bring up a 3+2 lab,
deploy examples/web.yml, show the stack's services, get answers from different replicas through
the published port of several nodes, and end with the commands to scale and to tear down.

The lab gets a name of its own (LAB=...), so a user's own `demo` lab is never touched.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from shoal.lab import Lab
from tests.support.labs import lab_name, require_lab_host

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo_output():
    require_lab_host()
    name = lab_name(__name__, 0)
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LANG": "C.UTF-8"}
    try:
        proc = subprocess.run(["make", "-C", str(ROOT), "demo", f"LAB={name}"], env=env,
                              capture_output=True, text=True, timeout=600)
        yield name, proc
    finally:
        Lab(name).down()
        assert name not in Lab.names()


def test_make_demo_succeeds(demo_output):
    _, proc = demo_output
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_make_demo_shows_the_stack_services(demo_output):
    _, proc = demo_output
    rows = [line for line in proc.stdout.splitlines() if "web_web" in line]
    assert rows, proc.stdout[-3000:]
    assert any("3/3" in row and "*:8080->80/tcp" in row for row in rows), rows


def test_make_demo_is_answered_by_different_replicas_on_every_node(demo_output):
    _, proc = demo_output
    replies = re.findall(r"^\s+(manager\d|worker\d)\s+\S+:8080\s+hello from (\S+)$", proc.stdout, re.M)
    assert {node for node, _ in replies} == {"manager1", "manager2", "manager3", "worker1", "worker2"}, \
        proc.stdout[-3000:]
    assert len({replica for _, replica in replies}) >= 2, replies
    assert "(no answer)" not in proc.stdout


def test_make_demo_ends_with_what_to_try_next(demo_output):
    name, proc = demo_output
    tail = proc.stdout.strip().splitlines()[-6:]
    assert any(f"shoal-lab exec --name {name} manager1 -- shoal service scale web_web=" in line
               for line in tail), tail
    assert any(f"shoal-lab down --name {name}" in line for line in tail), tail
