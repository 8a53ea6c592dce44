"""Addresses inside one subnet of one network: service VIPs, task IPs, per-node host IPs.

The network address, the broadcast address and the gateway are never handed out. Allocation is
serial, as Swarm's IPAM does for overlays: the search starts just after the last address handed
out and wraps, so an address released a moment ago (still in some client's ARP, conntrack or DNS
cache) is reused only after every other free address. A restored allocator starts after the
highest address in use.

Pure bookkeeping: no I/O, not thread-safe.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Literal

OwnerKind = Literal["service", "task", "node"]


@dataclass(frozen=True)
class Owner:
    """Who holds an address. Identity is (kind, id); `label` is only for messages."""

    kind: OwnerKind
    id: str
    label: str = field(default="", compare=False, hash=False)

    def describe(self) -> str:
        """"task web.2 (k3j...)" — the text error messages use."""
        if self.label and self.label != self.id:
            return f"{self.kind} {self.label} ({self.id})"
        return f"{self.kind} {self.id}"


class AddressError(Exception):
    """An address cannot be reserved: outside the subnet, reserved, or held by another owner.

    Internal to the allocator, which turns it into a conflict (restore) or a new allocation.
    """


class SubnetAddresses:
    """The address book of one subnet: who holds which host address."""

    def __init__(self, subnet: ipaddress.IPv4Network, gateway: ipaddress.IPv4Address) -> None:
        """`gateway` must be a host address of `subnet` (the caller has validated it)."""
        self.subnet = subnet
        self.gateway = gateway
        self._first = int(subnet.network_address) + 1
        self._last = int(subnet.broadcast_address) - 1
        self._gateway = int(gateway)
        self._held: dict[int, Owner] = {}
        self._cursor = self._first

    @property
    def capacity(self) -> int:
        """How many addresses can be handed out at all (hosts minus the gateway)."""
        return self._last - self._first + 1 - (1 if self._first <= self._gateway <= self._last else 0)

    @property
    def in_use(self) -> int:
        """How many addresses are held."""
        return len(self._held)

    def contains(self, address: ipaddress.IPv4Address) -> bool:
        """Whether `address` lies in this subnet (reserved addresses included)."""
        return address in self.subnet

    def allocate(self, owner: Owner) -> ipaddress.IPv4Address | None:
        """Hold and return the next free address after the cursor, or None when the subnet is full."""
        if len(self._held) >= self.capacity:
            return None
        candidate = self._cursor
        span = self._last - self._first + 1
        for _ in range(span):
            if candidate > self._last:
                candidate = self._first
            if candidate != self._gateway and candidate not in self._held:
                self._held[candidate] = owner
                self._cursor = candidate + 1
                return ipaddress.IPv4Address(candidate)
            candidate += 1
        return None

    def reserve(self, address: ipaddress.IPv4Address, owner: Owner) -> None:
        """Hold a specific address for `owner` (idempotent for the same owner).

        Raises AddressError if it is outside the subnet, the network/broadcast/gateway address,
        or held by someone else. Moves the cursor past it if it is beyond the cursor.
        """
        value = int(address)
        if not self._first <= value <= self._last:
            raise AddressError(f"{address} is not a host address of {self.subnet}")
        if value == self._gateway:
            raise AddressError(f"{address} is the gateway of {self.subnet}")
        holder = self._held.get(value)
        if holder is not None and holder != owner:
            raise AddressError(f"{address} is already held by {holder.describe()}")
        self._held[value] = owner
        if value >= self._cursor:
            self._cursor = value + 1

    def release(self, address: ipaddress.IPv4Address, owner: Owner | None = None) -> bool:
        """Free `address` if held (and, when `owner` is given, held by that owner); say if it was."""
        value = int(address)
        holder = self._held.get(value)
        if holder is None or (owner is not None and holder != owner):
            return False
        del self._held[value]
        return True

    def holders(self) -> dict[ipaddress.IPv4Address, Owner]:
        """A copy of the held addresses and their owners."""
        return {ipaddress.IPv4Address(v): o for v, o in self._held.items()}

    def free_addresses(self) -> frozenset[ipaddress.IPv4Address]:
        """Every address that could be handed out now. Enumerates the subnet: for tests and small
        subnets only."""
        return frozenset(
            ipaddress.IPv4Address(v) for v in range(self._first, self._last + 1)
            if v != self._gateway and v not in self._held)
