"""Linux capability names, Docker's default set, and the set a container ends up with.

``effective_caps(cap_add, cap_drop, privileged)`` gives the capability numbers the container
process keeps (bounding = permitted = effective = inheritable for root; privileged and
``--cap-add ALL`` mean all of runtimed's own bounding set, which a host or sandbox may limit), and
``cap_mask`` turns them into the 64-bit mask ``init.py`` hands to ``capset``/``PR_CAPBSET_DROP``.
"""

from __future__ import annotations

from agent_runtime.errors import InvalidArgument

CAPABILITIES = {
    "CHOWN": 0, "DAC_OVERRIDE": 1, "DAC_READ_SEARCH": 2, "FOWNER": 3, "FSETID": 4, "KILL": 5,
    "SETGID": 6, "SETUID": 7, "SETPCAP": 8, "LINUX_IMMUTABLE": 9, "NET_BIND_SERVICE": 10,
    "NET_BROADCAST": 11, "NET_ADMIN": 12, "NET_RAW": 13, "IPC_LOCK": 14, "IPC_OWNER": 15,
    "SYS_MODULE": 16, "SYS_RAWIO": 17, "SYS_CHROOT": 18, "SYS_PTRACE": 19, "SYS_PACCT": 20,
    "SYS_ADMIN": 21, "SYS_BOOT": 22, "SYS_NICE": 23, "SYS_RESOURCE": 24, "SYS_TIME": 25,
    "SYS_TTY_CONFIG": 26, "MKNOD": 27, "LEASE": 28, "AUDIT_WRITE": 29, "AUDIT_CONTROL": 30,
    "SETFCAP": 31, "MAC_OVERRIDE": 32, "MAC_ADMIN": 33, "SYSLOG": 34, "WAKE_ALARM": 35,
    "BLOCK_SUSPEND": 36, "AUDIT_READ": 37, "PERFMON": 38, "BPF": 39, "CHECKPOINT_RESTORE": 40,
}

# moby/oci/caps/defaults.go: the 14 capabilities a non-privileged Docker container keeps.
DOCKER_DEFAULT = (
    "CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID", "SETFCAP",
    "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE",
)


def normalize(name: str) -> str:
    """``cap_net_admin``/``NET_ADMIN``/``CAP_NET_ADMIN`` -> ``NET_ADMIN``; ``ALL`` stays ``ALL``."""
    upper = name.strip().upper()
    if upper.startswith("CAP_"):
        upper = upper[4:]
    if upper != "ALL" and upper not in CAPABILITIES:
        raise InvalidArgument(f"unknown capability {name!r}")
    return upper


def effective_caps(cap_add: list[str], cap_drop: list[str], privileged: bool = False,
                   default: tuple[str, ...] = DOCKER_DEFAULT) -> list[int]:
    """Return the sorted capability numbers a container keeps.

    Docker's rules: privileged means all; ``ALL`` in cap_drop starts from nothing; cap_add wins
    over cap_drop for the same name (``--cap-drop ALL --cap-add NET_BIND_SERVICE``).
    """
    if privileged:  # all that runtimed itself may pass on (a host or sandbox may lack some)
        return sorted(n for n in CAPABILITIES.values() if host_bounding() >> n & 1)
    adds = {normalize(c) for c in cap_add}
    drops = {normalize(c) for c in cap_drop}
    kept = set() if "ALL" in drops else set(default) - drops
    if "ALL" in adds:
        return sorted(n for n in CAPABILITIES.values() if host_bounding() >> n & 1)
    else:
        kept |= adds
    return sorted(CAPABILITIES[c] for c in kept)


def cap_mask(numbers: list[int]) -> int:
    """The 64-bit mask with one bit per capability number (CapEff in /proc/PID/status)."""
    mask = 0
    for n in numbers:
        mask |= 1 << n
    return mask


def names(mask: int) -> list[str]:
    """Capability names set in ``mask``, by number."""
    return [name for name, num in sorted(CAPABILITIES.items(), key=lambda kv: kv[1]) if mask >> num & 1]


def host_bounding() -> int:
    """This process's bounding set (CapBnd): the most a container can be given."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapBnd:"):
                    return int(line.split()[1], 16)
    except OSError:
        pass
    return (1 << 64) - 1
