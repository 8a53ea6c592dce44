"""Named network namespaces and work inside them (iproute2 for names, ctypes setns for sockets).

Names live in /run/netns, which is machine-wide: several lab hosts on one machine share it, so
callers pass names that carry their runtime id (see ``plan.netns_name``). runtimed must share the
mount namespace in which /run/netns is a shared mount: start it with ``nsenter --net=...`` (as
shoal-lab does) or directly, not with ``ip netns exec``, whose private mount namespace hides the
names it makes from every other process and from the next runtimed.
"""

from __future__ import annotations

import ctypes
import logging
import os
import socket
import subprocess
import threading
from pathlib import Path
from typing import Callable, TypeVar

from agent_runtime.network.errors import NetworkError

log = logging.getLogger(__name__)

NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000
T = TypeVar("T")
_libc = ctypes.CDLL(None, use_errno=True)


def path(name: str) -> str:
    return str(NETNS_DIR / name)


def exists(name: str) -> bool:
    """True when /run/netns/NAME is a mounted namespace (not a leftover empty file)."""
    try:
        return os.stat(path(name)).st_dev != os.stat(NETNS_DIR).st_dev
    except FileNotFoundError:
        return False


def list_names(prefix: str) -> list[str]:
    try:
        return sorted(n for n in os.listdir(NETNS_DIR) if n.startswith(prefix))
    except FileNotFoundError:
        return []


def _ip(*args: str) -> None:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise NetworkError(f"ip {' '.join(args)}: {proc.stderr.strip() or proc.returncode}")


def create(name: str) -> None:
    """Create netns ``name`` with loopback up; a leftover of the same name is replaced."""
    if os.path.exists(path(name)):
        delete(name)
    _ip("netns", "add", name)
    try:
        _ip("-n", name, "link", "set", "lo", "up")
    except NetworkError:
        delete(name)
        raise


def delete(name: str) -> None:
    """Remove the name (the namespace ends with its last process). Missing names are fine."""
    if not os.path.lexists(path(name)):
        return
    if exists(name):
        _ip("netns", "del", name)
    else:  # an unmounted leftover file
        os.unlink(path(name))


def run_in(name: str, fn: Callable[[], T]) -> T:
    """Call ``fn`` on a short-lived thread that joined netns ``name``; return its result or raise.

    Only that thread changes namespace, so sockets ``fn`` creates belong to ``name`` for good and
    the caller's thread (the event loop) never moves. Blocks the caller for the thread's lifetime.
    """
    result: dict = {}

    def target() -> None:
        try:
            fd = os.open(path(name), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            result["error"] = NetworkError(f"network namespace {name} does not exist")
            return
        try:
            if _libc.setns(fd, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                result["error"] = NetworkError(f"setns into {name}: {os.strerror(err)}")
                return
        finally:
            os.close(fd)
        try:
            result["value"] = fn()
        except BaseException as exc:  # handed to the caller
            result["error"] = exc

    thread = threading.Thread(target=target, name=f"netns-{name}")
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["value"]


def bound_sockets(name: str, ip: str) -> tuple[socket.socket, socket.socket]:
    """A UDP socket and a listening TCP socket on ``ip`` and one free port inside netns ``name``,
    both non-blocking. Used for the DNS resolver at 127.0.0.11 of each container."""

    def make() -> tuple[socket.socket, socket.socket]:
        for _ in range(20):
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.bind((ip, 0))
            port = udp.getsockname()[1]
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                tcp.bind((ip, port))
            except OSError:
                udp.close()
                tcp.close()
                continue
            tcp.listen(64)
            for s in (udp, tcp):
                s.setblocking(False)
                s.set_inheritable(False)
            return udp, tcp
        raise NetworkError(f"no free port for the DNS resolver in {name}")

    return run_in(name, make)


def mount_namespace_is_private() -> bool:
    """True when this process runs in a slave copy of the mount tree (as under ``ip netns exec``),
    where netns names it creates are invisible to others and lost when it exits."""
    try:
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            fields = line.split(" - ")[0].split()
            if fields[4] == "/":
                optional = fields[6:]
                return any(o.startswith("master:") for o in optional) and not any(
                    o.startswith("shared:") for o in optional)
    except OSError:
        pass
    return False
