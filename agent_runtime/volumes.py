"""Named local volumes: ``<root>/<name>/_data`` plus ``<root>/<name>/meta.json`` (Docker's layout).

Volumes are created on first use by a container or explicitly, outlive their containers, and can
only be removed when no container (running or not) refers to them; the container manager tells
the store who uses what through the ``users`` callback.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import stat
import subprocess
import time
from pathlib import Path
from typing import Callable

from agent_runtime.errors import Conflict, InvalidArgument, NotFound, ShoalRuntimeError
from agent_runtime.spec import VolumeInfo

log = logging.getLogger(__name__)

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


# Docker's local driver options, and the ones each requires (moby volume/local)
VALID_OPTIONS = ("type", "o", "device", "size")
REQUIRED_WITH = {"device": ("type",), "type": ("device",), "o": ("device", "type")}


def check_options(options: dict[str, str]) -> None:
    """The local driver's options as dockerd validates them (its error texts)."""
    for key in options:
        if key not in VALID_OPTIONS:
            raise InvalidArgument(f'invalid option: "{key}"')
    if "size" in options:
        raise InvalidArgument("quota size requested but no quota support")
    for key, required in REQUIRED_WITH.items():
        if key in options:
            for other in required:
                if other not in options:
                    raise InvalidArgument(f'missing required option: "{other}"')


def _masked(text: str, options: dict[str, str]) -> str:
    password = next((kv.partition("=")[2] for kv in options.get("o", "").split(",") if kv.startswith("password=")), "")
    return text.replace(f"password={password}", "password=********") if password else text


def is_mountpoint(path: Path | str) -> bool:
    """Whether something is mounted at ``path`` (per /proc/self/mountinfo: os.path.ismount misses
    a bind mount from the same filesystem, and removing the volume would then delete through it)."""
    target = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split(" ")[4]
            if point == target or re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), point) == target:
                return True
    return False


def check_name(name: str) -> None:
    if not NAME_RE.match(name):
        raise InvalidArgument(f"volume name {name!r} is invalid: use [A-Za-z0-9][A-Za-z0-9_.-]*")


class VolumeStore:
    """Named volumes below ``root``. ``users(name)`` lists container names that refer to a volume."""

    def __init__(self, root: Path, users: Callable[[str], list[str]] = lambda name: []) -> None:
        self.root = root
        self.users = users
        root.mkdir(parents=True, exist_ok=True)

    def _meta(self, name: str) -> dict:
        try:
            return json.loads((self.root / name / "meta.json").read_text())
        except FileNotFoundError:
            raise NotFound(f"No such volume: {name}") from None

    def _info(self, name: str) -> VolumeInfo:
        meta = self._meta(name)
        return VolumeInfo(name=name, mountpoint=str(self.root / name / "_data"),
                          created_at=meta.get("CreatedAt", ""), labels=meta.get("Labels", {}),
                          in_use_by=self.users(name), options=meta.get("Options") or {})

    def create(self, name: str, labels: dict[str, str] | None = None,
               options: dict[str, str] | None = None) -> VolumeInfo:
        """Create ``name`` if missing (idempotent, like ``docker volume create``) and return it;
        ``options`` are the local driver's (``check_options``), mounted by ``mount``. An existing
        volume asked for with other options is a Conflict, never silently the old one."""
        check_name(name)
        options = dict(options or {})
        check_options(options)
        vol = self.root / name
        if (vol / "meta.json").exists():
            current = self._info(name).options
            if options and options != current:
                raise Conflict(f"volume {name} already exists with different options "
                               f"({_masked(json.dumps(current, sort_keys=True), current) or 'none'})")
        else:
            (vol / "_data").mkdir(parents=True, exist_ok=True)
            meta = {"CreatedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "Labels": labels or {},
                    "Options": options}
            tmp = vol / "meta.json.tmp"
            tmp.write_text(json.dumps(meta))
            tmp.replace(vol / "meta.json")
            log.info("created volume %s", name)
        return self._info(name)

    def populate(self, name: str, lower_dirs: list[str], target: str) -> bool:
        """Docker's copy-up: an empty volume mounted at ``target`` gets the image's content there
        (the layers in ``lower_dirs``, top first, merged with overlayfs' whiteouts and opaque
        directories); ``volume-nocopy`` skips this. Returns whether anything was copied."""
        data = self.root / name / "_data"
        if any(data.iterdir()):
            return False
        relative = target.strip("/")
        copied = False
        for layer in reversed(lower_dirs):        # bottom first; upper layers win
            source = Path(layer) / relative if relative else Path(layer)
            if os.path.lexists(source) and _whiteout(source):      # deleted in this layer
                for child in list(data.iterdir()):
                    _remove(child)
                continue
            if source.is_symlink() or not source.is_dir():
                continue
            copied = _merge_layer(source, data) or copied
        if copied:
            log.info("filled volume %s from the image's %s", name, target)
        return copied

    def mount(self, name: str) -> str:
        """A volume with options: mount its device at ``_data`` unless mounted (at its first
        container's create and at each start, so a reboot is survived), as dockerd's local driver.
        Returns the volume's mountpoint. Reads only meta.json: not ``inspect``, whose ``in_use_by``
        walks every container, on the way of every start."""
        check_name(name)
        opts = self._meta(name).get("Options") or {}
        mountpoint = str(self.root / name / "_data")
        if not opts or is_mountpoint(mountpoint):
            return mountpoint
        argv = ["mount", "-t", opts["type"]] + (["-o", opts["o"]] if opts.get("o") else []) + \
            [opts["device"], mountpoint]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            raise ShoalRuntimeError(_masked(f"failed to mount local volume {name}: mount {opts['device']}:"
                                            f"{mountpoint}, data: {opts.get('o', '')}: "
                                            f"{proc.stderr.strip() or proc.returncode}", opts))
        log.info("volume %s: mounted %s (%s)", name, opts["device"], opts["type"])
        return mountpoint

    def _unmount(self, name: str) -> None:
        data = self.root / name / "_data"
        while is_mountpoint(data):      # stacked mounts (two runtimed starts racing) all go
            proc = subprocess.run(["umount", str(data)], capture_output=True, text=True, timeout=60)
            if proc.returncode != 0:
                raise ShoalRuntimeError(f"remove volume {name}: unmount {data}: {proc.stderr.strip()}")

    def inspect(self, name: str) -> VolumeInfo:
        check_name(name)
        return self._info(name)

    def list(self) -> list[VolumeInfo]:
        return [self._info(p.name) for p in sorted(self.root.iterdir()) if (p / "meta.json").exists()]

    def remove(self, name: str, force: bool = False) -> None:
        """Delete a volume and its data; Conflict if any container refers to it (even with force)."""
        info = self.inspect(name)
        if info.in_use_by:
            raise Conflict(f"remove volume {name}: volume is in use by {', '.join(info.in_use_by)}")
        self._unmount(name)
        shutil.rmtree(self.root / name)
        log.info("removed volume %s", name)


def _whiteout(path: Path) -> bool:
    st = path.lstat()
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _merge_layer(source: Path, dest: Path) -> bool:
    """Copy one layer's tree into ``dest`` (owners, modes, times, symlinks kept); a whiteout
    removes what lower layers put there, an opaque directory replaces its lower contents."""
    copied = False
    try:
        opaque = os.getxattr(source, "trusted.overlay.opaque") == b"y"
    except OSError:
        opaque = False
    if opaque:
        for child in list(dest.iterdir()):
            _remove(child)
    for entry in sorted(source.iterdir()):
        target = dest / entry.name
        if _whiteout(entry):
            if os.path.lexists(target):
                _remove(target)
            continue
        if entry.is_dir() and not entry.is_symlink():
            if os.path.lexists(target) and not (target.is_dir() and not target.is_symlink()):
                _remove(target)
            target.mkdir(exist_ok=True)
            shutil.copystat(entry, target, follow_symlinks=False)
            st = entry.lstat()
            os.lchown(target, st.st_uid, st.st_gid)
            _merge_layer(entry, target)
        else:
            if os.path.lexists(target):
                _remove(target)
            if entry.is_symlink():
                os.symlink(os.readlink(entry), target)
            else:
                shutil.copy2(entry, target, follow_symlinks=False)
            st = entry.lstat()
            os.lchown(target, st.st_uid, st.st_gid)
        copied = True
    return copied


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()
