"""devices controller (v1 only): runc's default allow list for unprivileged containers.

cgroup v2 controls devices with an eBPF program, which this runtime does not load; on v2 the
container manager drops CAP_MKNOD instead (see ``Cgroup.restricts_devices``).
"""

from __future__ import annotations

DEFAULT_ALLOW = (
    "c *:* m", "b *:* m",  # mknod of anything, but no access unless allowed below
    "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm",  # null zero full random urandom
    "c 5:0 rwm", "c 5:1 rwm", "c 5:2 rwm", "c 136:* rwm",  # tty console ptmx pts/*
    "c 10:200 rwm",  # tun
)


def writes_v1(privileged: bool) -> list[tuple[str, str]]:
    if privileged:
        return []
    return [("devices.deny", "a")] + [("devices.allow", rule) for rule in DEFAULT_ALLOW]
