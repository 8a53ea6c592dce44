"""Files given to a container by value (swarm secrets and configs), kept in memory only.

A container whose spec has ``Files`` gets a small tmpfs of its own, mounted by runtimed on the
host at ``<container dir>/files`` (mode 0700, nosuid, nodev, noexec, sized to the files): each
file is written there as ``<index>`` with its owner and mode, and ``mount_sources`` turns them into
read-only bind mounts of single files at their targets inside the container (secrets at
``/run/secrets/NAME``). The data therefore never touches a disk: not in the tmpfs (memory), and
not in ``config.json`` either, because the container manager keeps the spec with ``data`` emptied
(``without_data``), which is also what ``inspect`` shows.

The tmpfs lives as long as the container: it survives a runtimed restart (mounts belong to the
host, not to the process), so a re-adopted container keeps its files and can be restarted; it is
unmounted when the container is removed. After a host reboot it is gone and the container cannot
be started again (the worker makes a new one for its task).

Called from runtimed's loop; the syscalls are quick (no I/O beyond memory).
"""

from __future__ import annotations

import base64
import binascii
import ctypes
import dataclasses
import errno
import os
from pathlib import Path

from agent_runtime.errors import InvalidArgument, ShoalRuntimeError
from agent_runtime.mounts import UserMount
from agent_runtime.spec import File

FILES_DIR = "files"
MAX_FILE_BYTES = 1024 * 1024          # one file (swarm allows 500 KiB secrets, 1000 KiB configs)
MAX_TOTAL_BYTES = 16 * 1024 * 1024    # all the files of one container
_PAGE = 4096
MS_NOSUID, MS_NODEV, MS_NOEXEC = 2, 4, 8
MNT_DETACH = 2

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p)
_libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)


def decode(files: list[File]) -> list[bytes]:
    """The data of each file, decoded from base64; InvalidArgument naming a bad or oversized one."""
    out, total = [], 0
    for i, f in enumerate(files):
        try:
            data = base64.b64decode(f.data, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidArgument(f"ContainerSpec.Files[{i}].Data: not base64 (file {f.target})") from None
        if len(data) > MAX_FILE_BYTES:
            raise InvalidArgument(f"ContainerSpec.Files[{i}].Data: file {f.target} is larger than "
                                  f"{MAX_FILE_BYTES // 1024} KiB")
        total += len(data)
        out.append(data)
    if total > MAX_TOTAL_BYTES:
        raise InvalidArgument(f"ContainerSpec.Files: {total} bytes in all, more than {MAX_TOTAL_BYTES >> 20} MiB")
    return out


def without_data(files: list[File]) -> list[File]:
    """The same files with ``data`` emptied: what is kept on disk and shown by inspect."""
    return [dataclasses.replace(f, data="") for f in files]


def files_dir(container_dir: Path) -> Path:
    return container_dir / FILES_DIR


def write_files(container_dir: Path, files: list[File], contents: list[bytes]) -> None:
    """Mount the container's tmpfs and write ``contents[i]`` as file ``i`` owned uid:gid with its
    mode. On error nothing stays mounted."""
    target = files_dir(container_dir)
    target.mkdir(mode=0o700, exist_ok=True)
    size = max(sum(-(-len(c) // _PAGE) * _PAGE for c in contents) + _PAGE * (len(contents) + 1), 16 * _PAGE)
    _mount_tmpfs(target, size)
    try:
        for i, (f, data) in enumerate(zip(files, contents)):
            fd = os.open(target / str(i), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fchown(fd, f.uid, f.gid)
                os.fchmod(fd, f.mode)
            finally:
                os.close(fd)
    except BaseException:
        release(container_dir)
        raise


def mount_sources(container_dir: Path, files: list[File]) -> list[UserMount]:
    """Read-only bind mounts of the written files at their targets (for ``plan_mounts``);
    InvalidArgument if the tmpfs is gone (the host rebooted since the container was made)."""
    mounts = []
    for i, f in enumerate(files):
        source = files_dir(container_dir) / str(i)
        if not source.exists():
            raise InvalidArgument(f"file {f.target}: its data is gone from {source} (the container exited, "
                                  "or the host restarted, since it was created); create the container again")
        mounts.append(UserMount("bind", f.target, str(source), read_only=True, source_is_dir=False))
    return mounts


def release(container_dir: Path) -> None:
    """Unmount the container's tmpfs (its files vanish with it) and remove the mount point.
    Idempotent: nothing mounted is fine."""
    target = files_dir(container_dir)
    if _libc.umount2(str(target).encode(), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOENT):
            raise ShoalRuntimeError(f"unmount the files of {container_dir.name}: {os.strerror(err)}")
    try:
        target.rmdir()
    except OSError:
        pass  # absent; the container directory is removed whole right after


def _mount_tmpfs(target: Path, size: int) -> None:
    if _libc.mount(b"tmpfs", str(target).encode(), b"tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                   f"mode=0700,size={size}".encode()) != 0:
        err = ctypes.get_errno()
        raise ShoalRuntimeError(f"mount a tmpfs for files on {target}: {os.strerror(err)}")
