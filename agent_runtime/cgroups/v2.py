"""cgroup v2 back end: one directory in the unified tree.

Controllers must be enabled in ``cgroup.subtree_control`` of every ancestor (root included) down to
the node's parent; the container leaf holds processes only. Runtimed itself must not sit in the
parent (the "no internal processes" rule): it stays wherever it was started.
"""

from __future__ import annotations

import logging
from pathlib import Path

from agent_runtime.cgroups import cpu, memory, pids
from agent_runtime.cgroups.base import (DEFAULT_ROOT, Cgroup, CgroupStats, kill_pids, read_file,
                                        remove_dir, write_file)
from agent_runtime.spec import Resources

log = logging.getLogger(__name__)

WANTED = ("cpu", "memory", "pids")


class CgroupV2(Cgroup):
    version = 2
    restricts_devices = False

    def __init__(self, path: str, root: Path = DEFAULT_ROOT) -> None:
        super().__init__(path)
        self.root = root

    @property
    def leaf(self) -> Path:
        return self.root / self.path

    def dirs(self) -> list[Path]:
        return [self.leaf]

    def _enable_controllers(self) -> None:
        """Enable cpu/memory/pids along the path from the root to the leaf's parent."""
        d = self.root
        for part in Path(self.path).parent.parts + ("",):
            available = read_file(d / "cgroup.controllers").split()
            enabled = read_file(d / "cgroup.subtree_control").split()
            wanted = [c for c in WANTED if c in available and c not in enabled]
            if wanted:
                write_file(d / "cgroup.subtree_control", " ".join("+" + c for c in wanted), f"cgroup {d}")
            if not part:
                break
            d = d / part
            d.mkdir(exist_ok=True)

    def create(self, resources: Resources, privileged: bool = False) -> None:
        self._enable_controllers()
        self.leaf.mkdir()
        try:
            plan = memory.writes_v2(resources.memory_bytes, resources.memory_reservation_bytes,
                                    (self.leaf / "memory.swap.max").exists())
            plan += cpu.writes_v2(resources.nano_cpus, resources.cpu_shares)
            plan += pids.writes(resources.pids_limit)
            for name, value in plan:
                write_file(self.leaf / name, value, f"cgroup {self.path}")
        except BaseException:
            remove_dir(self.leaf, attempts=5)
            raise

    def procs_files(self) -> list[str]:
        return [str(self.leaf / "cgroup.procs")]

    def pids(self) -> list[int]:
        return [int(p) for p in read_file(self.leaf / "cgroup.procs").split()]

    def stats(self) -> CgroupStats:
        mem = memory.parse_flat_keyed(read_file(self.leaf / "memory.stat"))
        usage = int(read_file(self.leaf / "memory.current", "0") or 0)
        cpu_stat = memory.parse_flat_keyed(read_file(self.leaf / "cpu.stat"))
        return CgroupStats(
            cpu_usage_ns=cpu_stat.get("usage_usec", 0) * 1000,
            memory_usage_bytes=max(0, usage - mem.get("inactive_file", 0)),
            memory_limit_bytes=memory.parse_limit(read_file(self.leaf / "memory.max", "max")),
            pids_current=int(read_file(self.leaf / "pids.current", "0") or 0),
            pids_limit=pids.parse_max(read_file(self.leaf / "pids.max", "max")))

    def oom_kills(self) -> int:
        return memory.parse_flat_keyed(read_file(self.leaf / "memory.events")).get("oom_kill", 0)

    def kill_all(self) -> None:
        kill_file = self.leaf / "cgroup.kill"
        if kill_file.exists():
            write_file(kill_file, "1", f"cgroup {self.path}")
            return
        write_file(self.leaf / "cgroup.freeze", "1", f"cgroup {self.path}")
        try:
            kill_pids(self.pids())
        finally:
            write_file(self.leaf / "cgroup.freeze", "0", f"cgroup {self.path}")
