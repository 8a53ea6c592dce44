"""The lab's wires: an underlay namespace holding a bridge, and one namespace per host plugged into it.

Built with iproute2 as measured in feasibility-netns-images.md §A: each host's veth pair is created
inside the underlay namespace with its peer born directly inside the host namespace, so nothing of
the lab ever appears in the root namespace. Per-namespace sysctls are written from a short-lived
thread that has joined the namespace (`setns(CLONE_NEWNET)` only changes the calling thread, and
/proc/sys/net answers for the namespace of the thread that opens it).
"""
from __future__ import annotations

import ctypes
import logging
import os
import subprocess
import threading
from pathlib import Path
from typing import Callable, TypeVar

from shoal.lab.errors import CommandFailed, LabError
from shoal.lab.plan import HOST_INTERFACE, UNDERLAY_BRIDGE, HostPlan, LabPlan

logger = logging.getLogger(__name__)

CLONE_NEWNET = 0x40000000
NETNS_DIR = Path("/run/netns")

# Sysctls set explicitly in every host namespace, not inherited from whatever the root namespace
# has: overlay bridges and service VIPs forward between interfaces, and the VIP/SNAT design in
# the overlay data plane (docs/architecture.md, "Networking") relies on bridged traffic passing
# through netfilter (br_netfilter).
HOST_SYSCTLS = {
    "net/ipv4/ip_forward": "1",
    "net/bridge/bridge-nf-call-iptables": "1",
}
# The underlay bridge is a plain switch: no forwarding between namespaces, no netfilter on it.
UNDERLAY_SYSCTLS = {
    "net/ipv4/ip_forward": "0",
    "net/bridge/bridge-nf-call-iptables": "0",
}

T = TypeVar("T")
_libc = ctypes.CDLL(None, use_errno=True)


def ip(*args: str, netns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `ip [-n NETNS] ARGS`; raise CommandFailed naming the command if it fails and `check`."""
    argv = ["ip", *(["-n", netns] if netns else []), *args]
    proc = subprocess.run(argv, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise CommandFailed(
            f"{' '.join(argv)} failed: {proc.stderr.strip()}", proc.returncode, proc.stdout, proc.stderr
        )
    return proc


def run_in_netns(netns: str, fn: Callable[[], T]) -> T:
    """Call `fn` on a fresh thread that has joined network namespace `netns`; return its result or
    re-raise its exception. Sockets `fn` opens stay in that namespace. Other threads are unaffected."""
    result: dict[str, object] = {}

    def target() -> None:
        try:
            fd = os.open(NETNS_DIR / netns, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            result["error"] = LabError(f"network namespace {netns} does not exist")
            return
        try:
            if _libc.setns(fd, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                result["error"] = LabError(f"setns into {netns} failed: {os.strerror(err)}")
                return
        finally:
            os.close(fd)
        try:
            result["value"] = fn()
        except BaseException as exc:  # re-raised on the caller's thread
            result["error"] = exc

    thread = threading.Thread(target=target, name=f"netns-{netns}")
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]  # type: ignore[misc]
    return result["value"]  # type: ignore[return-value]


def set_sysctls(netns: str, values: dict[str, str]) -> None:
    """Write each /proc/sys/KEY = VALUE inside `netns`. Bridge keys are skipped when the kernel has no
    br_netfilter (then bridged traffic bypasses netfilter anyway)."""

    def write() -> None:
        for key, value in values.items():
            path = Path("/proc/sys") / key
            if key.startswith("net/bridge/") and not path.exists():
                logger.debug("%s: no %s (br_netfilter not loaded); skipped", netns, key)
                continue
            path.write_text(value)

    run_in_netns(netns, write)


def list_netns() -> list[str]:
    """Names of the named network namespaces (entries of /run/netns)."""
    try:
        return sorted(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return []


def netns_pids(netns: str) -> list[int]:
    """PIDs of every process inside `netns` (as `ip netns pids`); empty if it is gone."""
    proc = ip("netns", "pids", netns, check=False)
    return [int(p) for p in proc.stdout.split()] if proc.returncode == 0 else []


def delete_netns(netns: str) -> None:
    """Remove the name `netns` (the namespace itself ends when its last process does)."""
    if netns in list_netns():
        ip("netns", "del", netns)


def add_netns(netns: str) -> None:
    if netns in list_netns():
        raise LabError(f"network namespace {netns} already exists; is another lab using it? "
                       "(`shoal-lab down` of that lab removes it)")
    ip("netns", "add", netns)
    ip("link", "set", "lo", "up", netns=netns)


def build_underlay(plan: LabPlan) -> None:
    """Create the underlay namespace with its bridge, which carries the lab's first address."""
    ns = plan.underlay_netns
    add_netns(ns)
    set_sysctls(ns, UNDERLAY_SYSCTLS)
    ip("link", "add", UNDERLAY_BRIDGE, "type", "bridge", netns=ns)
    ip("addr", "add", f"{plan.bridge_address}/{plan.network.prefixlen}", "dev", UNDERLAY_BRIDGE, netns=ns)
    ip("link", "set", UNDERLAY_BRIDGE, "up", netns=ns)


def build_host(plan: LabPlan, host: HostPlan) -> None:
    """Create `host`'s namespace and plug it into the underlay bridge as HOST_INTERFACE."""
    ul = plan.underlay_netns
    add_netns(host.netns)
    set_sysctls(host.netns, HOST_SYSCTLS)
    ip("link", "add", host.underlay_link, "type", "veth",
       "peer", "name", HOST_INTERFACE, "netns", host.netns, netns=ul)
    ip("link", "set", host.underlay_link, "master", UNDERLAY_BRIDGE, "up", netns=ul)
    ip("addr", "add", f"{host.address}/{host.prefixlen}", "dev", HOST_INTERFACE, netns=host.netns)
    ip("link", "set", HOST_INTERFACE, "up", netns=host.netns)


def set_underlay_link(plan: LabPlan, host: HostPlan, up: bool) -> None:
    """Connect (`up`) or cut (`not up`) `host` from the underlay by setting the bridge-side end of its
    veth up or down. A cut host keeps its address and sockets; its packets are silently dropped, as
    with a pulled cable."""
    ip("link", "set", host.underlay_link, "up" if up else "down", netns=plan.underlay_netns)
