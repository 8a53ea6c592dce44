"""One node, many tasks, and a runtime that misbehaves (issues 10 and 11).

One lab for the module: a single manager that also runs the tasks. shoald's runtime call deadline
is lowered to RUNTIME_DEADLINE seconds (SHOAL_RUNTIME_TIMEOUT) so that a stopped runtimed is
noticed quickly; the density test shows a burst of hundreds of tasks stays within it.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from agent_runtime.api import RuntimeClient
from shoal.lab import procs
from tests.cluster.waiting import wait_for

pytestmark = pytest.mark.cluster

RUNTIME_DEADLINE = 5
NODE = "manager1"


@pytest.fixture(scope="module")
def lab(lab_factory):
    old = os.environ.get("SHOAL_RUNTIME_TIMEOUT")
    os.environ["SHOAL_RUNTIME_TIMEOUT"] = str(RUNTIME_DEADLINE)  # the lab's daemons inherit it
    try:
        return lab_factory(managers=1, workers=0)
    finally:
        if old is None:
            del os.environ["SHOAL_RUNTIME_TIMEOUT"]
        else:
            os.environ["SHOAL_RUNTIME_TIMEOUT"] = old


def image(lab) -> str:
    return f"{lab.registry}/shoal/busybox:latest"


def runtime(lab) -> RuntimeClient:
    return RuntimeClient(str(lab.host(NODE).runtime_socket), timeout=60)


def tasks(lab, service: str) -> list[dict]:
    out = lab.shoal(NODE, "service", "ps", "--no-trunc", "--format", "json", service).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def running_tasks(lab, service: str) -> set[str]:
    return {t["ID"] for t in tasks(lab, service) if t["CurrentState"].startswith("Running")
            and t["DesiredState"] == "Running"}


def containers_by_task(lab) -> dict[str, list[str]]:
    """Task ID -> the states of the containers runtimed holds for it."""
    out: dict[str, list[str]] = {}
    for c in runtime(lab).list(all=True):
        task = c.config.labels.get("com.docker.swarm.task.id")
        if task:
            out.setdefault(task, []).append(c.state.status)
    return out


def running_containers(lab) -> dict[str, int]:
    """Task ID -> number of running containers (each really alive: its pid exists)."""
    out: dict[str, int] = {}
    for c in runtime(lab).list(all=False):
        task = c.config.labels.get("com.docker.swarm.task.id")
        if task and c.state.running and Path(f"/proc/{c.state.pid}").exists():
            out[task] = out.get(task, 0) + 1
    return out


def cgroup_children(lab) -> list[Path]:
    parent = lab.host(NODE).cgroup_parent
    found = []
    for base in Path("/sys/fs/cgroup").iterdir():
        for candidate in (base / parent, *base.glob(f"*/{parent}")):
            if candidate.is_dir():
                found += [p for p in candidate.iterdir() if p.is_dir()]
    return found


def container_mounts(lab) -> list[str]:
    root = str(lab.host(NODE).runtime_dir)
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(root)]


def runtimed_record(lab):
    return lab.record().hosts[NODE].runtimed


def node_message(lab) -> str:
    return json.loads(lab.shoal(NODE, "node", "inspect", "self").stdout)[0]["Status"].get("Message", "")


def test_300_replicas_run_then_scale_to_zero_leaving_nothing(lab):
    lab.shoal(NODE, "service", "create", "-d", "--name", "dense", "--replicas", "300", "--stop-signal", "KILL",
              image(lab), "sleep", "1d")
    wait_for(lambda: len(running_tasks(lab, "dense")) == 300, timeout=300, interval=2, what="300 tasks running")
    running = running_containers(lab)
    assert set(running) == running_tasks(lab, "dense") and set(running.values()) == {1}
    wait_for(lambda: len(running_tasks(lab, "dense")) == 300 and len(running_containers(lab)) == 300,
             timeout=30, interval=2, what="the 300 tasks to stay up")

    lab.shoal(NODE, "service", "scale", "-d", "dense=0")
    wait_for(lambda: not containers_by_task(lab), timeout=300, interval=2, what="every container removed")
    wait_for(lambda: not cgroup_children(lab), timeout=30, what="every container cgroup removed")
    assert not container_mounts(lab)
    lab.shoal(NODE, "service", "rm", "dense")


def test_a_stopped_runtimed_fails_the_call_and_the_node_converges_after(lab):
    """SIGSTOP runtimed for longer than the deadline: the task FAILS with an error naming the call,
    the node says its runtime is unreachable; after SIGCONT the service converges with exactly one
    running container."""
    record = runtimed_record(lab)
    assert procs.signal_process(record, signal.SIGSTOP)
    try:
        lab.shoal(NODE, "service", "create", "-d", "--name", "stalled", "--stop-signal", "KILL", image(lab),
                  "sleep", "1d")
        failed = wait_for(lambda: [t for t in tasks(lab, "stalled") if t["CurrentState"].startswith("Failed")],
                          timeout=120, interval=1, what="a task failed by the deadline")
        assert "shoal-runtimed did not answer" in failed[0]["Error"], failed[0]
        assert any(call in failed[0]["Error"] for call in ("GET /images/inspect", "POST /containers/create",
                                                            "POST /containers/")), failed[0]
        wait_for(lambda: "shoal-runtimed is unreachable" in node_message(lab), timeout=60, interval=1,
                 what="node inspect to say the runtime is unreachable")
    finally:
        procs.signal_process(record, signal.SIGCONT)
    wait_for(lambda: len(running_tasks(lab, "stalled")) == 1, timeout=120, interval=1, what="the service to converge")
    wait_for(lambda: node_message(lab) == "", timeout=60, interval=1, what="the node status message to clear")
    wait_for(lambda: sum(running_containers(lab).values()) == 1
             and set(running_containers(lab)) == running_tasks(lab, "stalled"),
             timeout=60, interval=1, what="exactly the running task's container running")
    lab.shoal(NODE, "service", "rm", "stalled")
    wait_for(lambda: not containers_by_task(lab), timeout=60, interval=1, what="every container removed")


def test_runtimed_killed_while_16_tasks_start_leaves_exactly_the_expected_containers(lab):
    """Issue 11 #4: SIGKILL runtimed while 16 tasks start, start it again: one running container per
    running task, none left over (before: tasks failed on 'cannot connect' and were replaced while
    their containers kept running, 38 containers for 17 expected)."""
    lab.shoal(NODE, "service", "create", "-d", "--name", "crashy", "--replicas", "16", "--stop-signal", "KILL",
              image(lab), "sleep", "1d")
    wait_for(lambda: len(containers_by_task(lab)) >= 4, timeout=60, interval=0.05, what="containers being made")
    record = runtimed_record(lab)
    procs.kill([record])
    time.sleep(1.0)  # tasks go on calling a dead runtimed
    lab.start(NODE)
    wait_for(lambda: len(running_tasks(lab, "crashy")) == 16, timeout=120, interval=1, what="16 tasks running")
    wait_for(lambda: set(running_containers(lab)) == running_tasks(lab, "crashy")
             and set(running_containers(lab).values()) == {1},
             timeout=60, interval=1, what="one running container per running task, no other")
    live = running_tasks(lab, "crashy")
    refused = [t for t in tasks(lab, "crashy") if "shoal-runtimed" in t["Error"]]
    assert not refused, f"tasks failed on a runtime that was only restarting: {refused}"
    leftovers = {t: s for t, s in containers_by_task(lab).items() if t not in live}
    assert all(set(states) <= {"exited", "created"} for states in leftovers.values()), leftovers
    lab.shoal(NODE, "service", "rm", "crashy")
    wait_for(lambda: not containers_by_task(lab), timeout=60, interval=1, what="every container removed")
