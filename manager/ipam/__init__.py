"""IPAM for the manager: subnets and VNIs for overlay networks, VIPs for services, IPs for tasks
and per-node host gateway IPs. Pure bookkeeping over protobuf objects; no I/O. The allocator
component (manager/allocator) runs it over the store; the ControlAPI dry-runs it to refuse a
network at create time.

Exports:
    NetworkAllocator, AllocationSnapshot, RestoreReport, task_holds_addresses, is_attachment
    ingress_network, INGRESS_NETWORK_NAME
    DEFAULT_ADDR_POOLS, DEFAULT_SUBNET_SIZE, VNI_MIN, VNI_MAX
    the errors: AllocatorError, InvalidNetworkSpec, SubnetOverlap, AddressPoolExhausted,
    VNIExhausted, SubnetExhausted, UnknownNetwork, InvalidEndpoint, NetworkInUse
"""

from manager.ipam.errors import (
    AddressPoolExhausted, AllocatorError, InvalidEndpoint, InvalidNetworkSpec, NetworkInUse,
    SubnetExhausted, SubnetOverlap, UnknownNetwork, VNIExhausted,
)
from manager.ipam.ingress import INGRESS_NETWORK_NAME, ingress_network
from manager.ipam.network import (
    AllocationSnapshot, NetworkAllocator, RestoreReport, is_attachment, task_holds_addresses,
)
from manager.ipam.pools import DEFAULT_ADDR_POOLS, DEFAULT_SUBNET_SIZE
from manager.ipam.vni import VNI_MAX, VNI_MIN

__all__ = [
    "AddressPoolExhausted", "AllocationSnapshot", "AllocatorError", "DEFAULT_ADDR_POOLS",
    "DEFAULT_SUBNET_SIZE", "INGRESS_NETWORK_NAME", "InvalidEndpoint", "InvalidNetworkSpec",
    "NetworkAllocator", "NetworkInUse", "RestoreReport", "SubnetExhausted", "SubnetOverlap",
    "UnknownNetwork", "VNIExhausted", "VNI_MAX", "VNI_MIN", "ingress_network", "is_attachment",
    "task_holds_addresses",
]
