"""A runtime network state and local containers for tests of agent_runtime/network."""

from __future__ import annotations

from agent_runtime.api import Backend, Network, NetworkAttachment, NetworkState, Peer, PortConfig, Service, VirtualIP
from agent_runtime.network.plan import LocalContainer, endpoints_for


def make_state(**kw) -> NetworkState:
    nets = [Network(id="ing", name="ingress", vni=4096, subnet="198.18.0.0/24", host_gateway_ip="198.18.0.241",
                    ingress=True),
            Network(id="front", name="front", vni=4097, subnet="198.18.1.0/24", host_gateway_ip="198.18.1.241"),
            Network(id="priv", name="priv", vni=4098, subnet="198.18.3.0/24", host_gateway_ip="198.18.3.241",
                    internal=True)]
    web = Service(id="s1", name="shop_web", aliases=["web"],
                  virtual_ips=[VirtualIP("front", "198.18.1.100/24")],
                  ports=[PortConfig(target_port=80, published_port=8080)],
                  backends=[Backend("t1", "192.0.2.11", {"front": "198.18.1.11", "ing": "198.18.0.11"}),
                            Backend("t2", "192.0.2.12", {"front": "198.18.1.21"}, healthy=False)])
    fields = dict(underlay_ip="192.0.2.11", gateway_bridge_subnet="198.19.200.0/24", networks=nets,
                  peers=[Peer("front", "198.18.1.21", "192.0.2.12"), Peer("front", "198.18.1.242", "192.0.2.12"),
                         Peer("front", "198.18.1.12", "192.0.2.11")],
                  services=[web])
    fields.update(kw)
    return NetworkState(**fields)


def local(cid: str, *attachments: NetworkAttachment) -> LocalContainer:
    return LocalContainer(id=cid, name=cid, hostname=cid, netns=f"ns-{cid}",
                          endpoints=endpoints_for(cid, list(attachments)))
