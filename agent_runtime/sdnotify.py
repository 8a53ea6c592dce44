"""systemd's readiness protocol (sd_notify(3)) without libsystemd: one datagram to $NOTIFY_SOCKET.

The units in deploy/systemd are `Type=notify`: systemd starts the next unit only once the daemon
sent `READY=1`, i.e. once its socket answers. Outside systemd (a lab, a shell) NOTIFY_SOCKET is
unset and every call does nothing. Shared by shoald and shoal-runtimed; imports nothing of ours.
"""
from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


def notify(*assignments: str) -> bool:
    """Send `KEY=VALUE` lines (e.g. "READY=1", "STATUS=serving") to systemd; False if not under it."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):              # an abstract socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto("\n".join(assignments).encode(), address)
        return True
    except OSError as exc:                     # systemd gone or a stale variable: say so, go on
        log.warning("sd_notify to %s failed: %s", os.environ.get("NOTIFY_SOCKET"), exc)
        return False


def ready(status: str) -> bool:
    return notify("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")


def stopping(status: str = "stopping") -> bool:
    return notify("STOPPING=1", f"STATUS={status}")
