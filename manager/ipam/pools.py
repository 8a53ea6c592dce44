"""Cluster-wide subnet bookkeeping: which IPv4 subnets networks hold, and carving new ones.

A `SubnetPool` records every subnet held by a network (whether carved from the default address
pools or given with `--subnet`) as a disjoint, sorted set of address intervals, so an overlap check
is one binary search. New subnets are carved from the default pools (Docker's defaults:
10.0.0.0/8 in /24s) lowest address first, skipping whatever overlaps a held subnet.

Pure bookkeeping: no I/O, not thread-safe; the allocator's owner calls it from one loop.
"""

from __future__ import annotations

import bisect
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from manager.ipam.errors import AddressPoolExhausted, InvalidNetworkSpec, SubnetOverlap

DEFAULT_ADDR_POOLS: tuple[str, ...] = ("10.0.0.0/8",)
DEFAULT_SUBNET_SIZE = 24
# The smallest subnet worth carving: network, broadcast, gateway and at least 5 addresses.
MAX_SUBNET_SIZE = 29


def parse_subnet(text: str, what: str) -> ipaddress.IPv4Network:
    """Parse an IPv4 CIDR strictly; raise InvalidNetworkSpec naming `what` on any problem.

    Host bits must be clear ("10.0.1.0/24", not "10.0.1.5/24") and the prefix must leave room
    for hosts (/30 or shorter).
    """
    try:
        subnet = ipaddress.ip_network(text.strip(), strict=False)
    except ValueError as exc:
        raise InvalidNetworkSpec(f"{what}: {text!r} is not a valid CIDR subnet") from exc
    if subnet.version != 4:
        raise InvalidNetworkSpec(f"{what}: {text!r}: IPv6 subnets are not supported")
    if "/" not in text:
        raise InvalidNetworkSpec(f"{what}: {text!r} has no prefix length (write e.g. {subnet})")
    if str(subnet) != text.strip():
        raise InvalidNetworkSpec(
            f"{what}: {text!r} has host bits set; did you mean {subnet}?")
    if subnet.prefixlen > 30:
        raise InvalidNetworkSpec(f"{what}: {text!r} is too small to hold any container address")
    return subnet  # type: ignore[return-value]


@dataclass(frozen=True)
class _Held:
    start: int
    end: int
    owner_label: str
    subnet: ipaddress.IPv4Network


class SubnetPool:
    """Held subnets of every network, and the default pools new subnets are carved from.

    Invariant: held subnets never overlap one another.
    """

    def __init__(self, pools: Sequence[str] = DEFAULT_ADDR_POOLS,
                 subnet_size: int = DEFAULT_SUBNET_SIZE) -> None:
        """Validate the default pools and subnet size (Docker's `--default-addr-pool` and
        `--default-addr-pool-mask-length`); raise InvalidNetworkSpec when they are unusable."""
        pool_texts = tuple(pools) or DEFAULT_ADDR_POOLS
        size = subnet_size or DEFAULT_SUBNET_SIZE
        parsed = [parse_subnet(p, "default address pool") for p in pool_texts]
        for pool in parsed:
            if not pool.prefixlen <= size <= MAX_SUBNET_SIZE:
                raise InvalidNetworkSpec(
                    f"default address pool mask length /{size} must be between the pool's own "
                    f"/{pool.prefixlen} and /{MAX_SUBNET_SIZE} (pool {pool})")
        for i, a in enumerate(parsed):
            for b in parsed[i + 1:]:
                if a.overlaps(b):
                    raise InvalidNetworkSpec(f"default address pools {a} and {b} overlap")
        self.pools: tuple[str, ...] = tuple(str(p) for p in parsed)
        self.subnet_size = size
        self._pools = parsed
        self._starts: list[int] = []
        self._held: list[_Held] = []

    # ---- queries -------------------------------------------------------------------------------

    def overlapping(self, subnet: ipaddress.IPv4Network) -> str | None:
        """The label of the holder of a subnet overlapping `subnet`, or None when it is free."""
        held = self._overlap(int(subnet.network_address), int(subnet.broadcast_address))
        return held.owner_label if held else None

    def held(self) -> list[ipaddress.IPv4Network]:
        """Every held subnet, lowest first."""
        return [h.subnet for h in self._held]

    # ---- changes -------------------------------------------------------------------------------

    def reserve(self, subnet: ipaddress.IPv4Network, owner_label: str) -> None:
        """Record `subnet` as held by `owner_label`; raise SubnetOverlap naming the other holder."""
        start, end = int(subnet.network_address), int(subnet.broadcast_address)
        other = self._overlap(start, end)
        if other is not None:
            raise SubnetOverlap(
                f"subnet {subnet} for {owner_label} overlaps subnet {other.subnet} of "
                f"{other.owner_label}")
        i = bisect.bisect_left(self._starts, start)
        self._starts.insert(i, start)
        self._held.insert(i, _Held(start, end, owner_label, subnet))

    def carve(self, owner_label: str) -> ipaddress.IPv4Network:
        """Take the lowest free /subnet_size from the default pools for `owner_label`.

        Raises AddressPoolExhausted (state unchanged) when every candidate overlaps a held subnet.
        """
        block = 1 << (32 - self.subnet_size)
        for pool in self._pools:
            candidate = int(pool.network_address)
            last = int(pool.broadcast_address)
            while candidate + block - 1 <= last:
                other = self._overlap(candidate, candidate + block - 1)
                if other is None:
                    subnet = ipaddress.IPv4Network((candidate, self.subnet_size))
                    self.reserve(subnet, owner_label)
                    return subnet
                # Jump past the holder, to the next aligned block.
                candidate = ((other.end + 1 + block - 1) // block) * block
        raise AddressPoolExhausted(owner_label, self.pools, self.subnet_size)

    def release(self, subnets: Iterable[ipaddress.IPv4Network]) -> None:
        """Forget the given held subnets; subnets not held are ignored."""
        for subnet in subnets:
            start = int(subnet.network_address)
            i = bisect.bisect_left(self._starts, start)
            if i < len(self._starts) and self._starts[i] == start and self._held[i].subnet == subnet:
                del self._starts[i]
                del self._held[i]

    def clear(self) -> None:
        """Forget every held subnet (the pools stay)."""
        self._starts.clear()
        self._held.clear()

    def _overlap(self, start: int, end: int) -> _Held | None:
        # Held intervals are disjoint and sorted, so only the last one starting at or before
        # `end` can reach back to `start`.
        i = bisect.bisect_right(self._starts, end) - 1
        if i >= 0 and self._held[i].end >= start:
            return self._held[i]
        return None
