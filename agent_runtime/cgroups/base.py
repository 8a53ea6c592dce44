"""The cgroup interface both back ends implement, plus version detection.

A ``Cgroup`` is one container's group below the node's parent (``--cgroup-parent``), so several
runtimes on one machine never share a directory. Methods are synchronous and quick (a few file
writes); runtimed calls them from its event loop.
"""

from __future__ import annotations

import abc
import errno
import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from agent_runtime.errors import InvalidArgument, ShoalRuntimeError
from agent_runtime.spec import Resources

if TYPE_CHECKING:
    import threading

DEFAULT_ROOT = Path("/sys/fs/cgroup")


class CgroupError(ShoalRuntimeError):
    """A cgroup file could not be created, written or removed."""


@dataclass
class CgroupStats:
    cpu_usage_ns: int = 0
    memory_usage_bytes: int = 0
    memory_limit_bytes: int = 0
    pids_current: int = 0
    pids_limit: int = 0


def detect_version(root: Path = DEFAULT_ROOT) -> int:
    """2 when ``root`` is the unified hierarchy (it has cgroup.controllers), else 1 (legacy or hybrid)."""
    return 2 if (root / "cgroup.controllers").exists() else 1


def write_file(path: Path, value: str, what: str) -> None:
    """Write one cgroup file; EINVAL/EBUSY and friends become CgroupError naming file and value."""
    try:
        with open(path, "w") as f:
            f.write(value)
    except OSError as exc:
        if exc.errno in (errno.EINVAL, errno.EBUSY, errno.ERANGE):
            raise InvalidArgument(f"{what}: the kernel refused {value!r} for {path.name}: {exc.strerror}") from exc
        raise CgroupError(f"{what}: cannot write {value!r} to {path}: {exc.strerror}") from exc


def read_file(path: Path, default: str = "") -> str:
    try:
        return path.read_text()
    except OSError:
        return default


def remove_dir(path: Path, attempts: int = 100) -> None:
    """rmdir a cgroup directory, retrying briefly while exiting tasks leave it (EBUSY)."""
    for _ in range(attempts):
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                raise CgroupError(f"cannot remove cgroup {path}: {exc.strerror}") from exc
            time.sleep(0.01)
    raise CgroupError(f"cannot remove cgroup {path}: still busy")


def kill_pids(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class Cgroup(abc.ABC):
    """One container's cgroup. ``path`` is relative to the hierarchy root: ``<parent>/<name>``."""

    version: int
    restricts_devices: bool

    def __init__(self, path: str) -> None:
        if path.startswith("/") or ".." in path.split("/"):
            raise InvalidArgument(f"cgroup path {path!r} must be relative and without '..'")
        self.path = path

    @abc.abstractmethod
    def create(self, resources: Resources, privileged: bool = False) -> None:
        """Make the directories and apply the limits; on error remove what was made, then raise."""

    @abc.abstractmethod
    def procs_files(self) -> list[str]:
        """The ``cgroup.procs`` files a process writes ``0`` into to join (one per hierarchy)."""

    @abc.abstractmethod
    def pids(self) -> list[int]:
        """PIDs (host namespace) of every process in the group."""

    @abc.abstractmethod
    def stats(self) -> CgroupStats: ...

    @abc.abstractmethod
    def oom_kills(self) -> int:
        """How many processes the kernel OOM-killed in this group since it was made."""

    @abc.abstractmethod
    def kill_all(self) -> None:
        """SIGKILL every process in the group, with no window for new forks to escape."""

    @abc.abstractmethod
    def dirs(self) -> list[Path]: ...

    def exists(self) -> bool:
        return any(d.is_dir() for d in self.dirs())

    def destroy(self) -> None:
        """Kill what is left and remove the directories; safe to call twice."""
        if not self.exists():
            return
        if self.pids():
            self.kill_all()
        for d in self.dirs():
            remove_dir(d)



def keep_migration_lock_warm(version: int, stop: "threading.Event", period: float = 0.002,
                             limit: float = 5.0) -> None:
    """Until ``stop`` is set (at most ``limit`` seconds), move this process into the cgroup it is
    already in every ``period`` seconds.

    Why: the first cgroup migration after a quiet spell waits for an RCU grace period (the kernel's
    cgroup_threadgroup_rwsem returns to its slow mode about 10-20 ms after its last writer); a
    container's init pays that once per start (7-15 ms here, a third of a whole start). These
    no-op migrations keep the lock in its fast mode while an init starts, so init's own
    cgroup.procs writes take 0.05 ms. Runs in a helper thread; errors only end it early.
    """
    target = _own_procs_file(version)
    if target is None:
        return
    pid = str(os.getpid())
    deadline = time.monotonic() + limit
    try:
        while time.monotonic() < deadline:
            with open(target, "w") as f:
                f.write(pid)
            if stop.wait(period):
                return
    except OSError as exc:
        logging.getLogger(__name__).debug("keeping the cgroup migration lock warm failed: %s", exc)


def _own_procs_file(version: int) -> Path | None:
    """cgroup.procs of this process's own group (the pids hierarchy on v1)."""
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            hid, controllers, path = line.split(":", 2)
            if (version == 2 and hid == "0") or (version == 1 and "pids" in controllers.split(",")):
                return DEFAULT_ROOT / ("" if version == 2 else "pids") / path.lstrip("/") / "cgroup.procs"
    except OSError:
        pass
    return None
