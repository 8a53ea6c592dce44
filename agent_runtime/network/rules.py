"""nftables rulesets as text, rendered from the desired state (pure; ``nft.py`` loads them).

Two tables, both ``table ip shoal``, each replaced whole in one atomic ``nft -f`` transaction
(``table ip shoal {}`` + ``delete table ip shoal`` + the new table), in kube-proxy's nftables shape:

In each container's netns (``render_container_table``): service VIPs and DNS.
    output (nat, priority -100): 127.0.0.11:53 -> the resolver's port; ``ip daddr vmap @vips``
    svc-N: ``dnat to numgen random mod K map { i : backend ip }`` over the healthy backends; ports
           are kept, as with Swarm's VIPs; no SNAT: the backend sees the client's address
    filter-output: a VIP that has no healthy backend is refused (TCP reset / ICMP), not black-holed

In the host netns (``render_host_table``): routing mesh, host-mode ports, egress, isolation.
    prerouting/output (nat, -100): ``jump container-ports`` (one-off containers' ``run -p``: DNAT
           to their gateway-bridge address; loopback clients are masqueraded, with route_localnet
           on the gateway bridge), then ``fib daddr type local meta l4proto . th dport vmap @published``
    ing-*: numgen over the endpoint chains; ep-*: ``dnat to backend:target`` on the ingress overlay,
           masqueraded in postrouting (``ct status dnat oifname "shov*"``) so replies come back here;
           local-only and host-mode entries DNAT to the local task's gateway-bridge address instead,
           which needs no SNAT and keeps the client's address
    forward (filter): bridged traffic of a network stays inside it; containers may not hop from the
           gateway bridge to an overlay or to each other; egress leaves masqueraded
    The fence (docs/container-security.md): a container reaches this host only through published
    ports (input: ``to-host``), the cluster's nodes only on published ports (forward: ``egress``,
    ``@nodes`` x ``@published-ports``), and never what runtimed was told to fence (``--fence``:
    the registry, say); a refused connection gets a TCP reset or an ICMP admin-prohibited, so it
    fails at once instead of hanging. Ping stays allowed.
"""

from __future__ import annotations

import ipaddress

from agent_runtime.network.model import Network, NetworkState, Service
from agent_runtime.network.plan import BRIDGE_PREFIX, GATEWAY_BRIDGE, LocalContainer, bridge_name

TABLE = "shoal"
DNS_IP = "127.0.0.11"


def _replace(body: list[str]) -> str:
    """Text that atomically replaces ``table ip shoal`` with ``body`` (chain/map/set lines)."""
    return "\n".join([f"table ip {TABLE} {{}}", f"delete table ip {TABLE}", f"table ip {TABLE} {{",
                      *("  " + line for line in body), "}", ""])


def delete_table() -> str:
    return f"table ip {TABLE} {{}}\ndelete table ip {TABLE}\n"


def _elements(items: list[str]) -> str:
    return "{ " + ", ".join(items) + " }"


def container_vips(state: NetworkState, container: LocalContainer) -> list[tuple[str, list[str]]]:
    """(vip, healthy backend ips) for each VIP-mode service VIP on a network of ``container``,
    in a stable order."""
    nets = set(container.network_ids())
    out = []
    for s in sorted(state.services, key=lambda s: s.id):
        if s.endpoint_mode != "vip":
            continue
        for vip in s.virtual_ips:
            if vip.network_id in nets:
                ips = sorted({b.ip_on(vip.network_id) for b in s.healthy()} - {""})
                out.append((vip.ip, ips))
    return out


def render_container_table(state: NetworkState, container: LocalContainer) -> str:
    """The ruleset of one container's netns (see the module docstring)."""
    body = []
    vips = container_vips(state, container)
    live = [(vip, ips) for vip, ips in vips if ips]
    dead = [vip for vip, ips in vips if not ips]
    if live:
        body.append("map vips { type ipv4_addr : verdict; elements = "
                    + _elements([f"{vip} : goto svc-{i}" for i, (vip, _) in enumerate(live)]) + " }")
    if dead:
        body.append("set dead-vips { type ipv4_addr; elements = " + _elements(dead) + " }")
    out = ["chain output {", "  type nat hook output priority -100; policy accept;"]
    if container.dns_port:
        for proto in ("udp", "tcp"):
            out.append(f"  ip daddr {DNS_IP} {proto} dport 53 dnat to {DNS_IP}:{container.dns_port}")
    if live:
        out.append("  ip daddr vmap @vips")
    body += out + ["}"]
    for i, (_, ips) in enumerate(live):
        if len(ips) == 1:
            body.append(f"chain svc-{i} {{ dnat to {ips[0]}; }}")
        else:
            body.append(f"chain svc-{i} {{ dnat to numgen random mod {len(ips)} map "
                        + _elements([f"{j} : {ip}" for j, ip in enumerate(ips)]) + "; }")
    if dead:
        body += ["chain filter-output {", "  type filter hook output priority 0; policy accept;",
                 "  ip daddr @dead-vips meta l4proto tcp reject with tcp reset",
                 "  ip daddr @dead-vips reject", "}"]
    return _replace(body)


def _published_targets(state: NetworkState, service: Service, port, ingress: Network | None,
                       local_by_ip: dict[tuple[str, str], LocalContainer]) -> tuple[list[str], bool]:
    """(["ip:port", ...], masquerade?) for one published port of ``service`` on this host."""
    healthy = service.healthy()
    if port.publish_mode == "ingress" and not service.local_only:
        if ingress is None:
            return [], True
        return sorted({f"{b.ip_on(ingress.id)}:{port.target_port}" for b in healthy if b.ip_on(ingress.id)}), True
    targets = set()
    for b in healthy:
        if b.node_ip != state.underlay_ip:
            continue
        for net_id in b.addresses:
            c = local_by_ip.get((net_id, b.ip_on(net_id)))
            if c is not None and c.gateway_ip:
                targets.add(f"{c.gateway_ip}:{port.target_port}")
                break
    return sorted(targets), False


def container_port_rules(containers: list[LocalContainer]) -> list[str]:
    """The DNAT rules of one-off containers' published ports (``run -p``): to the container's
    gateway-bridge address, from any local address (127.0.0.1 too, as Docker) or from the one
    given. The client's address is kept (no SNAT), except a loopback one."""
    rules = []
    for c in sorted(containers, key=lambda c: c.id):
        if not c.gateway_ip:
            continue
        for p in c.ports:
            match = f"ip daddr {p.host_ip}" if p.host_ip and p.host_ip != "0.0.0.0" else "fib daddr type local"
            rules.append(f"{match} meta l4proto {p.protocol} th dport {p.host_port} "
                         f"dnat to {c.gateway_ip}:{p.container_port}")
    return rules


def parse_fence(entries: list[str]) -> list[tuple[str, int | None]]:
    """``IP`` or ``IP:PORT`` entries of runtimed's ``--fence`` -> (ip, port or None); ValueError
    naming a bad one."""
    out = []
    for entry in entries:
        host, sep, port = entry.rpartition(":") if ":" in entry else (entry, "", "")
        try:
            ip = str(ipaddress.IPv4Address(host))
        except ValueError:
            raise ValueError(f"--fence {entry!r}: not an IPv4 address or ADDRESS:PORT") from None
        if sep and not (port.isdigit() and 0 < int(port) < 65536):
            raise ValueError(f"--fence {entry!r}: {port!r} is not a port number")
        out.append((ip, int(port) if sep else None))
    return out


def _fence(state: NetworkState, fenced: list[tuple[str, int | None]]) -> list[str]:
    """Sets and chains of the fence (see the module docstring); ``forward`` jumps to ``egress``,
    ``input`` to ``to-host``, for traffic that comes in from a container's interface."""
    nodes = sorted({ip for ip in [state.underlay_ip, *state.node_ips, *(p.underlay_ip for p in state.peers)]
                    if ip and ip != "0.0.0.0"}, key=ipaddress.IPv4Address)
    ports = sorted({f"{p.protocol} . {p.published_port}" for s in state.services for p in s.ports})
    hosts = sorted({ip for ip, port in fenced if port is None})
    endpoints = sorted({f"{ip} . {proto} . {port}" for ip, port in fenced if port is not None
                        for proto in ("tcp", "udp")})
    body = []
    for name, kind, items in (("nodes", "ipv4_addr", nodes), ("published-ports", "inet_proto . inet_service", ports),
                              ("fenced-hosts", "ipv4_addr", hosts),
                              ("fenced-endpoints", "ipv4_addr . inet_proto . inet_service", endpoints)):
        body.append(f"set {name} {{ type {kind};" + (f" elements = {_elements(items)};" if items else "") + " }")
    # counted, so `nft list chain ip shoal refuse` shows how often containers hit the fence
    refuse = ["meta l4proto tcp counter reject with tcp reset", "counter reject with icmp type admin-prohibited"]
    body += ["chain refuse {", *("  " + r for r in refuse), "}",
             "chain to-host {", "  ct state established,related accept", "  ct status dnat accept",
             "  icmp type echo-request accept", "  goto refuse", "}",
             "chain egress {", "  ip daddr @fenced-hosts goto refuse",
             "  ip daddr . meta l4proto . th dport @fenced-endpoints goto refuse",
             "  icmp type echo-request return",
             "  ip daddr @nodes meta l4proto . th dport @published-ports return",
             "  ip daddr @nodes goto refuse", "}",
             "chain input {", "  type filter hook input priority 0; policy accept;",
             f'  iifname "{BRIDGE_PREFIX}*" jump to-host', f'  iifname "{GATEWAY_BRIDGE}" jump to-host', "}"]
    return body


def render_host_table(state: NetworkState, containers: list[LocalContainer], active: list[Network],
                      fenced: list[tuple[str, int | None]] | None = None) -> str:
    """The host netns ruleset (see the module docstring); ``fenced`` from ``parse_fence``."""
    ingress = state.ingress_network()
    if ingress is not None and ingress.id not in {n.id for n in active}:
        ingress = None
    local_by_ip = {(e.network_id, e.ip): c for c in containers for e in c.endpoints}
    published, chains = [], []
    for si, s in enumerate(sorted(state.services, key=lambda s: s.id)):
        for pi, p in enumerate(s.ports):
            targets, masq = _published_targets(state, s, p, ingress, local_by_ip)
            if not targets:
                continue
            name = f"pub-{si}-{pi}"
            published.append(f"{p.protocol} . {p.published_port} : goto {name}")
            eps = [f"ep-{si}-{pi}-{ti}" for ti in range(len(targets))]
            if len(eps) == 1:
                chains.append(f"chain {name} {{ goto {eps[0]}; }}")
            else:
                chains.append(f"chain {name} {{ numgen random mod {len(eps)} vmap "
                              + _elements([f"{i} : goto {ep}" for i, ep in enumerate(eps)]) + "; }")
            for ep, target in zip(eps, targets):
                chains.append(f"chain {ep} {{ meta l4proto {p.protocol} dnat to {target}; }}")
    body = []
    ports = container_port_rules(containers)
    if published:
        body.append("map published { type inet_proto . inet_service : verdict; elements = "
                    + _elements(published) + " }")
    if published or ports:
        jump = ["  jump container-ports"] if ports else []
        vmap = ["fib daddr type local meta l4proto . th dport vmap @published"] if published else []
        body += ["chain prerouting {", "  type nat hook prerouting priority -100; policy accept;", *jump,
                 *("  " + v for v in vmap), "}",
                 "chain output {", "  type nat hook output priority -100; policy accept;", *jump,
                 *("  ip daddr != 127.0.0.0/8 " + v for v in vmap), "}"]
    if ports:
        body += ["chain container-ports {", *("  " + r for r in ports), "}"]
    body += chains
    body += ["chain postrouting {", "  type nat hook postrouting priority 100; policy accept;",
             f'  ct status dnat oifname "{BRIDGE_PREFIX}*" masquerade',
             f'  ip saddr 127.0.0.0/8 oifname "{GATEWAY_BRIDGE}" masquerade',
             f'  ip saddr {state.gateway_bridge_subnet} oifname != "{GATEWAY_BRIDGE}" masquerade', "}"]
    body += ["chain forward {", "  type filter hook forward priority 0; policy accept;",
             "  ct state established,related accept"]
    for n in active:  # with br_netfilter, bridged frames show up here with iif = oif = the bridge
        body.append(f'  iifname "{bridge_name(n.vni)}" oifname "{bridge_name(n.vni)}" accept')
    body += ["  ct status dnat accept",
             f'  iifname "{GATEWAY_BRIDGE}" jump egress',
             f'  iifname "{BRIDGE_PREFIX}*" drop',
             f'  iifname "{GATEWAY_BRIDGE}" oifname "{GATEWAY_BRIDGE}" drop',
             f'  iifname "{GATEWAY_BRIDGE}" oifname "{BRIDGE_PREFIX}*" drop', "}"]
    body += _fence(state, fenced or [])
    return _replace(body)
