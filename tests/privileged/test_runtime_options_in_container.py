"""shoal-runtimed applies Docker's runtime options, checked from inside the container: --dns*,
--add-host, --read-only, --sysctl, --ulimit, --oom-score-adj (docs/compatibility.md).

Needs root; containers run with network "none" (own netns), under the session runtimed.
"""

from __future__ import annotations

import pytest

from agent_runtime.api import ContainerSpec, InvalidArgument, Mount, ShoalRuntimeError, Ulimit
from tests.support.runtime import IMAGE, run_to_exit, sh

pytestmark = [pytest.mark.privileged, pytest.mark.timeout(120)]


def test_dns_options_are_the_containers_resolv_conf(client):
    info, out, _ = run_to_exit(client, dns=["192.0.2.53", "198.18.0.53"], dns_search=["example.org", "lab.test"],
                               dns_options=["ndots:2", "timeout:3"], command=sh("cat /etc/resolv.conf"))
    assert info.state.exit_code == 0, out
    assert out == ("nameserver 192.0.2.53\nnameserver 198.18.0.53\nsearch example.org lab.test\n"
                   "options ndots:2 timeout:3\n")


def test_no_dns_options_keep_the_images_resolv_conf(client, runtimed):
    image_file = runtimed.rootfs / "etc" / "resolv.conf"
    expected = image_file.read_text() if image_file.exists() else ""
    _, out, _ = run_to_exit(client, command=sh("cat /etc/resolv.conf 2>/dev/null; true"))
    assert out == expected


def test_extra_hosts_are_lines_of_etc_hosts(client):
    info, out, _ = run_to_exit(client, extra_hosts=["db.internal:192.0.2.10", "v6host:2001:db8::1"],
                               command=sh("cat /etc/hosts; ping -c1 -W1 db.internal 2>&1 | head -1"))
    assert info.state.exit_code == 0, out
    assert "192.0.2.10\tdb.internal\n" in out and "2001:db8::1\tv6host\n" in out
    assert "127.0.0.1\tlocalhost" in out
    assert "PING db.internal (192.0.2.10)" in out     # the resolver reads it


def test_read_only_rootfs_refuses_writes_but_mounts_stay_writable(client):
    info, out, _ = run_to_exit(client, readonly_rootfs=True, mounts=[Mount(type="tmpfs", target="/scratch")],
                               command=sh("touch /x 2>&1; touch /tmp/x 2>&1; touch /scratch/x && echo scratch-ok; "
                                          "echo > /dev/null && echo dev-ok; grep ' / ' /proc/mounts"))
    assert info.state.exit_code == 0, out
    lines = out.splitlines()
    assert "touch: /x: Read-only file system" in lines[0]
    assert "touch: /tmp/x: Read-only file system" in lines[1]   # no writable /tmp: Docker gives none
    assert "scratch-ok" in out and "dev-ok" in out
    assert lines[-1].split()[3].split(",")[0] == "ro"
    _, out, _ = run_to_exit(client, command=sh("touch /x && echo writable"))
    assert out == "writable\n"


def test_namespaced_sysctls_are_set_inside_only(client):
    with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as f:
        host_port_start = f.read()
    with open("/proc/sys/kernel/shmmni") as f:
        host_shmmni = f.read()
    info, out, _ = run_to_exit(client, sysctls={"net.ipv4.ip_unprivileged_port_start": "80",
                                                "kernel.shmmni": "1234", "net.core.somaxconn": "1000"},
                               command=sh("cat /proc/sys/net/ipv4/ip_unprivileged_port_start /proc/sys/kernel/shmmni "
                                          "/proc/sys/net/core/somaxconn"))
    assert info.state.exit_code == 0, out
    assert out.split() == ["80", "1234", "1000"]
    with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as f:
        assert f.read() == host_port_start
    with open("/proc/sys/kernel/shmmni") as f:
        assert f.read() == host_shmmni


@pytest.mark.parametrize("sysctls, network, match", [
    ({"kernel.hostname": "x"}, "none", "sysctl 'kernel.hostname' is not allowed"),
    ({"vm.swappiness": "1"}, "none", "sysctl 'vm.swappiness' is not allowed"),
    ({"net.core.somaxconn": "1"}, "host", "not allowed in host network namespace"),
])
def test_other_sysctls_are_refused(client, sysctls, network, match):
    before = len(client.list(all=True))
    with pytest.raises(InvalidArgument, match=match):
        run_to_exit(client, sysctls=sysctls, network=network, command=["true"])
    assert len(client.list(all=True)) == before


def test_ulimits_are_set_before_exec(client):
    info, out, _ = run_to_exit(client, user="app", ulimits=[Ulimit(name="nofile", soft=1024, hard=2048),
                                                            Ulimit(name="nproc", soft=100, hard=100)],
                               command=sh("grep -E 'Max (open files|processes)' /proc/self/limits"))
    assert info.state.exit_code == 0, out
    rows = {line[:26].strip(): line[26:].split()[:2] for line in out.splitlines()}   # the kernel's columns
    assert rows["Max open files"] == ["1024", "2048"]
    assert rows["Max processes"] == ["100", "100"]


def test_oom_score_adj(client):
    _, out, _ = run_to_exit(client, oom_score_adj=500, init=True, command=sh("cat /proc/self/oom_score_adj"))
    assert out == "500\n"
    _, out, _ = run_to_exit(client, command=sh("cat /proc/self/oom_score_adj"))
    assert out == "0\n"     # not runtimed's own: Docker writes 0 too
    with pytest.raises(InvalidArgument, match=r"Invalid value 1001, range for oom score adj is \[-1000, 1000\]"):
        run_to_exit(client, oom_score_adj=1001, command=["true"])


def test_exec_gets_the_containers_limits_not_runtimeds(client):
    """runc's exec applies the container's rlimits and OOM score to the new process; a health check
    or `container exec` must see what the workload sees."""
    from agent_runtime.api import ContainerSpec
    from tests.support.runtime import IMAGE
    cid = client.create(ContainerSpec(image=IMAGE, command=["sleep", "60"], oom_score_adj=200,
                                      ulimits=[Ulimit(name="nofile", soft=777, hard=888)]))
    try:
        client.start(cid)
        result = client.exec(cid, ["sh", "-c", "cat /proc/self/oom_score_adj; grep 'Max open files' /proc/self/limits"])
        lines = result.stdout.splitlines()
        assert lines[0] == "200"
        assert lines[1][26:].split()[:2] == ["777", "888"]
    finally:
        client.remove(cid, force=True)


def test_group_add_adds_supplementary_groups_by_name_or_gid(client):
    """Docker's --group-add / a service's --group: names from the container's /etc/group, or GIDs
    (an unknown GID is fine, an unknown name is not); the user's own groups stay."""
    info, out, _ = run_to_exit(client, user="app", group_add=["nogroup", "4242"],
                               command=sh("grep ^Groups: /proc/self/status"))
    assert info.state.exit_code == 0, out
    assert out.split()[1:] == ["2000", "4242", "65534"]
    cid = client.create(ContainerSpec(image=IMAGE, command=["sleep", "60"], group_add=["root"]))
    try:
        client.start(cid)     # exec gets them too, as a health check must
        assert client.exec(cid, ["sh", "-c", "grep ^Groups: /proc/self/status"]).stdout.split()[1:] == ["0"]
    finally:
        client.remove(cid, force=True)
    with pytest.raises(ShoalRuntimeError, match="unable to find group nosuch: no matching entries in group file"):
        run_to_exit(client, group_add=["nosuch"], command=["true"])


def test_tty_makes_stdio_a_terminal_logged_as_stdout(client):
    info, out, err = run_to_exit(client, tty=True,
                                 command=sh("[ -t 0 ] && [ -t 1 ] && [ -t 2 ] && echo tty-ok; echo to-stderr >&2; "
                                            "seq 1 2000 | tail -1"))
    assert info.state.exit_code == 0, out
    lines = out.split("\r\n")       # the terminal's line discipline, as in Docker's logs of a -t container
    assert lines[0] == "tty-ok" and lines[1] == "to-stderr" and err == ""
    assert lines[2] == "2000"        # the last output is logged before the exit is recorded
    _, out, _ = run_to_exit(client, command=sh("[ -t 1 ] || echo not-a-tty"))
    assert out == "not-a-tty\n"


def test_open_stdin_waits_where_a_closed_one_ends(client):
    """Compose's stdin_open: the workload's stdin stays open (reads wait), as in Docker; without it
    stdin is /dev/null and a read ends at once."""
    script = sh("timeout 1 cat; echo rc=$?")
    _, out, _ = run_to_exit(client, open_stdin=True, command=script)
    assert out == "rc=143\n"
    _, out, _ = run_to_exit(client, command=script)
    assert out == "rc=0\n"


def test_a_new_volume_is_filled_from_the_image_unless_nocopy(client):
    """Docker's copy-up: an empty volume mounted where the image has files gets them (owners,
    modes, symlinks kept); volume-nocopy leaves it empty; a volume with data is never touched."""
    import secrets as random
    filled, empty = f"fill-{random.token_hex(3)}", f"empty-{random.token_hex(3)}"
    before = {c.id for c in client.list(all=True)}
    try:
        _, out, _ = run_to_exit(client, mounts=[Mount(type="volume", source=filled, target="/etc", volume_labels={"a": "b"}),
                                                Mount(type="volume", source=empty, target="/home", no_copy=True)],
                                command=sh("ls /etc | grep -c passwd; stat -c '%u %a' /etc/passwd; ls -A /home | wc -l; "
                                           "echo mine > /etc/passwd"))
        assert out.split() == ["1", "0", "644", "0"], out
        assert client.volume_inspect(filled).labels == {"a": "b"}
        _, out, _ = run_to_exit(client, mounts=[Mount(type="volume", source=filled, target="/etc")],
                                command=sh("cat /etc/passwd"))
        assert out == "mine\n"         # not refilled: it had data
    finally:
        for c in client.list(all=True):
            if c.id not in before:
                client.remove(c.id, force=True)
        for name in (filled, empty):
            client.volume_remove(name)


def test_tmpfs_mode_and_bind_propagation(client, tmp_path):
    info, out, _ = run_to_exit(client, mounts=[Mount(type="tmpfs", target="/t", tmpfs_mode=0o700),
                                               Mount(type="bind", source=str(tmp_path), target="/shared",
                                                     propagation="rshared"),
                                               Mount(type="bind", source=str(tmp_path), target="/private")],
                               command=sh("stat -c %a /t; grep ' /shared ' /proc/self/mountinfo; "
                                          "grep ' /private ' /proc/self/mountinfo"))
    assert info.state.exit_code == 0, out
    mode, shared, private = out.splitlines()
    assert mode == "700"
    assert "shared:" in shared and "shared:" not in private      # rprivate, the default


def test_local_volume_options_mount_a_device(client, tmp_path):
    """Docker's local driver options: a tmpfs volume (size, mode) and a bind of a host directory,
    mounted at the volume's directory when a container first uses it; a different ask for the same
    name, a bad option set or a mount that fails are errors naming it; removing the volume
    unmounts it and leaves the bound directory's files alone."""
    import os
    import secrets as random

    from agent_runtime.api import Conflict
    from agent_runtime.volumes import is_mountpoint
    tmpfs, bound, broken = (f"{kind}-{random.token_hex(3)}" for kind in ("tmpfs", "bound", "broken"))
    (tmp_path / "f").write_text("from the host\n")
    tmpfs_opts = {"type": "tmpfs", "device": "tmpfs", "o": "size=1m,mode=0750"}
    before = {c.id for c in client.list(all=True)}
    try:
        client.volume_create(bound, options={"type": "none", "o": "bind", "device": str(tmp_path)})
        info, out, _ = run_to_exit(client, mounts=[
            Mount(type="volume", source=tmpfs, target="/t", volume_options=tmpfs_opts),
            Mount(type="volume", source=bound, target="/b")],
            command=sh("grep ' /t ' /proc/self/mounts; stat -c %a /t; cat /b/f; echo new > /b/g"))
        assert info.state.exit_code == 0, out
        mounts, mode, host_file = out.splitlines()
        assert mounts.startswith("tmpfs /t tmpfs ") and "size=1024k" in mounts, mounts
        assert (mode, host_file) == ("750", "from the host")
        assert (tmp_path / "g").read_text() == "new\n"
        assert client.volume_inspect(tmpfs).options == tmpfs_opts
        with pytest.raises(Conflict, match=f"volume {tmpfs} already exists with different options"):
            client.volume_create(tmpfs, options={"type": "tmpfs", "device": "tmpfs"})
        with pytest.raises(InvalidArgument, match='missing required option: "device"'):
            client.volume_create(broken, options={"type": "tmpfs"})
        with pytest.raises(ShoalRuntimeError, match=f"failed to mount local volume {broken}: mount /nonexistent"):
            run_to_exit(client, mounts=[Mount(type="volume", source=broken, target="/x", volume_options={
                "type": "none", "o": "bind", "device": "/nonexistent"})], command=["true"])
    finally:
        for c in client.list(all=True):
            if c.id not in before:
                client.remove(c.id, force=True)
        mountpoints = []
        for name in (tmpfs, bound, broken):
            try:
                mountpoints.append(client.volume_inspect(name).mountpoint)
                client.volume_remove(name)
            except ShoalRuntimeError:
                pass
    assert not any(is_mountpoint(m) for m in mountpoints) and not any(os.path.exists(m) for m in mountpoints)
    assert sorted(os.listdir(tmp_path)) == ["f", "g"]      # the bound directory was only unmounted


def test_a_volume_driver_the_node_lacks_is_refused_naming_it(client):
    with pytest.raises(InvalidArgument, match="volume driver 'rexray' is not available on this node"):
        run_to_exit(client, mounts=[Mount(type="volume", source="v1", target="/v", volume_driver="rexray")],
                    command=["true"])


def test_runtimed_keeps_answering_while_a_tty_workload_is_idle(client):
    """The relay from the pty to the log pipe must not hold the pipe while it waits on the tty:
    with busybox cat (sendfile) runtimed's next read of the pipe blocked, unkillable, until the
    workload wrote again, and every call to runtimed hung."""
    cid = client.create(ContainerSpec(image=IMAGE, tty=True, stop_signal="KILL",
                                      command=sh("echo started; exec sleep 60")))
    try:
        client.start(cid)
        for _ in range(3):
            assert client.exec(cid, ["echo", "answered"]).stdout == "answered\n"
            assert cid in {c.id for c in client.list(all=True)}
        client.stop(cid, timeout=1)
        assert "".join(r.log for r in client.logs(cid)) == "started\r\n"
    finally:
        client.remove(cid, force=True)


def test_health_checks_run_every_start_interval_in_the_start_period(client):
    """--health-start-interval: while starting, inside the start period, the check runs every
    start interval (0.2 s here) rather than every interval (60 s): three checks come well before
    one interval could pass."""
    from agent_runtime.api import Healthcheck
    from tests.support.runtime import wait_until
    cid = client.create(ContainerSpec(image=IMAGE, stop_signal="KILL", command=["sleep", "60"],
                                      healthcheck=Healthcheck(test=["CMD-SHELL", "echo x >> /tmp/probes; exit 1"],
                                                              interval_s=60, timeout_s=5, retries=100,
                                                              start_period_s=60, start_interval_s=0.2)))
    try:
        client.start(cid)

        def probes() -> int:
            return int(client.exec(cid, ["sh", "-c", "wc -l < /tmp/probes 2>/dev/null || echo 0"]).stdout.strip() or 0)
        assert wait_until(lambda: probes() >= 3, timeout=30)
        assert client.inspect(cid).state.health.status == "starting"   # failures in the start period do not count
    finally:
        client.remove(cid, force=True)
