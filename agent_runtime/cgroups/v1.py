"""cgroup v1 back end: one directory per controller hierarchy (memory, cpu, cpuacct, pids,
devices, freezer), found from /proc/self/mountinfo, so co-mounted ``cpu,cpuacct`` works too."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from agent_runtime.cgroups import cpu, devices, memory, pids
from agent_runtime.cgroups.base import (Cgroup, CgroupError, CgroupStats, kill_pids, read_file,
                                        remove_dir, write_file)
from agent_runtime.spec import Resources

log = logging.getLogger(__name__)

CONTROLLERS = ("memory", "cpu", "cpuacct", "pids", "devices", "freezer")


def find_mounts(mountinfo: str) -> dict[str, Path]:
    """Map each v1 controller to its hierarchy's mount point, from /proc/self/mountinfo text."""
    out: dict[str, Path] = {}
    for line in mountinfo.splitlines():
        left, _, right = line.partition(" - ")
        fields, rfields = left.split(), right.split()
        if len(rfields) < 3 or rfields[0] != "cgroup":
            continue
        for opt in rfields[2].split(","):
            if opt in CONTROLLERS and opt not in out:
                out[opt] = Path(fields[4])
    return out


class CgroupV1(Cgroup):
    version = 1
    restricts_devices = True

    def __init__(self, path: str, mounts: dict[str, Path] | None = None) -> None:
        super().__init__(path)
        if mounts is None:
            mounts = find_mounts(Path("/proc/self/mountinfo").read_text())
        missing = [c for c in ("memory", "cpu", "cpuacct", "pids", "freezer") if c not in mounts]
        if missing:
            raise CgroupError(f"cgroup v1 controllers not mounted: {', '.join(missing)}")
        self.mounts = mounts

    def dir(self, controller: str) -> Path:
        return self.mounts[controller] / self.path

    def dirs(self) -> list[Path]:
        seen: dict[Path, None] = {}
        for c in CONTROLLERS:
            if c in self.mounts:
                seen.setdefault(self.dir(c), None)
        return list(seen)

    def create(self, resources: Resources, privileged: bool = False) -> None:
        made = []
        try:
            for d in self.dirs():
                if not d.is_dir():
                    d.mkdir(parents=True)
                    made.append(d)
            what = f"cgroup {self.path}"
            has_memsw = (self.dir("memory") / "memory.memsw.limit_in_bytes").exists()
            plan = [("memory", w) for w in memory.writes_v1(resources.memory_bytes,
                                                            resources.memory_reservation_bytes, has_memsw)]
            plan += [("cpu", w) for w in cpu.writes_v1(resources.nano_cpus, resources.cpu_shares)]
            plan += [("pids", w) for w in pids.writes(resources.pids_limit)]
            if "devices" in self.mounts:
                plan += [("devices", w) for w in devices.writes_v1(privileged)]
            for controller, (name, value) in plan:
                write_file(self.dir(controller) / name, value, what)
        except BaseException:
            for d in reversed(made):
                try:
                    remove_dir(d, attempts=5)
                except CgroupError:
                    log.warning("could not remove %s after a failed create", d)
            raise

    def procs_files(self) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.dirs()]

    def pids(self) -> list[int]:
        return [int(p) for p in read_file(self.dir("pids") / "cgroup.procs").split()]

    def stats(self) -> CgroupStats:
        mem = memory.parse_flat_keyed(read_file(self.dir("memory") / "memory.stat"))
        usage = int(read_file(self.dir("memory") / "memory.usage_in_bytes", "0") or 0)
        return CgroupStats(
            cpu_usage_ns=int(read_file(self.dir("cpuacct") / "cpuacct.usage", "0") or 0),
            memory_usage_bytes=max(0, usage - mem.get("total_inactive_file", 0)),
            memory_limit_bytes=memory.parse_limit(read_file(self.dir("memory") / "memory.limit_in_bytes", "max")),
            pids_current=int(read_file(self.dir("pids") / "pids.current", "0") or 0),
            pids_limit=pids.parse_max(read_file(self.dir("pids") / "pids.max", "max")))

    def oom_kills(self) -> int:
        return memory.parse_flat_keyed(read_file(self.dir("memory") / "memory.oom_control")).get("oom_kill", 0)

    def kill_all(self) -> None:
        freezer = self.dir("freezer") / "freezer.state"
        if not freezer.exists():
            return
        write_file(freezer, "FROZEN", f"cgroup {self.path}")
        try:
            for _ in range(100):
                if read_file(freezer).strip() == "FROZEN":
                    break
                time.sleep(0.001)
            kill_pids(self.pids())
        finally:
            write_file(freezer, "THAWED", f"cgroup {self.path}")
