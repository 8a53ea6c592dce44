"""Memory controller: limit, reservation (soft limit) and no swap, for both cgroup versions.

Pure: ``writes_v1``/``writes_v2`` return the (file, value) pairs to write, in order. Docker maps
``--memory`` to the hard limit, ``--memory-reservation`` to the soft limit (v1) / ``memory.low``
(v2). We give containers no swap (memsw = memory in v1, ``memory.swap.max`` = 0 in v2) so a
memory limit means what it says on hosts with swap too.
"""

from __future__ import annotations

V1_UNLIMITED = "-1"


def writes_v1(memory_bytes: int, reservation_bytes: int, has_memsw: bool) -> list[tuple[str, str]]:
    """v1 files: the limit must be set before memsw (memsw >= limit is enforced by the kernel)."""
    out = []
    if memory_bytes:
        out.append(("memory.limit_in_bytes", str(memory_bytes)))
        if has_memsw:
            out.append(("memory.memsw.limit_in_bytes", str(memory_bytes)))
    if reservation_bytes:
        out.append(("memory.soft_limit_in_bytes", str(reservation_bytes)))
    return out


def writes_v2(memory_bytes: int, reservation_bytes: int, has_swap: bool) -> list[tuple[str, str]]:
    out = []
    if memory_bytes:
        out.append(("memory.max", str(memory_bytes)))
        if has_swap:
            out.append(("memory.swap.max", "0"))
    if reservation_bytes:
        out.append(("memory.low", str(reservation_bytes)))
    return out


def parse_flat_keyed(text: str) -> dict[str, int]:
    """Parse ``key value`` lines (memory.stat, memory.events, oom_control, cpu.stat)."""
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            out[key] = int(value)
    return out


def parse_limit(text: str) -> int:
    """``max`` or a huge v1 value (>= 2**62) -> 0 (unlimited), else the number of bytes."""
    text = text.strip()
    if text == "max":
        return 0
    value = int(text)
    return 0 if value >= 1 << 62 else value
