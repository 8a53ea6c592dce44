"""cgroup value conversions and the v1/v2 back ends' file writes, against a fake cgroupfs in tmp_path."""

from pathlib import Path

import pytest

from agent_runtime.cgroups import cpu, memory, pids
from agent_runtime.cgroups.base import detect_version
from agent_runtime.cgroups.v1 import CgroupV1, find_mounts
from agent_runtime.cgroups.v2 import CgroupV2
from agent_runtime.errors import InvalidArgument
from agent_runtime.spec import Resources


@pytest.mark.parametrize("nano,quota", [(0, 0), (500_000_000, 50_000), (1_500_000_000, 150_000),
                                        (2_000_000_000, 200_000), (10_000_000, 1_000), (1_000_000, 1_000)])
def test_quota_from_nano_cpus(nano, quota):
    assert cpu.quota_us(nano) == quota


@pytest.mark.parametrize("shares,weight", [(0, 0), (2, 1), (1024, 39), (262144, 10000), (1, 1)])
def test_shares_to_weight(shares, weight):
    assert cpu.shares_to_weight(shares) == weight


def test_limits_parse():
    assert memory.parse_limit("max") == 0 and memory.parse_limit("9223372036854771712") == 0
    assert memory.parse_limit("67108864\n") == 64 << 20
    assert pids.parse_max("max") == 0 and pids.parse_max("20") == 20
    assert memory.parse_flat_keyed("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")["oom_kill"] == 2


def fake_v2_root(tmp: Path) -> Path:
    (tmp / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (tmp / "cgroup.subtree_control").write_text("")
    return tmp


class FakeV2(CgroupV2):
    """Kernel stand-in: a new directory gets the controller files a real cgroupfs would show."""

    def create(self, resources, privileged=False):
        orig_mkdir = Path.mkdir

        def mkdir(p, *a, **kw):
            orig_mkdir(p, *a, **kw)
            (p / "cgroup.controllers").write_text("cpu memory pids\n")
            (p / "cgroup.subtree_control").write_text("")
            (p / "memory.swap.max").write_text("max\n")
        Path.mkdir = mkdir
        try:
            super().create(resources, privileged)
        finally:
            Path.mkdir = orig_mkdir


def test_v2_writes(tmp_path):
    root = fake_v2_root(tmp_path)
    assert detect_version(root) == 2
    cg = FakeV2("shoal-node1/abc", root)
    cg.create(Resources(nano_cpus=500_000_000, memory_bytes=64 << 20, memory_reservation_bytes=32 << 20,
                        pids_limit=20, cpu_shares=512))
    leaf = root / "shoal-node1" / "abc"
    assert (root / "cgroup.subtree_control").read_text() == "+cpu +memory +pids"
    assert (root / "shoal-node1" / "cgroup.subtree_control").read_text() == "+cpu +memory +pids"
    assert (leaf / "memory.max").read_text() == str(64 << 20)
    assert (leaf / "memory.swap.max").read_text() == "0"
    assert (leaf / "memory.low").read_text() == str(32 << 20)
    assert (leaf / "cpu.max").read_text() == "50000 100000"
    assert (leaf / "cpu.weight").read_text() == str(cpu.shares_to_weight(512))
    assert (leaf / "pids.max").read_text() == "20"
    assert cg.procs_files() == [str(leaf / "cgroup.procs")]
    (leaf / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    (leaf / "cpu.stat").write_text("usage_usec 1500\nuser_usec 1000\n")
    (leaf / "memory.current").write_text("1000000\n")
    (leaf / "memory.stat").write_text("anon 1\ninactive_file 1000\n")
    (leaf / "pids.current").write_text("3\n")
    assert cg.oom_kills() == 1
    s = cg.stats()
    assert (s.cpu_usage_ns, s.memory_usage_bytes, s.memory_limit_bytes, s.pids_current, s.pids_limit) == (
        1_500_000, 999_000, 64 << 20, 3, 20)


def test_v1_writes_and_mount_discovery(tmp_path):
    mountinfo = "\n".join(
        f"{i} 1 0:{i} / {tmp_path}/{name} rw - cgroup cgroup rw,{opts}"
        for i, (name, opts) in enumerate([("memory", "memory"), ("cpu,cpuacct", "cpu,cpuacct"),
                                          ("pids", "pids"), ("freezer", "freezer"), ("devices", "devices")]))
    mounts = find_mounts(mountinfo + "\n30 1 0:40 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw")
    assert mounts["cpu"] == mounts["cpuacct"] == tmp_path / "cpu,cpuacct"
    cg = CgroupV1("shoal/abc", mounts)
    assert len(cg.dirs()) == 5  # cpu and cpuacct share a directory
    cg.create(Resources(nano_cpus=250_000_000, memory_bytes=64 << 20, pids_limit=5))
    assert (tmp_path / "memory/shoal/abc/memory.limit_in_bytes").read_text() == str(64 << 20)
    assert (tmp_path / "cpu,cpuacct/shoal/abc/cpu.cfs_quota_us").read_text() == "25000"
    assert (tmp_path / "cpu,cpuacct/shoal/abc/cpu.cfs_period_us").read_text() == "100000"
    assert (tmp_path / "pids/shoal/abc/pids.max").read_text() == "5"
    assert (tmp_path / "devices/shoal/abc/devices.allow").read_text()  # default allow list written


def test_cgroup_path_must_stay_below_the_parent():
    with pytest.raises(InvalidArgument):
        CgroupV2("../escape", Path("/nonexistent"))
