"""Sweeping up after a lab: mounts under its directory, its cgroups, its directory.

These work from what the kernel shows rather than from the lab's record, so `down` also cleans up
after an `up` that failed halfway or a record that was lost.
"""
from __future__ import annotations

import ctypes
import logging
import os
import re
import shutil
from pathlib import Path

from shoal.lab.errors import LabError
from shoal.lab.procs import kill_pids

logger = logging.getLogger(__name__)

MNT_DETACH = 2
_libc = ctypes.CDLL(None, use_errno=True)


def _unescape(field: str) -> str:
    """Decode mountinfo's octal escapes (\\040 for space and so on)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _mountinfo() -> list[tuple[str, str]]:
    """(mount point, filesystem type) of every mount in this mount namespace, in mount order."""
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        mounts.append((_unescape(left.split()[4]), right.split()[0]))
    return mounts


def mounts_under(directory: Path) -> list[str]:
    """Mount points at or below `directory`, deepest (most recently mounted) first."""
    prefix = str(directory).rstrip("/")
    found = [m for m, _ in _mountinfo() if m == prefix or m.startswith(prefix + "/")]
    return list(reversed(found))


def unmount_under(directory: Path) -> None:
    """Lazily unmount everything at or below `directory`, repeating for stacked mounts.
    Raises LabError if a mount cannot be removed."""
    for _ in range(10):
        points = mounts_under(directory)
        if not points:
            return
        for point in points:
            if _libc.umount2(point.encode(), MNT_DETACH) != 0:
                err = ctypes.get_errno()
                if err != 22:  # EINVAL: already gone (an earlier lazy unmount took it with its parent)
                    raise LabError(f"cannot unmount {point}: {os.strerror(err)}")
            logger.info("unmounted %s", point)
    raise LabError(f"mounts under {directory} keep coming back: {mounts_under(directory)}")


def cgroup_roots() -> list[Path]:
    """Mount points of every cgroup v1 hierarchy and of the cgroup v2 tree."""
    return [Path(m) for m, fstype in _mountinfo() if fstype in ("cgroup", "cgroup2")]


def find_cgroups(pattern: re.Pattern[str]) -> list[Path]:
    """Every cgroup directory, in any hierarchy, whose name matches `pattern` (not descending into
    matches: their children go with them)."""
    found = []
    for root in cgroup_roots():
        for dirpath, dirnames, _ in os.walk(root):
            keep = []
            for name in dirnames:
                (found if pattern.match(name) else keep).append(Path(dirpath) / name)
            dirnames[:] = [p.name for p in keep]
    return found


def _cgroup_pids(group: Path) -> list[int]:
    pids = []
    for dirpath, _, filenames in os.walk(group):
        if "cgroup.procs" in filenames:
            try:
                pids += [int(p) for p in (Path(dirpath) / "cgroup.procs").read_text().split()]
            except OSError:
                pass
    return pids


def _thaw(group: Path) -> None:
    """Frozen tasks cannot die: thaw a v1 freezer group or a v2 group before killing its tasks."""
    for dirpath, _, filenames in os.walk(group):
        for name, value in (("freezer.state", "THAWED"), ("cgroup.freeze", "0")):
            if name in filenames:
                try:
                    (Path(dirpath) / name).write_text(value)
                except OSError:
                    pass


def remove_cgroup(group: Path) -> None:
    """Kill every task in `group` and below (tasks the lab's runtimed made), then remove the groups
    bottom-up. Raises LabError if a group stays busy."""
    _thaw(group)
    kill_pids(_cgroup_pids(group))
    for dirpath, _, _ in sorted(os.walk(group), key=lambda entry: -len(entry[0])):
        try:
            os.rmdir(dirpath)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise LabError(f"cannot remove cgroup {dirpath}: {exc.strerror}") from exc
    logger.info("removed cgroup %s", group)


def remove_tree(directory: Path) -> None:
    """Remove `directory` after making sure nothing is mounted below it (so removal never reaches
    into a bind-mounted source)."""
    if not directory.exists():
        return
    left = mounts_under(directory)
    if left:
        raise LabError(f"refusing to remove {directory}: still mounted below it: {', '.join(left)}")
    shutil.rmtree(directory)
