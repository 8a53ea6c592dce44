"""The shape of a lab: host names, addresses, namespace names and paths. Pure; no I/O.

Address plan. Every lab lives in 192.0.2.0/24 (TEST-NET-1) and gets its own aligned block of it,
at least a /28, larger only when it has more hosts than a /28 holds:

    block base + 0          network address
    block base + 1          the lab's underlay bridge; the lab registry listens here on :5000
    block base + 2 …        manager1 … managerM, then worker1 … workerW (dense, in that order)
    block last address      broadcast

So the first lab (3 managers, 2 workers) in 192.0.2.0/28 has the registry at 192.0.2.1:5000,
manager1..3 at .2–.4 and worker1..2 at .5–.6; the next lab takes 192.0.2.16/28, and so on: up to
16 labs of up to 13 hosts side by side. Blocks are handed out first-fit from the labs recorded under
the lab root (see `allocate_network`), so a lab keeps its block until `down`.

Names. Lab `N` has the underlay namespace `shoal-N-ul` and one namespace `shoal-N-<host>` per host;
its host `H` has the cgroup parent `shoal-lab-N-H` and its files under `<root>/N/H/`.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from shoal.lab.errors import LabError

LAB_SUPERNET = ipaddress.IPv4Network("192.0.2.0/24")
MIN_BLOCK_PREFIX = 28
REGISTRY_PORT = 5000
SWARM_PORT = 2377
METRICS_PORT = 9323
UNDERLAY_BRIDGE = "br0"
HOST_INTERFACE = "eth0"
DEFAULT_ROOT = Path("/var/lib/shoal-lab")
# sun_path is 108 bytes including the terminating NUL.
_MAX_SOCKET_PATH = 107

_NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,22}[a-z0-9])?$")
_HOST_RE = re.compile(r"^(manager|worker)([1-9][0-9]*)$")


def validate_lab_name(name: str) -> str:
    """Return `name` if it can name a lab (1–24 of a-z, 0-9, '-', not at either end), else raise."""
    if not _NAME_RE.match(name):
        raise LabError(
            f"lab name {name!r} is invalid: use 1-24 characters of a-z, 0-9 and '-', "
            "starting and ending with a letter or digit"
        )
    return name


def netns_name(lab: str, host: str) -> str:
    """The network namespace of `host` in lab `lab` (`ul` is the underlay)."""
    return f"shoal-{lab}-{host}"


def underlay_netns(lab: str) -> str:
    return netns_name(lab, "ul")


def lab_netns_pattern(lab: str) -> re.Pattern[str]:
    """Matches exactly the namespace names lab `lab` can create (not those of a lab named `lab-x`)."""
    return re.compile(rf"^shoal-{re.escape(lab)}-(ul|(manager|worker)[1-9][0-9]*)$")


def cgroup_parent(lab: str, host: str) -> str:
    """The cgroup parent handed to `host`'s shoal-runtimed."""
    return f"shoal-lab-{lab}-{host}"


def lab_cgroup_pattern(lab: str) -> re.Pattern[str]:
    """Matches exactly the cgroup parents of lab `lab`'s hosts."""
    return re.compile(rf"^shoal-lab-{re.escape(lab)}-(manager|worker)[1-9][0-9]*$")


def host_names(managers: int, workers: int) -> list[str]:
    return [f"manager{i}" for i in range(1, managers + 1)] + [f"worker{i}" for i in range(1, workers + 1)]


def block_prefix_for(host_count: int) -> int:
    """The prefix length of the smallest block (at least a /28) holding `host_count` hosts."""
    prefix = MIN_BLOCK_PREFIX
    # network + bridge + hosts + broadcast
    while 2 ** (32 - prefix) < host_count + 3:
        prefix -= 1
        if prefix < LAB_SUPERNET.prefixlen:
            raise LabError(
                f"a lab of {host_count} hosts does not fit in {LAB_SUPERNET} "
                f"(at most {LAB_SUPERNET.num_addresses - 3})"
            )
    return prefix


def allocate_network(used: Iterable[ipaddress.IPv4Network], host_count: int) -> ipaddress.IPv4Network:
    """Return the first block of `LAB_SUPERNET` large enough for `host_count` hosts that overlaps
    none of `used`. Raises LabError naming the blocks in use when none is free."""
    used = list(used)
    prefix = block_prefix_for(host_count)
    for candidate in LAB_SUPERNET.subnets(new_prefix=prefix):
        if not any(candidate.overlaps(other) for other in used):
            return candidate
    in_use = ", ".join(str(n) for n in sorted(used)) or "none"
    raise LabError(
        f"no free /{prefix} left in {LAB_SUPERNET} for a lab of {host_count} hosts "
        f"(blocks in use: {in_use}); bring another lab down first"
    )


REMOTE_API_PORT = 2376   # Docker's port for its API over TLS


@dataclass(frozen=True)
class HostPlan:
    """One lab host: where it lives and what it is called."""

    lab: str
    name: str
    role: str  # "manager" | "worker"
    address: ipaddress.IPv4Address
    prefixlen: int
    directory: Path

    @property
    def netns(self) -> str:
        return netns_name(self.lab, self.name)

    @property
    def underlay_link(self) -> str:
        """The underlay-side end of this host's veth (inside the underlay namespace)."""
        return f"v-{self.name}"

    @property
    def cgroup_parent(self) -> str:
        return cgroup_parent(self.lab, self.name)

    @property
    def state_dir(self) -> Path:
        return self.directory / "state"

    @property
    def runtime_dir(self) -> Path:
        return self.directory / "runtime"

    @property
    def run_dir(self) -> Path:
        return self.directory / "run"

    @property
    def log_dir(self) -> Path:
        return self.directory / "logs"

    @property
    def socket(self) -> Path:
        return self.run_dir / "shoal.sock"

    @property
    def remote_api(self) -> str:
        """shoald's remote API (mutual TLS, shoal.daemon.remote) on this host's underlay address."""
        return f"tcp://{self.address}:{REMOTE_API_PORT}"

    @property
    def docker_socket(self) -> Path:
        return self.run_dir / "docker.sock"

    @property
    def runtime_socket(self) -> Path:
        return self.run_dir / "runtimed.sock"

    @property
    def ui_socket(self) -> Path:
        """The web page's socket (`shoal ui`): shoald's default, ui.sock next to its API socket."""
        return self.run_dir / "ui.sock"

    @property
    def swarm_addr(self) -> str:
        return f"{self.address}:{SWARM_PORT}"

    @property
    def metrics_addr(self) -> str:
        return f"{self.address}:{METRICS_PORT}"


@dataclass(frozen=True)
class LabPlan:
    """Everything about a lab that follows from its name, size, block and root directory."""

    name: str
    network: ipaddress.IPv4Network
    managers: int
    workers: int
    root: Path

    def __post_init__(self) -> None:
        validate_lab_name(self.name)
        if self.managers < 1:
            raise LabError(f"lab {self.name}: needs at least 1 manager, got {self.managers}")
        if self.workers < 0:
            raise LabError(f"lab {self.name}: worker count must not be negative, got {self.workers}")
        if self.network.num_addresses < len(self.host_names) + 3:
            raise LabError(f"lab {self.name}: {self.network} is too small for {len(self.host_names)} hosts")
        longest = max((self.host(h).runtime_socket for h in self.host_names), key=lambda p: len(str(p)))
        if len(str(longest)) > _MAX_SOCKET_PATH:
            raise LabError(f"lab {self.name}: socket path {longest} is longer than a unix socket allows")

    @property
    def directory(self) -> Path:
        return self.root / self.name

    @property
    def underlay_netns(self) -> str:
        return underlay_netns(self.name)

    @property
    def bridge_address(self) -> ipaddress.IPv4Address:
        return self.network.network_address + 1

    @property
    def registry(self) -> str:
        """ADDR:PORT of the lab registry, reachable from every host."""
        return f"{self.bridge_address}:{REGISTRY_PORT}"

    @property
    def registry_dir(self) -> Path:
        return self.directory / "registry"

    @property
    def host_names(self) -> list[str]:
        return host_names(self.managers, self.workers)

    @property
    def hosts(self) -> list[HostPlan]:
        return [self.host(h) for h in self.host_names]

    def host(self, name: str) -> HostPlan:
        """The plan of host `name`; raises LabError if the lab has no such host."""
        match = _HOST_RE.match(name)
        count = {"manager": self.managers, "worker": self.workers}.get(match.group(1)) if match else None
        if match is None or count is None or int(match.group(2)) > count:
            raise LabError(f"lab {self.name} has no host {name!r} (hosts: {', '.join(self.host_names)})")
        role, index = match.group(1), int(match.group(2))
        offset = 1 + index if role == "manager" else 1 + self.managers + index
        return HostPlan(
            lab=self.name,
            name=name,
            role=role,
            address=self.network.network_address + offset,
            prefixlen=self.network.prefixlen,
            directory=self.directory / name,
        )
