"""A simulated power loss for one directory: what survives is only what fsync made durable.

``install(root, shadow)`` runs inside the process that writes ``root`` (a Raft member). It wraps
``os.fsync`` and ``os.fdatasync``: syncing a regular file records its contents at that moment under
its inode number; syncing a directory records which names point to which inodes. Files present at
install time count as durable. The record lives in ``shadow`` (plain writes: a SIGKILL keeps the
page cache, and the shadow is the test's bookkeeping, not the system under test).

After the process is killed, ``power_loss(root, shadow)`` replaces ``root`` with the durable image:
every name of the last synced listing, with the contents of the last sync of its inode (empty if its
data was never synced). Unsynced writes, renames and new files are gone; that is POSIX's promise
without fsync (ext4 may keep more, never less). mmap writes (msync) are not modelled: PySyncObj's
own journal never syncs its mmap anyway.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

_installed: dict[str, object] = {}


def _listing(root: Path) -> dict[str, int]:
    out = {}
    for entry in os.scandir(root):
        if entry.is_file(follow_symlinks=False):
            out[entry.name] = entry.inode()
    return out


def _save_listing(shadow: Path, listing: dict[str, int]) -> None:
    tmp = shadow / "dir.json.tmp"
    tmp.write_text(json.dumps(listing))
    os.replace(tmp, shadow / "dir.json")


def _save_inode(shadow: Path, ino: int, data: bytes) -> None:
    tmp = shadow / "inodes" / f"{ino}.tmp"
    tmp.write_bytes(data)
    os.replace(tmp, shadow / "inodes" / str(ino))


def install(root: Path, shadow: Path) -> None:
    """Start recording what fsync makes durable in ``root`` (call once, before anything writes)."""
    root, shadow = Path(root).resolve(), Path(shadow).resolve()
    root.mkdir(parents=True, exist_ok=True)
    (shadow / "inodes").mkdir(parents=True, exist_ok=True)
    if not (shadow / "dir.json").exists():
        listing = _listing(root)
        for name, ino in listing.items():
            _save_inode(shadow, ino, (root / name).read_bytes())
        _save_listing(shadow, listing)
    real_fsync, real_fdatasync = os.fsync, os.fdatasync

    def record(fd: int) -> None:
        try:
            info = os.fstat(fd)
            path = Path(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            return
        if stat.S_ISDIR(info.st_mode):
            if path == root:
                _save_listing(shadow, _listing(root))
        elif stat.S_ISREG(info.st_mode) and path.parent == root:
            with open(f"/proc/self/fd/{fd}", "rb") as f:
                _save_inode(shadow, info.st_ino, f.read())

    def fsync(fd) -> None:
        fd = fd if isinstance(fd, int) else fd.fileno()
        real_fsync(fd)
        record(fd)

    def fdatasync(fd) -> None:
        fd = fd if isinstance(fd, int) else fd.fileno()
        real_fdatasync(fd)
        record(fd)

    os.fsync, os.fdatasync = fsync, fdatasync
    _installed.update(root=root, shadow=shadow)


def power_loss(root: Path, shadow: Path) -> dict[str, int]:
    """Replace ``root`` by its durable image (the writer must be dead); return name -> bytes kept."""
    root, shadow = Path(root), Path(shadow)
    listing = json.loads((shadow / "dir.json").read_text())
    image = {}
    for name, ino in listing.items():
        saved = shadow / "inodes" / str(ino)
        image[name] = saved.read_bytes() if saved.exists() else b""
    shutil.rmtree(root)
    shutil.rmtree(shadow)
    root.mkdir(mode=0o700)
    for name, data in image.items():
        (root / name).write_bytes(data)
    return {name: len(data) for name, data in image.items()}
