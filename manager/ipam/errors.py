"""The allocator's error hierarchy.

Every message names the network and, where there is one, the service, task or node the allocation
was for: the orchestrator copies these messages into task status and `service ps` unchanged.

    AllocatorError
    ├── InvalidNetworkSpec       a malformed subnet or gateway, an unsupported driver, a bad VNI option
    │   └── SubnetOverlap        the requested subnet overlaps another network's subnet
    ├── AddressPoolExhausted     no free subnet left in the default address pools
    ├── VNIExhausted             no free VXLAN network identifier left
    ├── SubnetExhausted          a network has no free address left for a service, task or node
    ├── UnknownNetwork           a service or task names a network the allocator has not allocated
    ├── InvalidEndpoint          a service's endpoint cannot be allocated as specified
    └── NetworkInUse             a network cannot be released while services or tasks hold addresses
"""

from __future__ import annotations


class AllocatorError(Exception):
    """Base class of every error raised by manager.ipam."""


class InvalidNetworkSpec(AllocatorError, ValueError):
    """The network's spec cannot be allocated as written (bad CIDR, gateway outside the subnet, ...)."""


class SubnetOverlap(InvalidNetworkSpec):
    """A requested subnet overlaps a subnet that another network already holds."""


class AddressPoolExhausted(AllocatorError):
    """The default address pools have no free subnet of the cluster's subnet size left."""

    def __init__(self, network_label: str, pools: tuple[str, ...], subnet_size: int) -> None:
        self.network_label = network_label
        self.pools = pools
        self.subnet_size = subnet_size
        super().__init__(
            f"cannot allocate a subnet for {network_label}: the default address pools "
            f"{', '.join(pools)} have no free /{subnet_size} left; remove unused networks, "
            f"give the network an explicit --subnet, or init the swarm with a larger "
            f"--default-addr-pool")


class VNIExhausted(AllocatorError):
    """Every VXLAN network identifier of the overlay range is in use."""


class SubnetExhausted(AllocatorError):
    """A network's subnets have no free address left for the service, task or node named."""

    def __init__(self, network_label: str, owner_label: str, purpose: str,
                 subnets: tuple[str, ...], in_use: int, capacity: int) -> None:
        self.network_label = network_label
        self.owner_label = owner_label
        self.subnets = subnets
        super().__init__(
            f"cannot allocate {purpose} for {owner_label} on {network_label}: "
            f"subnet {', '.join(subnets)} is full ({in_use} of {capacity} addresses in use); "
            f"scale down or remove services on it, or recreate the network with a larger --subnet")


class UnknownNetwork(AllocatorError, LookupError):
    """A service or task refers to a network the allocator does not hold."""


class InvalidEndpoint(AllocatorError, ValueError):
    """A service's endpoint spec cannot be allocated (ingress ports with dnsrr mode, ...)."""


class NetworkInUse(AllocatorError):
    """The network still has services or tasks with addresses on it."""
