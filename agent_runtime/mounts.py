"""The mount table of a container, computed as data (runc's "mounts are data first").

``plan_mounts`` is a pure function: from the user's mounts (volume names already resolved to host
paths) and the privileged flag it returns the ordered list of operations ``init.py`` applies inside
the new mount namespace, every target relative to the container root. Operation kinds:

- ``mount``: source, target, fstype, flags (names such as ``nosuid``, ``ro``, ``bind``, ``rec``),
  data, ``mkdir`` = ``dir``/``file`` for what to create as the mount point;
- ``mknod``: a character device (major, minor, mode);
- ``symlink``: target -> link;
- ``mask``: hide a path (``/dev/null`` over a file, an empty read-only tmpfs over a directory);
- ``readonly``: bind a path onto itself read-only.

Missing mask/readonly targets are skipped by init.py, as runc does.
"""

from __future__ import annotations

from dataclasses import dataclass

# moby/oci/defaults.go
MASKED_PATHS = (
    "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
    "/sys/devices/virtual/powercap",
)
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

# (name, major, minor): runc's default devices
DEFAULT_DEVICES = (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8),
                   ("urandom", 1, 9), ("tty", 5, 0))
DEV_SYMLINKS = (("/proc/self/fd", "/dev/fd"), ("/proc/self/fd/0", "/dev/stdin"),
                ("/proc/self/fd/1", "/dev/stdout"), ("/proc/self/fd/2", "/dev/stderr"),
                ("pts/ptmx", "/dev/ptmx"), ("/proc/kcore", "/dev/core"))


@dataclass(frozen=True)
class UserMount:
    """A user mount with its host source resolved: type ``bind`` (volumes are binds too) or ``tmpfs``."""

    type: str
    target: str
    source: str = ""
    read_only: bool = False
    tmpfs_size_bytes: int = 0
    tmpfs_mode: int = 0o1777
    source_is_dir: bool = True
    propagation: str = ""


def _mount(source: str, target: str, fstype: str, flags: list[str], data: str = "",
           mkdir: str = "dir") -> dict:
    return {"kind": "mount", "source": source, "target": target, "fstype": fstype,
            "flags": flags, "data": data, "mkdir": mkdir}


def plan_mounts(user_mounts: list[UserMount], privileged: bool = False,
                shm_size_bytes: int = 64 * 1024 * 1024) -> list[dict]:
    """Return the ordered operations that build a container's filesystem view.

    Order matters and is guaranteed: kernel filesystems first (/proc, /dev and its nodes, /sys),
    then user mounts sorted so a parent directory is mounted before anything below it (a stable
    sort by depth keeps the given order otherwise), then masked and read-only paths, which must
    come last so no later mount uncovers them. Privileged containers get a writable /sys and no
    masked or read-only paths.
    """
    ops: list[dict] = [
        _mount("proc", "/proc", "proc", ["nosuid", "noexec", "nodev"]),
        _mount("tmpfs", "/dev", "tmpfs", ["nosuid", "strictatime"], "mode=755,size=65536k"),
    ]
    for name, major, minor in DEFAULT_DEVICES:
        ops.append({"kind": "mknod", "target": f"/dev/{name}", "major": major, "minor": minor, "mode": 0o666})
    for link_to, path in DEV_SYMLINKS:
        ops.append({"kind": "symlink", "target": path, "link": link_to})
    ops += [
        _mount("devpts", "/dev/pts", "devpts", ["nosuid", "noexec"],
               "newinstance,ptmxmode=0666,mode=0620,gid=5"),
        _mount("shm", "/dev/shm", "tmpfs", ["nosuid", "noexec", "nodev"],
               f"mode=1777,size={shm_size_bytes}"),
        _mount("mqueue", "/dev/mqueue", "mqueue", ["nosuid", "noexec", "nodev"]),
        _mount("sysfs", "/sys", "sysfs", ["nosuid", "noexec", "nodev"] + ([] if privileged else ["ro"])),
    ]
    for m in sorted(user_mounts, key=lambda m: m.target.rstrip("/").count("/")):
        if m.type == "tmpfs":
            data = f"mode={m.tmpfs_mode:o}" + (f",size={m.tmpfs_size_bytes}" if m.tmpfs_size_bytes else "")
            ops.append(_mount("tmpfs", m.target, "tmpfs",
                              ["nosuid", "nodev"] + (["ro"] if m.read_only else []), data))
        else:
            flags = ["bind", "rec"] + (["ro"] if m.read_only else [])
            op = _mount(m.source, m.target, "", flags, mkdir="dir" if m.source_is_dir else "file")
            if m.propagation:
                op["propagation"] = ["rec", m.propagation[1:]] if m.propagation.startswith("r") else [m.propagation]
            ops.append(op)
    if not privileged:
        ops += [{"kind": "mask", "target": p} for p in MASKED_PATHS]
        ops += [{"kind": "readonly", "target": p} for p in READONLY_PATHS]
    return ops
