"""shoal-lab's own machinery, without shoald: namespaces, addresses, registry, exec, partition,
several labs side by side, and a `down` that leaves nothing behind (labs built with --no-cluster)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shoal.lab import CommandFailed, Lab, LabError, LabExists, LabNotFound
from shoal.lab import cleanup, netns, procs, registry
from shoal.lab.plan import lab_cgroup_pattern, lab_netns_pattern

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]

HTTP_GET = ("import sys, urllib.request; "
            "r = urllib.request.urlopen(sys.argv[1], timeout=5); print(r.status, r.read().decode())")


@pytest.fixture(scope="module")
def lab(lab_factory) -> Lab:
    return lab_factory(managers=1, workers=2, cluster=False)


@pytest.fixture
def runtime_api():
    """agent_runtime.api"""
    import agent_runtime.api
    return agent_runtime.api


def run_container(lab: Lab, host: str, runtime_api) -> int:
    """Pull the demo image from the lab registry with `host`'s runtimed and start `sleep 300` in the
    host's network namespace; returns the container's PID."""
    from agent_runtime.spec import ContainerSpec

    plan = lab.host(host)
    client = runtime_api.RuntimeClient(str(plan.runtime_socket), timeout=60)
    ref = f"{lab.registry}/{registry.BUSYBOX_REPOSITORY}"
    client.image_pull(ref, insecure_registries=(lab.registry,))
    info = client.start(client.create(ContainerSpec(image=ref, command=["sleep", "300"], network=plan.netns)))
    assert info.state.running
    return info.state.pid


def ping(lab: Lab, host: str, address: str) -> bool:
    return lab.exec(host, ["busybox", "ping", "-c", "1", "-W", "1", address], check=False).returncode == 0


def shoal_lab(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the shoal-lab command as a user would."""
    return subprocess.run([sys.executable, "-m", "shoal.lab", *args], capture_output=True, text=True, timeout=60)


def leftovers(name: str, directory: Path, pids: list[int]) -> dict:
    """Everything of lab `name` the kernel or file system still shows."""
    pattern = lab_netns_pattern(name)
    return {
        "netns": [ns for ns in netns.list_netns() if pattern.match(ns)],
        "mounts": cleanup.mounts_under(directory),
        "cgroups": [str(g) for g in cleanup.find_cgroups(lab_cgroup_pattern(name))],
        "processes": [p for p in pids if procs.process_starttime(p) is not None],
        "directory": directory.exists(),
    }


def test_hosts_have_their_planned_addresses_and_reach_each_other(lab):
    status = lab.status()
    assert [(h["name"], h["role"]) for h in status["hosts"]] == [
        ("manager1", "manager"), ("worker1", "worker"), ("worker2", "worker")]
    for host in status["hosts"]:
        shown = lab.exec(host["name"], ["ip", "-o", "-4", "addr", "show", "dev", "eth0"]).stdout
        assert f" {host['address']}/" in shown
    assert ping(lab, "manager1", lab.address("worker2"))
    assert ping(lab, "worker2", lab.address("worker1"))


def test_host_namespaces_have_sysctls_set_explicitly(lab):
    forward = lab.exec("worker1", ["cat", "/proc/sys/net/ipv4/ip_forward"]).stdout.strip()
    assert forward == "1"


def test_registry_answers_from_every_host(lab):
    for host in lab.hosts:
        out = lab.exec(host, [sys.executable, "-c", HTTP_GET, f"http://{lab.registry}/v2/"]).stdout
        assert out.startswith("200 ")
    assert lab.status()["registry_running"] is True


def test_busybox_demo_image_is_in_the_lab_registry(lab):
    out = lab.exec("worker1", [sys.executable, "-c", HTTP_GET,
                               f"http://{lab.registry}/v2/shoal/busybox/tags/list"]).stdout
    assert out.startswith("200 ") and json.loads(out[4:]) == {"name": "shoal/busybox", "tags": ["latest"]}


def test_exec_sets_shoal_host_and_passes_exit_codes(lab):
    env = lab.exec("worker1", ["sh", "-c", "echo $SHOAL_HOST $SHOAL_RUNTIME_HOST"]).stdout.split()
    host = lab.host("worker1")
    assert env == [f"unix://{host.socket}", f"unix://{host.runtime_socket}"]
    with pytest.raises(CommandFailed) as failed:
        lab.exec("worker1", ["sh", "-c", "echo oops >&2; exit 3"])
    assert failed.value.returncode == 3 and "oops" in str(failed.value)
    assert shoal_lab("exec", "--name", lab.name, "worker1", "--", "sh", "-c", "exit 7").returncode == 7


def test_cli_status_json(lab):
    proc = shoal_lab("status", "--name", lab.name, "--json")
    assert proc.returncode == 0, proc.stderr
    status = json.loads(proc.stdout)
    assert status["registry"] == lab.registry
    assert {h["name"]: h["address"] for h in status["hosts"]} == {h: lab.address(h) for h in lab.hosts}
    assert all(h["pid"] is None and h["running"] is False for h in status["hosts"])


def test_unknown_host_and_unknown_lab_are_errors(lab):
    with pytest.raises(LabError, match="no host 'worker9'"):
        lab.exec("worker9", ["true"])
    with pytest.raises(LabNotFound):
        Lab("no-such-lab-x").status()
    proc = shoal_lab("kill", "--name", lab.name, "worker9")
    assert proc.returncode == 1 and "no host 'worker9'" in proc.stderr


def test_up_twice_is_refused(lab):
    with pytest.raises(LabExists):
        Lab(lab.name).up(1, 1, cluster=False)
    assert ping(lab, "manager1", lab.address("worker1"))


def test_partition_cuts_one_host_and_heal_restores_it(lab):
    lab.partition("worker2")
    try:
        assert lab.status()["hosts"][2]["partitioned"] is True
        assert not ping(lab, "manager1", lab.address("worker2"))
        assert not ping(lab, "worker2", lab.registry.split(":")[0])
        assert ping(lab, "manager1", lab.address("worker1"))
    finally:
        lab.heal("worker2")
    assert lab.status()["hosts"][2]["partitioned"] is False
    assert ping(lab, "manager1", lab.address("worker2"))


def test_two_labs_side_by_side_are_separate(lab, lab_factory):
    other = lab_factory(managers=1, workers=1, cluster=False)
    first, second = lab.status(), other.status()
    assert first["network"] != second["network"]
    assert first["registry"] != second["registry"]
    assert ping(other, "manager1", other.address("worker1"))
    # the other lab's hosts are not on this lab's wire
    assert not ping(lab, "manager1", other.address("worker1"))
    other.down()
    assert ping(lab, "manager1", lab.address("worker1"))
    assert other.name not in Lab.names()


def test_stop_and_start_drive_the_hosts_runtimed(lab, runtime_api):
    old_pid = lab.status()["hosts"][1]["runtime_pid"]
    assert procs.process_starttime(old_pid) is not None
    lab.stop("worker1")
    host = lab.status()["hosts"][1]
    assert host["runtime_running"] is False and host["runtime_pid"] is None
    assert procs.process_starttime(old_pid) is None
    lab.start("worker1")
    host = lab.status()["hosts"][1]
    assert host["runtime_running"] is True and host["runtime_pid"] != old_pid
    client = runtime_api.RuntimeClient(str(lab.host("worker1").runtime_socket), timeout=10)
    assert client.version()


def test_down_removes_processes_mounts_cgroups_namespaces_and_files():
    lab = Lab("t-lab-down-%d" % os.getpid()).up(1, 1, cluster=False)
    directory = lab.plan.directory
    status = lab.status()
    daemon_pids = [status["registry_pid"]] + [h["runtime_pid"] for h in status["hosts"] if h["runtime_pid"]]
    container_pids = []
    import agent_runtime.api
    container_pids.append(run_container(lab, "worker1", agent_runtime.api))
    # Leave behind what a runtimed would: a process in a host namespace, a mount, a cgroup with a task.
    stray = subprocess.Popen(lab.exec_argv("worker1", ["sleep", "300"]), env=lab.host_env("worker1"))
    mountpoint = lab.host("worker1").runtime_dir / "containers" / "c1" / "rootfs"
    mountpoint.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(mountpoint)], check=True)
    groups = [root / lab.host("worker1").cgroup_parent / "c1" for root in cleanup.cgroup_roots()
              if root.name in ("pids", "memory", "unified") or (root / "cgroup.controllers").exists()]
    sleeper = subprocess.Popen(["sleep", "300"])
    for group in groups:
        group.mkdir(parents=True)
        (group / "cgroup.procs").write_text(str(sleeper.pid))
    try:
        pids = daemon_pids + container_pids + [stray.pid, sleeper.pid]
        before = leftovers(lab.name, directory, pids)
        assert len(before["netns"]) == 3 and before["mounts"] == [str(mountpoint)]
        assert len(before["cgroups"]) >= len(groups) >= 1 and len(before["processes"]) == len(pids)
        lab.down()
        stray.wait(timeout=10)
        sleeper.wait(timeout=10)
        assert leftovers(lab.name, directory, pids) == {
            "netns": [], "mounts": [], "cgroups": [], "processes": [], "directory": False}
        lab.down()  # idempotent
    finally:
        for proc in (stray, sleeper):
            if proc.poll() is None:
                proc.kill()
        try:
            lab.down()
        except LabError:
            pass


def test_failed_up_cleans_up_after_itself(monkeypatch):
    lab = Lab("t-lab-fail-%d" % os.getpid())

    def broken_start(plan):
        raise LabError("registry refused to start (test)")

    monkeypatch.setattr(registry, "start", broken_start)
    with pytest.raises(LabError, match="refused to start"):
        lab.up(1, 1, cluster=False)
    assert leftovers(lab.name, lab.root / lab.name, []) == {
        "netns": [], "mounts": [], "cgroups": [], "processes": [], "directory": False}
