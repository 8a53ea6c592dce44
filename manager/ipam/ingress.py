"""The cluster's default `ingress` network, which carries routing-mesh traffic for published ports.

Docker creates it at `swarm init` with no explicit subnet, so it takes the first subnet of the
default address pools: 10.0.0.0/24 with Docker's default pool 10.0.0.0/8, 198.18.0.0/24 in Shoal's
labs (which init with `--default-addr-pool 198.18.0.0/15`). Allocate it before any other network to
keep that. `docker network create --ingress --subnet ...` replaces it with an explicit subnet.
"""

from __future__ import annotations

from manager.ipam.network import OVERLAY_DRIVER
from proto import objects_pb2

INGRESS_NETWORK_NAME = "ingress"


def ingress_network(name: str = INGRESS_NETWORK_NAME, subnet: str = "",
                    gateway: str = "") -> objects_pb2.NetworkSpec:
    """The spec of the cluster's ingress network: an overlay with `ingress` set.

    With no `subnet` the allocator carves the first free subnet of the default pools; a given
    `subnet`/`gateway` is validated by `NetworkAllocator.allocate_network` like any user subnet.
    """
    spec = objects_pb2.NetworkSpec(driver=OVERLAY_DRIVER, ingress=True)
    spec.annotations.name = name
    if subnet or gateway:
        spec.ipam.add(subnet=subnet, gateway=gateway)
    return spec
