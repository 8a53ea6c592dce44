"""Shoal's per-host overlay data plane (issue 5): VXLAN networks, service VIPs, routing mesh, DNS.

Exports the desired-state model (``NetworkState`` and its parts, pure data the worker sends with
``RuntimeClient.network_sync``) and ``NetworkDataplane``, which runtimed uses to converge the
kernel to it. Modules: model (state + validation), plan (names, pure decisions), rules (nftables
text), links (pyroute2), netns (names, setns), nft (loading rules), dataplane (the converge loop),
attach (containers joining their netns). The resolver is ``agent_runtime.dns``.
"""

from agent_runtime.network.model import (Backend, EncryptionKey, Network, NetworkState, Peer, PortConfig, Service,
                                         VirtualIP, mac_from_ip, validate_state)

__all__ = ["Backend", "EncryptionKey", "Network", "NetworkState", "Peer", "PortConfig", "Service", "VirtualIP",
           "mac_from_ip", "validate_state"]
