"""What a lab remembers between shoal-lab invocations: `<root>/<name>/lab.json`, guarded by locks.

The record holds only what cannot be derived from the plan: the block of addresses the lab was given,
its size, and the processes it started (PID plus kernel start time, so a recycled PID is never
mistaken for ours). Two flocks keep concurrent invocations apart: `<root>/.lock` while labs are
created or removed (block allocation), `<root>/<name>/.lock` while one lab's record is changed.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import ipaddress
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from shoal.lab.errors import LabError, LabNotFound
from shoal.lab.plan import LabPlan

RECORD_FILE = "lab.json"


@dataclass
class ProcessRecord:
    """A process the lab started: its PID and its start time in clock ticks since boot."""

    pid: int
    starttime: int

    def to_json(self) -> dict:
        return {"pid": self.pid, "starttime": self.starttime}

    @classmethod
    def from_json(cls, data: dict | None) -> "ProcessRecord | None":
        return None if data is None else cls(pid=int(data["pid"]), starttime=int(data["starttime"]))


@dataclass
class HostRecord:
    shoald: ProcessRecord | None = None
    runtimed: ProcessRecord | None = None
    partitioned: bool = False

    def to_json(self) -> dict:
        return {
            "shoald": self.shoald.to_json() if self.shoald else None,
            "runtimed": self.runtimed.to_json() if self.runtimed else None,
            "partitioned": self.partitioned,
        }

    @classmethod
    def from_json(cls, data: dict) -> "HostRecord":
        return cls(
            shoald=ProcessRecord.from_json(data.get("shoald")),
            runtimed=ProcessRecord.from_json(data.get("runtimed")),
            partitioned=bool(data.get("partitioned", False)),
        )


@dataclass
class LabRecord:
    name: str
    network: ipaddress.IPv4Network
    managers: int
    workers: int
    cluster: bool
    runtime: bool = True
    log_level: str | None = None
    registry: ProcessRecord | None = None
    hosts: dict[str, HostRecord] = field(default_factory=dict)

    def plan(self, root: Path) -> LabPlan:
        return LabPlan(self.name, self.network, self.managers, self.workers, root)

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "network": str(self.network),
            "managers": self.managers,
            "workers": self.workers,
            "cluster": self.cluster,
            "runtime": self.runtime,
            "log_level": self.log_level,
            "registry": self.registry.to_json() if self.registry else None,
            "hosts": {name: host.to_json() for name, host in self.hosts.items()},
        }

    @classmethod
    def from_json(cls, data: dict) -> "LabRecord":
        return cls(
            name=data["name"],
            network=ipaddress.IPv4Network(data["network"]),
            managers=int(data["managers"]),
            workers=int(data["workers"]),
            cluster=bool(data["cluster"]),
            runtime=bool(data.get("runtime", True)),
            log_level=data.get("log_level"),
            registry=ProcessRecord.from_json(data.get("registry")),
            hosts={name: HostRecord.from_json(h) for name, h in data.get("hosts", {}).items()},
        )


@contextlib.contextmanager
def _flock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


class LabStore:
    """Reads and writes lab records under one root directory (default /var/lib/shoal-lab)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def record_path(self, name: str) -> Path:
        return self.root / name / RECORD_FILE

    def registry_lock(self) -> contextlib.AbstractContextManager[None]:
        """Held while a lab is created or removed, so two `up`s never take the same block."""
        return _flock(self.root / ".lock")

    def lab_lock(self, name: str) -> contextlib.AbstractContextManager[None]:
        """Held while one lab's record is read, changed and written back."""
        return _flock(self.root / name / ".lock")

    def exists(self, name: str) -> bool:
        return self.record_path(name).exists()

    def load(self, name: str) -> LabRecord:
        """The record of lab `name`; LabNotFound if it is not up, LabError if it is unreadable."""
        path = self.record_path(name)
        try:
            return LabRecord.from_json(json.loads(path.read_text()))
        except FileNotFoundError:
            raise LabNotFound(f"lab {name} is not up (no {path})") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise LabError(f"lab {name}: record {path} is unreadable: {exc}") from exc

    def save(self, record: LabRecord) -> None:
        """Write the record atomically (write a temporary file, then rename over)."""
        path = self.record_path(record.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record.to_json(), indent=2) + "\n")
        os.replace(tmp, path)

    def names(self) -> list[str]:
        """Names of the labs recorded under the root."""
        if not self.root.is_dir():
            return []
        return sorted(p.parent.name for p in self.root.glob(f"*/{RECORD_FILE}"))

    def networks_in_use(self) -> list[ipaddress.IPv4Network]:
        """The address blocks of every recorded lab whose record can be read."""
        used = []
        for name in self.names():
            with contextlib.suppress(LabError):
                used.append(self.load(name).network)
        return used


def replace_host(record: LabRecord, host: str, **changes) -> None:
    """Set fields of one host's record in place, creating the host entry if missing."""
    current = record.hosts.get(host, HostRecord())
    record.hosts[host] = dataclasses.replace(current, **changes)
