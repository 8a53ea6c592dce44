"""CPU controller: quota/period from Docker's NanoCpus, and shares/weight.

Pure conversions, tested as tables: ``quota_us(nano_cpus)`` with a 100 ms period (``--cpus 0.5``
-> 50000/100000), ``shares_to_weight`` as runc converts v1 shares [2, 262144] to v2 weight
[1, 10000].
"""

from __future__ import annotations

PERIOD_US = 100_000
MIN_QUOTA_US = 1_000


def quota_us(nano_cpus: int, period_us: int = PERIOD_US) -> int:
    """CFS quota for ``nano_cpus`` (1e9 = one CPU); 0 means unlimited. Never below 1 ms."""
    if nano_cpus <= 0:
        return 0
    return max(MIN_QUOTA_US, nano_cpus * period_us // 1_000_000_000)


def shares_to_weight(shares: int) -> int:
    """runc's mapping of cpu.shares to cpu.weight; 0 (unset) gives 0 (leave the default)."""
    if shares <= 0:
        return 0
    shares = min(max(shares, 2), 262144)
    return 1 + ((shares - 2) * 9999) // 262142


def writes_v1(nano_cpus: int, shares: int) -> list[tuple[str, str]]:
    out = []
    if nano_cpus:
        out += [("cpu.cfs_period_us", str(PERIOD_US)), ("cpu.cfs_quota_us", str(quota_us(nano_cpus)))]
    if shares:
        out.append(("cpu.shares", str(min(max(shares, 2), 262144))))
    return out


def writes_v2(nano_cpus: int, shares: int) -> list[tuple[str, str]]:
    out = []
    if nano_cpus:
        out.append(("cpu.max", f"{quota_us(nano_cpus)} {PERIOD_US}"))
    if shares:
        out.append(("cpu.weight", str(shares_to_weight(shares))))
    return out
