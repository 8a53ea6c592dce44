"""shoal-runtimed against the real kernel: isolation, limits, mounts, logs, restart, cleanup.

Needs root. Containers run in their own pid/mount/uts/ipc/net namespaces (network "none");
everything is made below the session runtimed's temp root and cgroup parent (see conftest).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from agent_runtime.api import (ContainerSpec, Conflict, InvalidArgument, LogConfig, Mount, NotFound, Resources)
from tests.support.runtime import IMAGE, cgroup_dirs, run_to_exit, sh, wait_until

pytestmark = [pytest.mark.privileged, pytest.mark.timeout(120)]


def test_isolation_as_a_user_sees_it(client, tmp_path):
    marker = tmp_path / "host-only-marker"
    marker.write_text("x")
    info, out, _ = run_to_exit(client, hostname="boxy", command=sh(
        f"echo pid=$$; hostname; ps -o pid | wc -l; ls /proc | grep -c '^[0-9]'; "
        f"test -e {marker} && echo SEE-HOST-FILE; ls /sys/class/net; cat /proc/kcore | wc -c; "
        f"touch /sys/x 2>&1; echo w > /proc/sysrq-trigger 2>&1; ls -a /dev"))
    assert info.state.exit_code == 0, out
    lines = out.splitlines()
    assert lines[0] == "pid=1"
    assert lines[1] == "boxy"
    assert int(lines[2]) <= 4          # header + sh + ps (+ wc): no host processes
    assert int(lines[3]) <= 4
    assert "SEE-HOST-FILE" not in out
    assert lines[4] == "lo"            # own network namespace, loopback only
    assert lines[5] == "0"             # /proc/kcore masked
    assert "Read-only file system" in out
    assert "sda" not in out and "null" in out


def test_default_and_adjusted_capabilities(client):
    _, out, _ = run_to_exit(client, command=sh("grep -E 'CapEff|CapBnd' /proc/self/status"))
    assert "CapEff:\t00000000a80425fb" in out and "CapBnd:\t00000000a80425fb" in out
    _, out, _ = run_to_exit(client, cap_drop=["NET_RAW", "CHOWN"], cap_add=["NET_ADMIN"],
                            command=sh("grep CapEff /proc/self/status"))
    assert int(out.split()[1], 16) == 0xA80425FB & ~(1 << 13) & ~(1 << 0) | (1 << 12)
    info, out, _ = run_to_exit(client, user="app", command=sh("id; grep CapEff /proc/self/status; touch /root/x"))
    assert "uid=1000(app) gid=1000(app) groups=2000(extra)" in out
    assert "CapEff:\t0000000000000000" in out
    assert info.state.exit_code != 0   # non-root cannot write root's home


def test_memory_limit_oom_kill_is_recorded(client):
    info, _, _ = run_to_exit(client, resources=Resources(memory_bytes=16 << 20),
                             command=["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"])
    assert info.state.exit_code == 137
    assert info.state.oom_killed is True


def test_pids_limit(client):
    info, out, err = run_to_exit(client, resources=Resources(pids_limit=4), command=sh(
        "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null; for i in 1 2 3 4 5 6; do sleep 1 & done; wait"))
    assert "can't fork" in err


def test_cpu_quota_in_effect(client, runtimed):
    cid = client.create(ContainerSpec(image=IMAGE, resources=Resources(nano_cpus=200_000_000),
                                      command=sh("while :; do :; done")))
    client.start(cid)
    cpu_dir = next(p for p in cgroup_dirs(cid) if (p / "cpu.cfs_quota_us").exists())
    assert (cpu_dir / "cpu.cfs_quota_us").read_text().strip() == "20000"
    assert (cpu_dir / "cpu.cfs_period_us").read_text().strip() == "100000"

    def throttled() -> int:
        return int(dict(line.split() for line in (cpu_dir / "cpu.stat").read_text().splitlines())["nr_throttled"])

    try:
        # Wait for the positive signal (the kernel throttled the loop) rather than a fixed second: on
        # a loaded machine the loop may not even get its 0.2 CPU in the first second.
        deadline = time.monotonic() + 60
        while throttled() == 0:
            assert time.monotonic() < deadline, "the busy loop was never throttled in 60 s"
            time.sleep(0.1)
        t0, u0 = time.monotonic(), client.stats(cid).cpu_usage_ns
        time.sleep(1.0)
        t1, u1 = time.monotonic(), client.stats(cid).cpu_usage_ns
    finally:
        client.remove(cid, force=True)
    assert (u1 - u0) / 1e9 < 0.5 * (t1 - t0)   # a busy loop would use ~1 CPU unthrottled; quota is 0.2


def test_read_only_bind_mount_refuses_writes(client, tmp_path):
    (tmp_path / "ro").mkdir()
    (tmp_path / "rw").mkdir()
    (tmp_path / "ro" / "f").write_text("orig")
    info, out, err = run_to_exit(client, mounts=[
        Mount("bind", "/ro", str(tmp_path / "ro"), read_only=True), Mount("bind", "/rw", str(tmp_path / "rw"))],
        command=sh("cat /ro/f; echo new > /ro/f; touch /ro/g; echo hi > /rw/h"))
    assert "orig" in out and "Read-only file system" in err
    assert (tmp_path / "ro" / "f").read_text() == "orig" and not (tmp_path / "ro" / "g").exists()
    assert (tmp_path / "rw" / "h").read_text() == "hi\n"


def test_named_volume_and_tmpfs(client):
    info, _, _ = run_to_exit(client, mounts=[Mount("volume", "/data", "testvol"),
                                             Mount("tmpfs", "/scratch", tmpfs_size_bytes=1 << 20)],
                             command=sh("echo kept > /data/f; df -k /scratch | tail -1"))
    assert info.state.exit_code == 0
    with pytest.raises(Conflict, match="in use"):
        client.volume_remove("testvol")
    client.remove(info.id)
    info2, out, _ = run_to_exit(client, mounts=[Mount("volume", "/data", "testvol")], command=["cat", "/data/f"])
    assert out == "kept\n"
    client.remove(info2.id)
    client.volume_remove("testvol")
    with pytest.raises(NotFound):
        client.volume_inspect("testvol")


def test_logs_rotate_and_follow(client):
    info, _, _ = run_to_exit(client, log_config=LogConfig(max_size_bytes=4096, max_files=2),
                             command=sh("i=0; while [ $i -lt 400 ]; do echo line $i; i=$((i+1)); done"))
    log_path = Path(info.log_path)
    assert log_path.with_name(log_path.name + ".1").exists()
    assert not log_path.with_name(log_path.name + ".2").exists()
    assert log_path.stat().st_size <= 4096
    records = list(client.logs(info.id))
    assert records[-1].log == "line 399\n" and len(records) < 400
    assert [r.log for r in client.logs(info.id, tail=2)] == ["line 398\n", "line 399\n"]
    cid = client.create(ContainerSpec(image=IMAGE, command=sh("for i in 1 2 3; do echo f$i; sleep 0.1; done")))
    client.start(cid)
    assert [r.log for r in client.logs(cid, follow=True)] == ["f1\n", "f2\n", "f3\n"]


def test_exec_and_init(client):
    cid = client.create(ContainerSpec(image=IMAGE, init=True, command=["sleep", "30"], env=["A=1"],
                                      stop_signal="SIGTERM", stop_grace_period_s=5))
    client.start(cid)
    r = client.exec(cid, ["sh", "-c", "echo $A $B; cat /proc/1/cmdline | tr '\\0' ' '; exit 3"], env=["B=2"])
    assert r.exit_code == 3 and r.stdout.splitlines()[0] == "1 2"
    assert "init.py" in r.stdout   # pid 1 is the reaping init, the workload is its child
    with pytest.raises(InvalidArgument, match="not found"):
        client.exec(cid, ["no-such-command"])
    info = client.stop(cid)         # init forwards SIGTERM; sleep dies of it
    assert info.state.exit_code == 143


def test_survives_runtimed_restart(client, runtimed, tmp_path):
    (tmp_path / "ctl").mkdir()
    script = "echo started; while [ ! -e /ctl/$0 ]; do sleep 0.05; done; echo after $0; exit 7"
    mounts = [Mount("bind", "/ctl", str(tmp_path / "ctl"))]
    a = client.create(ContainerSpec(image=IMAGE, command=["sh", "-c", script, "a"], mounts=mounts))
    b = client.create(ContainerSpec(image=IMAGE, command=["sh", "-c", script, "b"], mounts=mounts))
    pid_a = client.start(a).state.pid
    client.start(b)
    runtimed.stop()
    try:
        assert os.path.exists(f"/proc/{pid_a}")
        (tmp_path / "ctl" / "b").touch()   # b exits while runtimed is down
        assert wait_until(lambda: (Path(client_dir(runtimed, b)) / "exitcode").exists())
    finally:
        runtimed.start()
    c2 = runtimed.client()
    ia = c2.inspect(a)
    assert ia.state.status == "running" and ia.state.pid == pid_a
    ib = c2.inspect(b)
    assert ib.state.status == "exited" and ib.state.exit_code == 7
    (tmp_path / "ctl" / "a").touch()
    res = c2.wait(a)
    assert res.status_code == 7
    assert [r.log for r in c2.logs(a)] == ["started\n", "after a\n"]


def client_dir(runtimed, cid):
    return runtimed.root / "containers" / cid


def test_remove_leaves_nothing(client, runtimed):
    cid = client.create(ContainerSpec(image=IMAGE, command=["sleep", "30"],
                                      mounts=[Mount("tmpfs", "/t")], resources=Resources(memory_bytes=32 << 20)))
    client.start(cid)
    assert cgroup_dirs(cid)
    with pytest.raises(Conflict):
        client.remove(cid)
    client.remove(cid, force=True)
    assert cid not in Path("/proc/self/mountinfo").read_text()
    assert cgroup_dirs(cid) == []
    assert not client_dir(runtimed, cid).exists()
    with pytest.raises(NotFound):
        client.inspect(cid)
    # the directory was renamed aside, out of the remove's reply, and a thread deletes it
    assert wait_until(lambda: not (runtimed.root / "containers" / f".removed-{cid}").exists())


def test_a_removed_containers_directory_left_by_a_stop_is_deleted_at_start(client, runtimed):
    """runtimed stopped after renaming a removed container's directory aside, before its thread
    deleted it: the next start deletes it and does not adopt the container."""
    cid = client.create(ContainerSpec(image=IMAGE, command=["true"]))
    runtimed.stop()
    aside = runtimed.root / "containers" / f".removed-{cid}"
    try:
        os.rename(client_dir(runtimed, cid), aside)
    finally:
        runtimed.start()
    assert not aside.exists()
    with pytest.raises(NotFound):
        runtimed.client().inspect(cid)


@pytest.mark.parametrize("spec,error,match", [
    (ContainerSpec(image="shoal/no-such-image:1", command=["true"]), NotFound, "no-such-image"),
    (ContainerSpec(image=IMAGE, command=["true"], mounts=[Mount("bind", "/x", "/nonexistent/src")]),
     InvalidArgument, "/nonexistent/src"),
    (ContainerSpec(image=IMAGE, command=["true"], resources=Resources(memory_bytes=4096)), InvalidArgument, "Memory"),
    (ContainerSpec(image=IMAGE, command=["true"], network="no-such-netns"), InvalidArgument, "no-such-netns"),
])
def test_bad_input_is_refused_and_leaves_nothing(client, runtimed, spec, error, match):
    before = sorted(os.listdir(runtimed.root / "containers"))
    with pytest.raises(error, match=match):
        client.create(spec)
    assert sorted(os.listdir(runtimed.root / "containers")) == before
    assert [d for d in cgroup_dirs(runtimed.parent) if any(d.iterdir()) and any(
        p.is_dir() for p in d.iterdir())] == []


def test_command_not_found_fails_start_with_127(client, runtimed):
    cid = client.create(ContainerSpec(image=IMAGE, command=["/no/such/binary"]))
    with pytest.raises(InvalidArgument, match="executable file not found"):
        client.start(cid)
    info = client.inspect(cid)
    assert info.state.status == "exited" and info.state.exit_code == 127
    assert cgroup_dirs(cid) == []
