"""Netlink work of the data plane through pyroute2: bridges, VXLAN, FDB/neighbours, veths.

Blocking calls: run them on a worker thread (``asyncio.to_thread``), never on the event loop
(a sync ``IPRoute`` runs its own loop). Each function converges one object to what it is told and
is safe to repeat; ``HostLinks`` holds one netlink socket to runtimed's own (the host's) netns.
Recipes: feasibility-netns-images.md sections B and D.
"""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import ndmsg

from agent_runtime.network import netns
from agent_runtime.network.errors import NetworkError
from agent_runtime.network.model import VXLAN_OVERHEAD, Network, NetworkState, mac_from_ip
from agent_runtime.network.plan import (GATEWAY_BRIDGE, VXLAN_PORT, LocalContainer, bridge_name,
                                        gateway_bridge_ip, host_veth, is_veth_of_ours, vni_of_device, vxlan_name,
                                        wanted_veths)

log = logging.getLogger(__name__)
PERMANENT = ndmsg.states["permanent"]


def _nl(what: str, fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except NetlinkError as exc:
        raise NetworkError(f"{what}: {exc.args[1] if len(exc.args) > 1 else exc}") from exc


class HostLinks:
    """Devices in the host netns. Use as a context manager (one netlink socket)."""

    def __init__(self) -> None:
        self.r = IPRoute()

    def __enter__(self) -> "HostLinks":
        return self

    def __exit__(self, *exc) -> None:
        self.r.close()

    # lookups ---------------------------------------------------------------------------
    def index(self, ifname: str) -> int | None:
        found = self.r.link_lookup(ifname=ifname)
        return found[0] if found else None

    def names(self) -> list[str]:
        return [link.get("IFLA_IFNAME") for link in self.r.link("dump")]

    def underlay(self, state: NetworkState) -> tuple[int, int]:
        """(ifindex, mtu) of the underlay device: ``underlay_dev`` or the one holding ``underlay_ip``."""
        if state.underlay_dev:
            index = self.index(state.underlay_dev)
        else:
            index = next((a["index"] for a in self.r.get_addr(family=2)
                          if a.get("IFA_ADDRESS") == state.underlay_ip), None)
        if index is None:
            raise NetworkError(f"underlay: no device {state.underlay_dev or 'with address ' + state.underlay_ip} "
                               "in this network namespace")
        return index, self.r.link("get", index=index)[0].get("IFLA_MTU")

    # overlay networks -----------------------------------------------------------------------
    def ensure_network(self, net: Network, state: NetworkState, mtu: int, underlay_index: int) -> None:
        """Bridge ``shov<VNI>`` (MAC and address from HostGatewayIP, MTU) with ``shvx<VNI>`` enslaved
        (VXLAN, learning off, ARP proxy on, local = UnderlayIP). Recreates what differs."""
        br_name, vx_name = bridge_name(net.vni), vxlan_name(net.vni)
        mac = mac_from_ip(net.host_gateway_ip)
        br = self.index(br_name)
        if br is not None:
            link = self.r.link("get", index=br)[0]
            if link.get("IFLA_ADDRESS") != mac:
                _nl(f"network {net.name}: set bridge MAC", self.r.link, "set", index=br, address=mac)
        else:
            _nl(f"network {net.name}: create bridge {br_name}", self.r.link, "add", ifname=br_name,
                kind="bridge", address=mac, mtu=mtu)
            br = self.index(br_name)
        vx = self.index(vx_name)
        if vx is not None:
            link = self.r.link("get", index=vx)[0]
            data = link.get("IFLA_LINKINFO").get("IFLA_INFO_DATA")
            if (data.get("IFLA_VXLAN_LOCAL") != state.underlay_ip or data.get("IFLA_VXLAN_LEARNING") != 0
                    or data.get("IFLA_VXLAN_PROXY") != 1 or data.get("IFLA_VXLAN_ID") != net.vni):
                log.info("network %s: recreating %s (underlay or flags changed)", net.name, vx_name)
                _nl(f"network {net.name}: delete {vx_name}", self.r.link, "del", index=vx)
                vx = None
        if vx is None:
            _nl(f"network {net.name}: create VXLAN {vx_name} (VNI {net.vni})", self.r.link, "add",
                ifname=vx_name, kind="vxlan", vxlan_id=net.vni, vxlan_port=VXLAN_PORT,
                vxlan_local=state.underlay_ip, vxlan_link=underlay_index, vxlan_learning=0,
                vxlan_proxy=1, mtu=mtu)
            vx = self.index(vx_name)
        for index in (br, vx):
            if self.r.link("get", index=index)[0].get("IFLA_MTU") != mtu:
                _nl(f"network {net.name}: set MTU {mtu}", self.r.link, "set", index=index, mtu=mtu)
        _nl(f"network {net.name}: enslave {vx_name}", self.r.link, "set", index=vx, master=br, state="up")
        self._only_address(br, f"{net.host_gateway_ip}/{net.prefixlen}", f"network {net.name}")
        _nl(f"network {net.name}: bring up {br_name}", self.r.link, "set", index=br, state="up")

    def _only_address(self, index: int, cidr: str, what: str) -> None:
        iface = ipaddress.IPv4Interface(cidr)
        have = {(a.get("IFA_ADDRESS"), a["prefixlen"]) for a in self.r.get_addr(family=2, index=index)}
        for ip, plen in have - {(str(iface.ip), iface.network.prefixlen)}:
            _nl(f"{what}: remove address {ip}/{plen}", self.r.addr, "del", index=index, address=ip, prefixlen=plen)
        if (str(iface.ip), iface.network.prefixlen) not in have:
            _nl(f"{what}: add address {cidr}", self.r.addr, "add", index=index, address=str(iface.ip),
                prefixlen=iface.network.prefixlen)

    def sync_peers(self, net: Network, wanted: set[tuple[str, str, str]]) -> tuple[int, int]:
        """Make the VXLAN's static FDB and neighbour entries exactly ``wanted`` ((ip, mac, underlay)).
        Returns (added, removed)."""
        vx = self.index(vxlan_name(net.vni))
        if vx is None:
            raise NetworkError(f"network {net.name}: VXLAN device {vxlan_name(net.vni)} is missing")
        fdb_want = {(mac, underlay) for _, mac, underlay in wanted}
        neigh_want = {(ip, mac) for ip, mac, _ in wanted}
        fdb_have = {(e.get("NDA_LLADDR"), e.get("NDA_DST")) for e in self.r.fdb("dump")
                    if e["ifindex"] == vx and e.get("NDA_DST")}
        neigh_have = {(e.get("NDA_DST"), e.get("NDA_LLADDR")) for e in self.r.neigh("dump", ifindex=vx)
                      if e["ifindex"] == vx and e["state"] & PERMANENT}
        for mac, dst in fdb_have - fdb_want:
            _nl(f"network {net.name}: delete FDB {mac}", self.r.fdb, "del", ifindex=vx, lladdr=mac, dst=dst,
                flags=ndmsg.NTF_SELF)
        for ip, mac in neigh_have - neigh_want:
            _nl(f"network {net.name}: delete neighbour {ip}", self.r.neigh, "del", ifindex=vx, dst=ip, lladdr=mac)
        for mac, dst in fdb_want - fdb_have:
            _nl(f"network {net.name}: add FDB {mac} via {dst}", self.r.fdb, "append", ifindex=vx, lladdr=mac,
                dst=dst, state=PERMANENT, flags=ndmsg.NTF_SELF)
        for ip, mac in neigh_want - neigh_have:
            _nl(f"network {net.name}: add neighbour {ip}", self.r.neigh, "replace", ifindex=vx, dst=ip,
                lladdr=mac, state=PERMANENT)
        return len(fdb_want - fdb_have) + len(neigh_want - neigh_have), len(fdb_have - fdb_want) + len(
            neigh_have - neigh_want)

    def remove_stale_networks(self, keep_vnis: set[int]) -> list[str]:
        """Delete every ``shov*``/``shvx*`` device whose VNI is not in ``keep_vnis``."""
        removed = []
        for name in self.names():
            vni = vni_of_device(name)
            if vni is not None and vni not in keep_vnis:
                index = self.index(name)
                if index is not None:
                    _nl(f"delete stale device {name}", self.r.link, "del", index=index)
                    removed.append(name)
        return removed

    # gateway bridge --------------------------------------------------------------------------
    def ensure_gateway_bridge(self, state: NetworkState) -> None:
        br = self.index(GATEWAY_BRIDGE)
        if br is None:
            _nl("create the gateway bridge", self.r.link, "add", ifname=GATEWAY_BRIDGE, kind="bridge")
            br = self.index(GATEWAY_BRIDGE)
        self._only_address(br, str(gateway_bridge_ip(state)), "gateway bridge")
        _nl("bring up the gateway bridge", self.r.link, "set", index=br, state="up")
        # a published port reached at 127.0.0.1 is DNATed out of this bridge from a loopback source
        # (masqueraded in postrouting), which the kernel routes only with route_localnet (as dockerd)
        Path(f"/proc/sys/net/ipv4/conf/{GATEWAY_BRIDGE}/route_localnet").write_text("1")

    @staticmethod
    def enable_forwarding() -> None:
        """Routing mesh and egress forward between interfaces: net.ipv4.ip_forward=1 in this netns
        (new namespaces copy it from the initial one, so it is set, never assumed)."""
        Path("/proc/sys/net/ipv4/ip_forward").write_text("1")

    def remove_gateway_bridge(self) -> bool:
        br = self.index(GATEWAY_BRIDGE)
        if br is None:
            return False
        _nl("delete the gateway bridge", self.r.link, "del", index=br)
        return True

    # containers ------------------------------------------------------------------------------
    def attach(self, state: NetworkState, c: LocalContainer, mtus: dict[str, int]) -> None:
        """Give ``c`` (whose netns exists) one veth per endpoint on that network's bridge (hairpin on)
        and, if ``c.gateway_ip``, one on the gateway bridge with the default route. ``mtus`` maps each
        network id, and GATEWAY_BRIDGE, to its MTU. Endpoints already in place are left alone."""
        plan = [(e.host_if, e.ifname, bridge_name(state.network(e.network_id).vni), mtus[e.network_id],
                 f"{e.ip}/{e.prefixlen}", e.mac) for e in c.endpoints]
        gw = gateway_bridge_ip(state)
        if c.gateway_ip:
            ifname = c.egress_interface()
            plan.append((host_veth(c.id, "g"), ifname, GATEWAY_BRIDGE, mtus[GATEWAY_BRIDGE],
                         f"{c.gateway_ip}/{gw.network.prefixlen}", mac_from_ip(c.gateway_ip)))
        present = netns.run_in(c.netns, _link_names)
        todo = []
        for host_if, ifname, bridge, mtu, cidr, mac in plan:
            what = f"container {c.name}: {ifname} on {bridge}"
            master = self.index(bridge)
            if master is None:
                raise NetworkError(f"{what}: bridge {bridge} is missing")
            index = self.index(host_if)
            if index is not None and ifname in present:
                if self.r.link("get", index=index)[0].get("IFLA_MASTER") != master:  # bridge was rebuilt
                    _nl(f"{what}: re-enslave {host_if}", self.r.link, "set", index=index, master=master, state="up")
                    _nl(f"{what}: hairpin on {host_if}", self.r.brport, "set", index=index, mode=1)
                continue
            if index is not None:
                _nl(f"{what}: delete half-made {host_if}", self.r.link, "del", index=index)
            _nl(f"{what}: create veth {host_if}", self.r.link, "add", ifname=host_if, kind="veth", mtu=mtu,
                peer={"ifname": ifname, "net_ns_fd": netns.path(c.netns)})
            index = self.index(host_if)
            _nl(f"{what}: enslave {host_if}", self.r.link, "set", index=index, master=master, state="up")
            _nl(f"{what}: hairpin on {host_if}", self.r.brport, "set", index=index, mode=1)
            todo.append((what, ifname, mtu, cidr, mac, str(gw.ip) if bridge == GATEWAY_BRIDGE else ""))
        if todo:
            netns.run_in(c.netns, lambda: _configure_inside(todo))

    def detach(self, container_id: str) -> list[str]:
        """Delete the host ends of a container's veths (its netns may already be gone)."""
        removed = []
        for name in self.names():
            if is_veth_of_ours(name) and name[3:12] == container_id[:9]:
                index = self.index(name)
                if index is not None:
                    try:
                        self.r.link("del", index=index)
                        removed.append(name)
                    except NetlinkError:  # went with its netns meanwhile
                        pass
        return removed

    def detach_extra(self, c: LocalContainer) -> list[str]:
        """Delete the veths of ``c`` that it no longer has (a network disconnected, egress gone);
        the container's end goes with the host's."""
        wanted = wanted_veths(c)
        removed = []
        for name in self.names():
            if is_veth_of_ours(name) and name[3:12] == c.id[:9] and name not in wanted:
                index = self.index(name)
                if index is not None:
                    try:
                        self.r.link("del", index=index)
                        removed.append(name)
                    except NetlinkError:
                        pass
        return removed

    def stale_veths(self, container_ids: set[str]) -> list[str]:
        """Names of our veths whose container is not in ``container_ids``."""
        prefixes = {cid[:9] for cid in container_ids}
        return [n for n in self.names() if is_veth_of_ours(n) and n[3:12] not in prefixes]


def _link_names() -> set[str]:
    """Interface names of the calling thread's netns (run through ``netns.run_in``)."""
    with IPRoute() as r:
        return {link.get("IFLA_IFNAME") for link in r.link("dump")}


def _configure_inside(todo: list[tuple]) -> None:
    """Inside a container's netns (through ``netns.run_in``): MAC, MTU, address, up, default route.

    pyroute2's own ``IPRoute(netns=...)`` forks a helper per socket, and a forked child of an
    asyncio daemon shares its signal wake-up fd: the helper's SIGTERM reached runtimed's loop as
    its own and stopped it. A thread that joined the netns needs no fork.
    """
    with IPRoute() as r:
        for what, ifname, mtu, cidr, mac, default_gateway in todo:
            index = r.link_lookup(ifname=ifname)[0]
            iface = ipaddress.IPv4Interface(cidr)
            _nl(f"{what}: set MAC/MTU", r.link, "set", index=index, address=mac, mtu=mtu)
            _nl(f"{what}: add address {cidr}", r.addr, "replace", index=index, address=str(iface.ip),
                prefixlen=iface.network.prefixlen)
            _nl(f"{what}: bring up", r.link, "set", index=index, state="up")
            if default_gateway:
                _nl(f"{what}: default route", r.route, "replace", dst="0.0.0.0/0", gateway=default_gateway)


def network_mtu(net: Network, underlay_mtu: int) -> int:
    return net.mtu or underlay_mtu - VXLAN_OVERHEAD
