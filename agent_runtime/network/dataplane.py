"""``NetworkDataplane``: converges this host's overlay data plane to the last ``NetworkState``.

One per runtimed, used from its event loop; every change runs under one asyncio lock and ends
in ``_converge``, which rebuilds everything from two inputs: the last synced state (persisted in
``<root>/network/state.json``, so a restarted runtimed converges before the worker's next sync)
and the local containers that have overlay attachments (from the container manager). Steps:

1. links (pyroute2, on a worker thread): bridge + VXLAN per live network, static FDB/neighbour
   entries per remote peer, the gateway bridge while any container needs egress, each container's
   netns and veths; devices, veths and netns names of ours that nothing wants are deleted;
2. DNS: resolver sockets in each container's netns, then the record table;
3. nftables: the host table (with the fence that keeps containers off this host, the cluster's
   nodes and runtimed's ``--fence`` addresses: see ``rules``), then each container's table, each one atomic ``nft -f`` transaction,
   skipped when its text did not change since the last apply (but all re-loaded by a sync at
   least once a minute).

A sync whose change the netlink pass does not depend on (services: VIPs, backends, ports, names)
skips step 1 and reuses its last result, unless that pass is a minute old: step 1 costs a pass
over every local container (netlink dumps decoded by pyroute2), about 4 s with 32 containers on
a host under load 10, and every node waited that long before a stopped task's backend left its
VIPs and routing mesh (docs/rolling-upgrades.md). Creating, changing and removing a container,
a start and ``ensure`` always run it.

A failed kernel step raises NetworkError from the sync (HTTP 500) with the state already saved:
the next sync, or runtimed's next start, converges again from the top.

Encrypted networks need IPsec ESP; runtimed probes once (an xfrm state in a scratch netns). Where
the kernel lacks it (CONFIG_INET_ESP, rfc4106(gcm(aes))), an encrypted network is never built
(nothing goes out in clear) and attaching a container to it is refused with the reason.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import subprocess
import time
from dataclasses import replace
from pathlib import Path

from agent_runtime import dns
from agent_runtime.container_record import EXITED, write_json_atomic
from agent_runtime.network import netns, nft, rules
from agent_runtime.network.errors import Conflict, InvalidArgument, NetworkError
from agent_runtime.network.links import HostLinks, network_mtu
from agent_runtime.network.model import Network, NetworkState, validate_state
from agent_runtime.network.plan import (GATEWAY_BRIDGE, NETNS_PREFIX, LocalContainer, active_networks,
                                        allocate_gateway_ip, bridge_name, endpoints_for, free_host_port,
                                        free_interface, needs_egress, neighbours, netns_name, port_in_use, port_key,
                                        ports_clash, runtime_id, vxlan_name)

log = logging.getLogger(__name__)

# A sync re-loads every nft table at least this often, even when its text did not change, so a
# table flushed by hand comes back (kube-proxy's periodic full sync).
FULL_APPLY_PERIOD = 60.0
ESP_MISSING = ("this kernel cannot do IPsec ESP (CONFIG_INET_ESP is not set; AEAD rfc4106(gcm(aes)) needs "
               "CONFIG_CRYPTO_GCM), so encrypted overlays are refused rather than sent in clear")


def probe_esp(scratch_netns: str) -> str:
    """"" if an ESP transport-mode state with AES-GCM can be installed here, else the reason."""
    try:
        netns.create(scratch_netns)
        proc = subprocess.run(
            ["ip", "-n", scratch_netns, "xfrm", "state", "add", "src", "192.0.2.1", "dst", "192.0.2.2",
             "proto", "esp", "spi", "0x100", "reqid", "1", "mode", "transport", "aead", "rfc4106(gcm(aes))",
             "0x" + "11" * 20, "128"], capture_output=True, text=True)
    except NetworkError as exc:
        return f"cannot probe ESP support: {exc}"
    finally:
        netns.delete(scratch_netns)
    return "" if proc.returncode == 0 else f"{ESP_MISSING} (ip xfrm: {proc.stderr.strip()})"


class NetworkDataplane:
    """See the module docstring. ``root`` is runtimed's --root."""

    def __init__(self, root: Path, fence: tuple[str, ...] = ()) -> None:
        self.fence = rules.parse_fence(list(fence))   # ValueError names a bad entry
        self.dir = root / "network"
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.rid = runtime_id(root)
        self.state: NetworkState | None = None
        self.gateway_ips: dict[str, str] = {}
        self.gateway_ifs: dict[str, str] = {}   # egress interface pinned by a connect or disconnect
        self.containers: dict[str, LocalContainer] = {}
        self.records: dict[str, object] = {}  # id -> the container manager's Container (its live state)
        self.resolver = dns.Resolver()
        self.lock = asyncio.Lock()
        self.applied: dict[str, str] = {}     # "" (host) or netns name -> ruleset text last loaded
        self.full_apply_at = 0.0
        # the netlink pass's inputs, result and errors, when the last one succeeded (see the docstring)
        self._links_inputs: tuple | None = None
        self._links_result: tuple[set[str], list[str]] = (set(), [])
        self.esp_error: str | None = None     # None: not probed yet
        self.errors: list[str] = []
        if netns.mount_namespace_is_private():
            log.warning("runtimed runs in a private mount namespace (ip netns exec?): container netns "
                        "names it makes are invisible to other processes and lost when it exits; "
                        "start it with nsenter --net=... instead")

    # persistence -------------------------------------------------------------------------
    def _load(self) -> None:
        path = self.dir / "state.json"
        if path.exists():
            data = json.loads(path.read_text())
            self.state = NetworkState.from_json(data["State"]) if data.get("State") else None
            self.gateway_ips = dict(data.get("GatewayIPs") or {})
            self.gateway_ifs = dict(data.get("GatewayInterfaces") or {})

    def _save(self) -> None:
        write_json_atomic(self.dir / "state.json", {
            "State": self.state.to_json() if self.state else None, "GatewayIPs": self.gateway_ips,
            "GatewayInterfaces": self.gateway_ifs})

    # container view ------------------------------------------------------------------------
    def _local(self, c) -> LocalContainer:
        return LocalContainer(id=c.id, name=c.name, hostname=c.process.hostname,
                              netns=netns_name(self.rid, c.id), endpoints=endpoints_for(c.id, c.spec.networks),
                              dns=tuple(c.spec.dns), dns_search=tuple(c.spec.dns_search),
                              dns_options=tuple(c.spec.dns_options), extra_hosts=tuple(c.spec.extra_hosts),
                              ports=tuple(c.spec.ports))

    def netns_path(self, container_id: str) -> str:
        return netns.path(netns_name(self.rid, container_id))

    def files_dir(self, container_id: str) -> Path:
        return self.dir / "containers" / container_id

    def mount_ops(self, container_id: str) -> list[dict]:
        """Bind mounts of the container's resolv.conf and hosts, as ``mounts.plan_mounts`` operations."""
        ops = []
        for target, name in (("/etc/resolv.conf", "resolv.conf"), ("/etc/hosts", "hosts")):
            source = self.files_dir(container_id) / name
            if source.exists():
                ops.append({"kind": "mount", "source": str(source), "target": target, "fstype": "",
                            "flags": ["bind", "rec"], "data": "", "mkdir": "file"})
        return ops

    def _taken_ports(self, container_id: str) -> list:
        """The host ports other containers publish, and the swarm's published ports."""
        taken = [p for other in self.containers.values() if other.id != container_id for p in other.ports]
        if self.state is not None:
            from types import SimpleNamespace
            taken += [SimpleNamespace(host_ip="", protocol=p.protocol, host_port=p.published_port)
                      for svc in self.state.services for p in svc.ports]
        return taken

    def _assign_ports(self, c) -> None:
        """Give each of ``c``'s bindings without a host port a free one (stored in its config)."""
        if not any(p.host_port == 0 for p in c.spec.ports):
            return
        taken = self._taken_ports(c.id) + [p for p in c.spec.ports if p.host_port]
        for p in c.spec.ports:
            if p.host_port == 0:
                try:
                    p.host_port = free_host_port(p.protocol, p.host_ip, taken)
                except ValueError as exc:
                    raise Conflict(f"container {c.name}: {exc}") from None
                taken.append(p)
        c.save_config()

    def _check_ports(self, lc: LocalContainer) -> None:
        if lc.ports and not lc.gateway_ip:
            raise InvalidArgument(f"container {lc.name}: cannot publish ports: it is only on internal networks "
                                  "(no egress through the gateway bridge)")
        old = self.containers.get(lc.id)
        for p in lc.ports:
            if any(ports_clash(p, t) for t in self._taken_ports(lc.id)):
                ip, _, port = port_key(p)
                raise Conflict(f"driver failed programming external connectivity on endpoint {lc.name}: "
                               f"Bind for {ip}:{port} failed: port is already allocated")
            held = "" if old is not None and p in old.ports else port_in_use(p.protocol, p.host_ip, p.host_port)
            if held:
                raise Conflict(f"driver failed programming external connectivity on endpoint {lc.name}: "
                               f"Error starting userland proxy: {held}")

    def _check_attachable(self, lc: LocalContainer) -> None:
        if self.state is None:
            if not lc.endpoints:
                raise InvalidArgument(f"container {lc.name}: cannot publish ports yet: this node has no network "
                                      "state from shoald (ports are published through the gateway bridge of a "
                                      "swarm node: join or init a swarm)")
            raise InvalidArgument(f"container {lc.name}: no network state yet; network_sync before "
                                  "creating containers with Networks")
        for e in lc.endpoints:
            net = self.state.network(e.network_id)
            if net is None:
                raise InvalidArgument(f"container {lc.name}: network {e.network_id} is not in this host's "
                                      "network state (network_sync it first)")
            if e.prefixlen != net.prefixlen or not net.subnet or e.ip == net.host_gateway_ip:
                raise InvalidArgument(f"container {lc.name}: address {e.ip}/{e.prefixlen} does not fit network "
                                      f"{net.name} ({net.subnet}, host gateway {net.host_gateway_ip})")
            if net.encrypted and self.esp_error:
                raise Conflict(f"container {lc.name}: cannot attach to encrypted network {net.name}: {self.esp_error}")
            peer = next((p for p in self.state.peers if p.network_id == e.network_id and p.ip == e.ip), None)
            if peer is not None:
                raise Conflict(f"container {lc.name}: address {e.ip} on network {net.name} belongs to an endpoint "
                               f"on host {peer.underlay_ip}")
            for other in self.containers.values():
                if other.id != lc.id and any(o.network_id == e.network_id and o.ip == e.ip for o in other.endpoints):
                    raise Conflict(f"container {lc.name}: address {e.ip} on network {net.name} is used by "
                                   f"container {other.name}")

    # public operations -----------------------------------------------------------------------
    async def start(self, containers) -> None:
        """Load the persisted state, adopt the containers that have Networks, and converge."""
        self._load()
        for c in containers:
            if c.on_overlay():
                self.records[c.id] = c
                lc = self._local(c)
                lc.gateway_ip = self.gateway_ips.get(c.id, "")
                lc.gateway_if = self.gateway_ifs.get(c.id, "")
                self.containers[c.id] = lc
        async with self.lock:
            await self._probe_if_needed()
            try:
                await self._converge()
            except NetworkError as exc:
                log.error("network data plane: converging at start failed: %s", exc)

    async def sync(self, state: NetworkState) -> dict:
        """Validate ``state`` (InvalidArgument leaves everything as it was), make it the desired
        state, converge, and report what is live. Safe to repeat with the same state."""
        validate_state(state)
        started = time.monotonic()
        async with self.lock:
            self.state = state
            self._save()
            full = time.monotonic() - self.full_apply_at > FULL_APPLY_PERIOD
            if full:
                self.applied.clear()
                self.full_apply_at = time.monotonic()
            await self._probe_if_needed()
            await self._converge(links_may_skip=not full)
            return self._report(time.monotonic() - started)

    async def attach(self, c) -> None:
        """Build the netns, veths, files and rules of newly created container ``c``; on failure
        undo them and raise (the caller removes the container)."""
        async with self.lock:
            if self.state is not None:
                self._assign_ports(c)
            lc = self._local(c)
            self._check_attachable(lc)
            if needs_egress(self.state, lc.network_ids(), bool(lc.ports)):
                lc.gateway_ip = allocate_gateway_ip(self.state, set(self.gateway_ips.values()))
            self._check_ports(lc)
            if lc.gateway_ip:
                self.gateway_ips[c.id] = lc.gateway_ip
            self.containers[c.id] = lc
            self.records[c.id] = c
            dns.container_files(self.files_dir(c.id), lc)
            try:
                self._save()
                await self._converge()
            except BaseException:
                await self._forget(c.id)
                try:
                    await self._converge()
                except NetworkError as exc:
                    log.warning("container %s: cleanup after a failed attach: %s", c.name, exc)
                raise

    def interfaces(self, container_id: str) -> set[str]:
        """The interface names container ``container_id`` uses now (its endpoints' and egress)."""
        lc = self.containers.get(container_id)
        if lc is None:
            return set()
        return {e.ifname for e in lc.endpoints} | ({lc.egress_interface()} if lc.gateway_ip else set())

    def network_of(self, ref: str) -> str:
        """The ID of the network ``ref`` names (ID, name or ID prefix) in the synced state, else ``ref``."""
        nets = self.state.networks if self.state else []
        for match in (lambda n: n.id == ref, lambda n: n.name == ref, lambda n: n.id.startswith(ref)):
            found = [n for n in nets if match(n)]
            if len(found) == 1:
                return found[0].id
        return ref

    async def update(self, c) -> None:
        """Re-read the networks of container ``c`` (already on the data plane) after a connect or a
        disconnect changed ``c.spec.networks``: interfaces, egress, hosts file, DNS and rules. The
        other interfaces keep their names. On failure the previous view is restored and the error
        raised (the caller restores the spec)."""
        async with self.lock:
            old = self.containers.get(c.id)
            if old is None:
                raise NetworkError(f"container {c.name}: not on this host's overlay data plane")
            lc = self._local(c)
            if old.gateway_ip:
                lc.gateway_ip, lc.gateway_if = old.gateway_ip, old.egress_interface()
            if self.state is None or not needs_egress(self.state, lc.network_ids(), bool(lc.ports)):
                lc.gateway_ip = lc.gateway_if = ""
            elif not lc.gateway_ip:
                lc.gateway_ip = allocate_gateway_ip(self.state, set(self.gateway_ips.values()))
                lc.gateway_if = free_interface({e.ifname for e in lc.endpoints})
            self._check_attachable(lc)
            self._check_ports(lc)
            lc.dns_port = old.dns_port
            self._remember(c, lc)
            dns.container_files(self.files_dir(c.id), lc)
            try:
                self._save()
                await self._converge()
            except BaseException:
                self._remember(c, old)
                dns.container_files(self.files_dir(c.id), old)
                self._save()
                try:
                    await self._converge()
                except NetworkError as exc:
                    log.warning("container %s: restoring its networks after a failed change: %s", c.name, exc)
                raise

    def _remember(self, c, lc: LocalContainer) -> None:
        self.containers[c.id] = lc
        self.records[c.id] = c
        for table, value in ((self.gateway_ips, lc.gateway_ip), (self.gateway_ifs, lc.gateway_if)):
            if value:
                table[c.id] = value
            else:
                table.pop(c.id, None)

    async def ensure(self, c) -> None:
        """Before a start: make sure ``c``'s netns and veths exist (rebuilt if something removed them)."""
        async with self.lock:
            lc = self.containers.get(c.id)
            if lc is None:
                raise NetworkError(f"container {c.name}: has Networks but no network attachment here")
            if not netns.exists(lc.netns) or lc.id not in self.resolver.listeners:
                await self._converge()

    async def detach(self, container_id: str) -> None:
        """Forget a removed container: its netns, veths, files, DNS sockets and rules go."""
        async with self.lock:
            if container_id not in self.containers:
                return
            await self._forget(container_id)
            self._save()
            await self._converge()

    async def close(self) -> None:
        """Stop serving DNS (runtimed is exiting); the kernel state stays for the next runtimed."""
        await self.resolver.close_all()

    def inspect(self) -> dict:
        """The desired state and what this host holds for it (``GET /network``)."""
        active = active_networks(self.state, list(self.containers.values())) if self.state else []
        return {"State": self.state.to_json() if self.state else None,
                "Networks": [self._network_report(n) for n in active],
                "Containers": [{"ID": c.id, "Name": c.name, "Netns": c.netns, "GatewayIP": c.gateway_ip,
                                "DNSPort": c.dns_port,
                                "Endpoints": [{"NetworkID": e.network_id, "IP": e.ip, "MacAddress": e.mac,
                                               "Interface": e.ifname, "HostInterface": e.host_if}
                                              for e in c.endpoints]}
                               for c in sorted(self.containers.values(), key=lambda c: c.id)],
                "Errors": list(self.errors)}

    # internals ------------------------------------------------------------------------------
    async def _forget(self, container_id: str) -> None:
        lc = self.containers.pop(container_id, None)
        self.records.pop(container_id, None)
        self.gateway_ips.pop(container_id, None)
        self.gateway_ifs.pop(container_id, None)
        await self.resolver.close(container_id)
        shutil.rmtree(self.files_dir(container_id), ignore_errors=True)
        if lc is not None:
            self.applied.pop(lc.netns, None)
            await asyncio.to_thread(self._unlink_container, lc)

    def _exited(self, container_id: str) -> bool:
        record = self.records.get(container_id)
        return record is not None and record.state.status == EXITED

    @staticmethod
    def _unlink_container(lc: LocalContainer) -> None:
        with HostLinks() as links:
            links.detach(lc.id)
        netns.delete(lc.netns)

    async def _probe_if_needed(self) -> None:
        if self.esp_error is None and self.state and any(n.encrypted for n in self.state.networks):
            self.esp_error = await asyncio.to_thread(probe_esp, f"{NETNS_PREFIX}{self.rid}-esp-probe")
            if self.esp_error:
                log.warning("%s", self.esp_error)

    def _network_report(self, n: Network) -> dict:
        peers = len([p for p in self.state.peers if p.network_id == n.id and p.underlay_ip != self.state.underlay_ip])
        return {"ID": n.id, "Name": n.name, "VNI": n.vni, "Bridge": bridge_name(n.vni),
                "VXLAN": vxlan_name(n.vni), "Peers": peers}

    def _report(self, seconds: float) -> dict:
        report = self.inspect()
        report.pop("State")
        report["DurationMs"] = round(seconds * 1000, 1)
        return report

    async def _converge(self, links_may_skip: bool = False) -> None:
        """Make the kernel match (state, containers); see the module docstring. Call under the lock.
        ``links_may_skip``: reuse the last netlink pass if nothing it depends on changed."""
        state = self.state or NetworkState(underlay_ip="0.0.0.0")
        containers = list(self.containers.values())
        self.errors = []
        active = active_networks(state, containers) if self.state else []
        if self.esp_error:
            for n in [n for n in active if n.encrypted]:
                self.errors.append(f"network {n.name}: not built: {self.esp_error}")
            active = [n for n in active if not n.encrypted]
        inputs = (replace(state, services=[]), tuple(n.id for n in active), self.esp_error,
                  tuple((c.id, c.netns, tuple(c.endpoints), c.gateway_ip, c.gateway_if, self._exited(c.id))
                        for c in containers))
        if links_may_skip and inputs == self._links_inputs:
            built, self.errors = set(self._links_result[0]), list(self._links_result[1])
        else:
            self._links_inputs = None  # a pass that fails is not reused
            built = await asyncio.to_thread(self._converge_links, state, active, containers)
            self._links_inputs, self._links_result = inputs, (set(built), list(self.errors))
        for cid in [cid for cid in self.resolver.listeners if cid not in built]:
            await self.resolver.close(cid)
        ready = [c for c in containers if c.id in built]
        for c in ready:
            c.dns_port = await self.resolver.listen(c)
        self.resolver.update(dns.build_records(state, ready), ready)
        if active or ready:
            await self._apply("", rules.render_host_table(state, ready, active, self.fence))
        else:  # nothing of ours left on this host: not even the table
            await self._apply("", rules.delete_table())
        for c in ready:
            await self._apply(c.netns, rules.render_container_table(state, c))

    async def _apply(self, namespace: str, ruleset: str) -> None:
        if self.applied.get(namespace) == ruleset:
            return
        await nft.apply(ruleset, namespace or None)
        self.applied[namespace] = ruleset

    def _converge_links(self, state: NetworkState, active: list[Network],
                        containers: list[LocalContainer]) -> set[str]:
        """The netlink part of a converge (worker thread); returns the ids of the containers whose
        netns and veths are complete."""
        built = set()
        with HostLinks() as links:
            mtus: dict[str, int] = {}
            if self.state is not None:
                underlay_index, underlay_mtu = links.underlay(state)
                mtus[GATEWAY_BRIDGE] = underlay_mtu
                for n in active:
                    mtus[n.id] = network_mtu(n, underlay_mtu)
                    links.ensure_network(n, state, mtus[n.id], underlay_index)
                for n, wanted in ((n, neighbours(state, active)[n.id]) for n in active):
                    added, removed = links.sync_peers(n, wanted)
                    if added or removed:
                        log.info("network %s: %d peer entries added, %d removed", n.name, added, removed)
            removed = links.remove_stale_networks({n.vni for n in active})
            if removed:
                log.info("removed network devices nothing needs: %s", ", ".join(removed))
            if active or any(c.gateway_ip for c in containers):
                links.enable_forwarding()
            if any(c.gateway_ip for c in containers):
                links.ensure_gateway_bridge(state)
            elif links.remove_gateway_bridge():
                log.info("removed the gateway bridge: no container needs egress")
            active_ids = {n.id for n in active}
            for c in containers:
                if not all(e.network_id in active_ids for e in c.endpoints):
                    missing = [e.network_id for e in c.endpoints if e.network_id not in active_ids]
                    if self._exited(c.id):
                        # A task's container that has exited: the manager stops sending its networks
                        # and nothing needs them (a start rebuilds them first): not a problem to
                        # report on every sync.
                        log.debug("container %s has exited; its networks %s are not built", c.name, missing)
                    else:
                        self.errors.append(f"container {c.name}: networks {', '.join(missing)} are not built here")
                    continue
                if not netns.exists(c.netns):
                    netns.create(c.netns)
                links.attach(state, c, mtus)
                for name in links.detach_extra(c):
                    log.info("container %s: deleted veth %s (network disconnected)", c.name, name)
                built.add(c.id)
            for name in links.stale_veths({c.id for c in containers}):
                log.info("deleting stale veth %s", name)
                links.detach(name[3:12])
        wanted = {c.netns for c in containers}
        for name in netns.list_names(f"{NETNS_PREFIX}{self.rid}-"):
            if name not in wanted:
                log.info("deleting stale network namespace %s", name)
                netns.delete(name)
                self.applied.pop(name, None)
        if os.path.isdir(self.dir / "containers"):
            for d in (self.dir / "containers").iterdir():
                if d.name not in {c.id for c in containers}:
                    shutil.rmtree(d, ignore_errors=True)
        return built
