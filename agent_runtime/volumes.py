"""Named local volumes: ``<root>/<name>/_data`` plus ``<root>/<name>/meta.json`` (Docker's layout).

Volumes are created on first use by a container or explicitly, outlive their containers, and can
only be removed when no container (running or not) refers to them; the container manager tells
the store who uses what through the ``users`` callback.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
from pathlib import Path
from typing import Callable

from agent_runtime.errors import Conflict, InvalidArgument, NotFound
from agent_runtime.spec import VolumeInfo

log = logging.getLogger(__name__)

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def check_name(name: str) -> None:
    if not NAME_RE.match(name):
        raise InvalidArgument(f"volume name {name!r} is invalid: use [A-Za-z0-9][A-Za-z0-9_.-]*")


class VolumeStore:
    """Named volumes below ``root``. ``users(name)`` lists container names that refer to a volume."""

    def __init__(self, root: Path, users: Callable[[str], list[str]] = lambda name: []) -> None:
        self.root = root
        self.users = users
        root.mkdir(parents=True, exist_ok=True)

    def _info(self, name: str) -> VolumeInfo:
        meta_path = self.root / name / "meta.json"
        try:
            meta = json.loads(meta_path.read_text())
        except FileNotFoundError:
            raise NotFound(f"No such volume: {name}") from None
        return VolumeInfo(name=name, mountpoint=str(self.root / name / "_data"),
                          created_at=meta.get("CreatedAt", ""), labels=meta.get("Labels", {}),
                          in_use_by=self.users(name))

    def create(self, name: str, labels: dict[str, str] | None = None) -> VolumeInfo:
        """Create ``name`` if missing (idempotent, like ``docker volume create``) and return it."""
        check_name(name)
        vol = self.root / name
        if not (vol / "meta.json").exists():
            (vol / "_data").mkdir(parents=True, exist_ok=True)
            meta = {"CreatedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "Labels": labels or {}}
            tmp = vol / "meta.json.tmp"
            tmp.write_text(json.dumps(meta))
            tmp.replace(vol / "meta.json")
            log.info("created volume %s", name)
        return self._info(name)

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
        shutil.rmtree(self.root / name)
        log.info("removed volume %s", name)
