"""cgroups v1 and v2 behind one interface (``Cgroup``), chosen by ``open_cgroup``.

Exports: ``Cgroup``, ``CgroupStats``, ``CgroupError``, ``detect_version``, ``open_cgroup``.
Each controller's file names and value conversions live in their own module (memory, cpu, pids,
devices) as pure functions; ``v1``/``v2`` only place the writes in the right directories.
"""

from __future__ import annotations

from pathlib import Path

from agent_runtime.cgroups.base import DEFAULT_ROOT, Cgroup, CgroupError, CgroupStats, detect_version
from agent_runtime.cgroups.v1 import CgroupV1
from agent_runtime.cgroups.v2 import CgroupV2

__all__ = ["Cgroup", "CgroupError", "CgroupStats", "detect_version", "open_cgroup", "CgroupV1", "CgroupV2"]


def open_cgroup(path: str, version: int | None = None, root: Path = DEFAULT_ROOT) -> Cgroup:
    """The cgroup ``path`` (``<parent>/<container id>``) in the detected or given version."""
    version = version or detect_version(root)
    return CgroupV2(path, root) if version == 2 else CgroupV1(path)
