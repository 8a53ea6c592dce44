"""The overlay data plane as a user sees it, on three fake hosts (issue 5, items 2-5 and 7).

The lab: network-namespace hosts on an underlay bridge, one shoal-runtimed per host (own root,
socket and cgroup parent), an outside client, and the NetworkState each host's worker would send,
cut from one cluster-wide picture (``Lab.state_for``).

Names: every netns starts with ``tnet-<pid>-``; underlay 192.0.2.0/24 (host i = 192.0.2.1i, the
outside client 192.0.2.100); overlays and the gateway bridge in 198.18.0.0/15. runtimed is started
as ``nsenter --net=... shoal-runtimed`` (not ``ip netns exec``, whose private mount namespace would
hide the container netns names runtimed makes) and stopped by PID.
"""

from __future__ import annotations

import collections
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from agent_runtime.api import (Backend, ContainerSpec, Network, NetworkAttachment, NetworkState, Peer,
                               PortConfig, RuntimeClient, Service, ShoalRuntimeError, VirtualIP, mac_from_ip)
from agent_runtime.network.plan import runtime_id
from tests.support.runtime import IMAGE, build_busybox_rootfs, cgroup_dirs

VENV_BIN = Path(sys.executable).parent
GW_SUBNET = "198.19.200.0/24"
REGISTRY = "192.0.2.100:5000"     # runtimed's --fence: a registry on the outside host

# the three overlays of the lab: id -> (vni, subnet prefix)
INGRESS, FRONT, BACK, PRIVATE, SECRET, GONE = "ingress0", "front0", "back0", "private0", "secret0", "gone0"
NETWORKS = {INGRESS: (4100, "198.18.0"), FRONT: (4101, "198.18.1"), BACK: (4102, "198.18.2"),
            PRIVATE: (4103, "198.18.3"), SECRET: (4104, "198.18.4"), GONE: (4105, "198.18.5")}

HTTPD = ("mkdir -p /www/cgi-bin; hostname > /www/index.html; "
         "printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\necho $REMOTE_ADDR\\n' > /www/cgi-bin/ip; "
         "chmod +x /www/cgi-bin/ip; exec httpd -f -p 80 -h /www")


def sh(*argv: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {proc.stderr.strip()}")
    return proc


class Host:
    def __init__(self, lab: "Lab", index: int) -> None:
        self.lab, self.index = lab, index
        self.netns = f"{lab.prefix}h{index}"
        self.ip = f"192.0.2.{10 + index}"
        self.base = lab.base / f"h{index}"
        self.root = self.base / "root"
        self.socket = str(self.base / "runtimed.sock")
        self.cgroup_parent = f"shoal-{lab.prefix}h{index}"
        self.proc: subprocess.Popen | None = None
        self.rid = ""

    def client(self) -> RuntimeClient:
        return RuntimeClient(self.socket, timeout=60)

    def start(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        log = open(self.base / "runtimed.log", "ab")
        self.proc = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{self.netns}", "--", str(VENV_BIN / "shoal-runtimed"),
             "--root", str(self.root), "--socket", self.socket, "--cgroup-parent", self.cgroup_parent,
             "--log-level", "INFO", "--fence", REGISTRY], stdout=log, stderr=log)
        self.rid = runtime_id(self.root)
        for _ in range(300):
            try:
                self.client().version()
                return
            except ShoalRuntimeError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)
        raise RuntimeError(f"runtimed on {self.netns} did not come up; see {self.base / 'runtimed.log'}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=15)
            self.proc = None

    def ip_cmd(self, *args: str, check: bool = True) -> str:
        return sh("ip", "-n", self.netns, *args, check=check).stdout

    def nft_tables(self) -> str:
        return sh("nsenter", f"--net=/run/netns/{self.netns}", "nft", "list", "tables").stdout


class Lab:
    """The hosts, and the cluster-wide desired state from which each host's NetworkState is cut."""

    def __init__(self, base: Path, hosts: int = 3) -> None:
        self.base = base
        self.prefix = f"tnet-{os.getpid()}-"
        self.hosts = [Host(self, i) for i in range(1, hosts + 1)]
        self.ext = f"{self.prefix}ext"
        self.underlay = f"{self.prefix}ul"
        self.networks: dict[str, Network] = {}
        self.services: dict[str, Service] = {}
        self.endpoints: dict[str, dict] = {}   # container name -> {host, net id -> ip, names}

    # topology -----------------------------------------------------------------------------
    def build(self) -> None:
        ul = self.underlay
        sh("ip", "netns", "add", ul)
        sh("ip", "-n", ul, "link", "set", "lo", "up")
        sh("ip", "-n", ul, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", ul, "link", "set", "br0", "up")
        for i, ns, ip in [(h.index, h.netns, h.ip) for h in self.hosts] + [(100, self.ext, "192.0.2.100")]:
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", ul, "link", "add", f"ul-{i}", "type", "veth", "peer", "name", "eth0", "netns", ns)
            sh("ip", "-n", ul, "link", "set", f"ul-{i}", "master", "br0", "up")
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
        rootfs = self.base / "rootfs"
        build_busybox_rootfs(rootfs)
        with tarfile.open(self.base / "busybox.tar", "w") as tar:
            tar.add(rootfs, arcname=".")
        for host in self.hosts:
            host.start()
            host.client().image_import(str(self.base / "busybox.tar"), IMAGE)

    def teardown(self) -> list[str]:
        """Remove everything, even after a failure; returns what the data plane left behind (must be
        nothing) plus any error met while cleaning up."""
        leftovers = []
        for host in self.hosts:
            try:
                if host.proc is None or host.proc.poll() is not None:
                    host.start()
                client = host.client()
                for c in client.list(all=True):
                    client.remove(c.id, force=True)
                client.network_sync(NetworkState(underlay_ip=host.ip, gateway_bridge_subnet=GW_SUBNET))
                links = host.ip_cmd("-o", "link", "show")
                leftovers += [f"{host.netns}: {ln.split(':')[1].strip()}" for ln in links.splitlines()
                              if any(p in ln for p in ("shov", "shvx", "shv", "shoal_gwbridge"))]
                if "shoal" in host.nft_tables():
                    leftovers.append(f"{host.netns}: nft table ip shoal")
            except Exception as exc:  # keep cleaning; report it
                leftovers.append(f"{host.netns}: cleanup failed: {exc}")
            finally:
                if host.proc is not None:
                    host.stop()
            leftovers += self._force_clean(host)
        for ns in [h.netns for h in self.hosts] + [self.ext, self.underlay]:
            for pid in sh("ip", "netns", "pids", ns, check=False).stdout.split():
                leftovers.append(f"process {pid} in {ns}")
                os.kill(int(pid), signal.SIGKILL)
            sh("ip", "netns", "del", ns, check=False)
        leftovers += [line for line in Path("/proc/self/mountinfo").read_text().splitlines()
                      if str(self.base) in line]
        shutil.rmtree(self.base, ignore_errors=True)
        return leftovers

    @staticmethod
    def _force_clean(host: Host) -> list[str]:
        """Kill what is left in the host's own cgroup parent and drop its netns names (all ours)."""
        found = []
        dirs = sorted(cgroup_dirs(host.cgroup_parent), key=lambda p: len(p.parts), reverse=True)
        for d in dirs:
            for procs in d.rglob("cgroup.procs"):
                for pid in procs.read_text().split():
                    found.append(f"process {pid} of {host.netns}")
                    os.kill(int(pid), signal.SIGKILL)
        time.sleep(0.2 if found else 0)
        for d in dirs:
            for sub in sorted((p for p in d.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
                sub.rmdir()
            d.rmdir()
        for name in os.listdir("/run/netns"):
            if host.rid and name.startswith(f"shoal-{host.rid}-"):
                found.append(f"netns {name}")
                sh("ip", "netns", "del", name, check=False)
        return found

    def host(self, index: int) -> Host:
        return self.hosts[index - 1]

    # desired state ------------------------------------------------------------------------------
    def add_network(self, net_id: str, **kw) -> Network:
        vni, prefix = NETWORKS[net_id]
        self.networks[net_id] = Network(id=net_id, name=net_id, vni=vni, subnet=f"{prefix}.0/24",
                                        gateway=f"{prefix}.1", ingress=net_id == INGRESS, **kw)
        return self.networks[net_id]

    @staticmethod
    def gateway_ip(net_id: str, host_index: int) -> str:
        return f"{NETWORKS[net_id][1]}.{240 + host_index}"

    def state_for(self, host: Host) -> NetworkState:
        """What the worker on ``host`` sends: every network, every remote endpoint, every service."""
        peers = []
        for net_id in self.networks:
            for other in self.hosts:
                if other is not host:
                    peers.append(Peer(network_id=net_id, ip=self.gateway_ip(net_id, other.index),
                                      underlay_ip=other.ip))
        for name, ep in self.endpoints.items():
            if ep["host"] is not host:
                for net_id, ip in ep["ips"].items():
                    peers.append(Peer(network_id=net_id, ip=ip, underlay_ip=ep["host"].ip, names=[name]))
        nets = [Network(**{**n.__dict__, "host_gateway_ip": self.gateway_ip(n.id, host.index)})
                for n in self.networks.values()]
        return NetworkState(underlay_ip=host.ip, gateway_bridge_subnet=GW_SUBNET, networks=nets,
                            peers=peers, services=list(self.services.values()),
                            node_ips=[h.ip for h in self.hosts])

    def sync(self, *hosts: Host) -> list[dict]:
        return [h.client().network_sync(self.state_for(h)) for h in (hosts or self.hosts)]

    def run(self, host: Host, name: str, ips: dict[str, str], command: list[str], aliases=()) -> str:
        """Create and start a container attached to ``ips`` (net id -> ip) on ``host``."""
        self.endpoints[name] = {"host": host, "ips": ips}
        self.sync()
        attachments = [NetworkAttachment(network_id=n, address=f"{ip}/24", aliases=list(aliases))
                       for n, ip in ips.items()]
        client = host.client()
        cid = client.create(ContainerSpec(image=IMAGE, name=name, hostname=name, command=command,
                                          networks=attachments))
        client.start(cid)
        return cid

    def service(self, name: str, backends: list[str], vips: dict[str, str] | None = None,
                ports: list[PortConfig] | None = None, **kw) -> Service:
        svc = Service(id=f"svc-{name}", name=name,
                      virtual_ips=[VirtualIP(n, f"{ip}/24") for n, ip in (vips or {}).items()],
                      ports=ports or [], backends=[self.backend(b) for b in backends], **kw)
        self.services[name] = svc
        return svc

    def backend(self, container: str, healthy: bool = True) -> Backend:
        ep = self.endpoints[container]
        return Backend(task_id=f"task-{container}", node_ip=ep["host"].ip, addresses=dict(ep["ips"]),
                       healthy=healthy)

    # what a user runs -----------------------------------------------------------------------------
    @staticmethod
    def exec(host: Host, container: str, script: str, timeout: float = 60) -> str:
        result = host.client().exec(container, ["sh", "-c", script], timeout=timeout)
        return result.stdout

    def from_outside(self, script: str, timeout: float = 60) -> str:
        return sh("nsenter", f"--net=/run/netns/{self.ext}", "busybox", "sh", "-c", script,
                  check=False, timeout=timeout).stdout



# ---------------------------------------------------------------------------------------------
pytestmark = [pytest.mark.privileged, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """h1: web1 web2 | h2: web3 b1 | h3: client b2 p1 (see the module docstring for the services)."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    lab = Lab(tmp_path_factory.mktemp("netlab"))
    try:
        lab.build()
        for net_id in (INGRESS, FRONT, BACK):
            lab.add_network(net_id)
        lab.add_network(PRIVATE, internal=True)
        h1, h2, h3 = lab.hosts
        lab.run(h1, "web1", {FRONT: "198.18.1.11", INGRESS: "198.18.0.11"}, ["sh", "-c", HTTPD])
        lab.run(h1, "web2", {FRONT: "198.18.1.12", INGRESS: "198.18.0.12"}, ["sh", "-c", HTTPD])
        lab.run(h2, "web3", {FRONT: "198.18.1.21", INGRESS: "198.18.0.21"}, ["sh", "-c", HTTPD])
        lab.run(h2, "b1", {BACK: "198.18.2.21"}, ["sh", "-c", HTTPD])
        lab.run(h3, "client", {FRONT: "198.18.1.31"}, ["sleep", "3600"], aliases=["frontdoor"])
        lab.run(h3, "b2", {BACK: "198.18.2.31"}, ["sleep", "3600"])
        lab.run(h3, "p1", {PRIVATE: "198.18.3.31"}, ["sleep", "3600"])
        webs = ["web1", "web2", "web3"]
        lab.service("shop_web", webs, vips={FRONT: "198.18.1.100", INGRESS: "198.18.0.100"}, aliases=["web"],
                    ports=[PortConfig(target_port=80, published_port=8080)])
        lab.service("hweb", ["web3"], endpoint_mode="dnsrr",
                    ports=[PortConfig(target_port=80, published_port=8081, publish_mode="host")])
        lab.service("lweb", webs, endpoint_mode="dnsrr", local_only=True,
                    ports=[PortConfig(target_port=80, published_port=8082)])
        lab.sync()
        yield lab
    finally:
        leftovers = lab.teardown()
    assert leftovers == [], f"left behind: {leftovers}"


def wget(url: str) -> str:
    """A shell snippet printing the page at ``url`` or FAILED (busybox 1.35's ``wget -T`` segfaults)."""
    return f"timeout 3 wget -qO- {url} 2>/dev/null || echo FAILED"


def wait_for(pred, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    return False


def client_address(cgi_output: str) -> str:
    """The backend's REMOTE_ADDR as plain IPv4 (busybox httpd reports [::ffff:a.b.c.d])."""
    return cgi_output.strip().strip("[]").removeprefix("::ffff:")


def test_containers_on_different_hosts_ping_each_other(lab):
    h1, h2, h3 = lab.hosts
    out = lab.exec(h3, "client", "ping -c1 -W2 198.18.1.11 >/dev/null && echo ok1; "
                                 "ping -c1 -W2 198.18.1.21 >/dev/null && echo ok2; "
                                 "ping -c1 -W2 -s 1422 198.18.1.12 >/dev/null && echo okmtu")
    assert out.split() == ["ok1", "ok2", "okmtu"]
    assert lab.exec(h3, "client", "cat /sys/class/net/eth0/mtu; cat /sys/class/net/eth0/address").split() == [
        "1450", mac_from_ip("198.18.1.31")]


def test_vip_spreads_requests_over_every_backend(lab):
    h3 = lab.host(3)
    out = lab.exec(h3, "client", "i=0; while [ $i -lt 300 ]; do timeout 3 wget -qO- http://web/; i=$((i+1)); done",
                   timeout=120)
    counts = collections.Counter(out.split())
    assert set(counts) == {"web1", "web2", "web3"}, counts
    assert sum(counts.values()) == 300
    assert min(counts.values()) >= 60, counts   # none below 20 %


def test_dns_names(lab):
    h3 = lab.host(3)

    def resolve(name):
        out = lab.exec(h3, "client", f"nslookup {name} 2>&1")
        return sorted(line.split()[-1] for line in out.splitlines()
                      if line.startswith("Address") and "127.0.0.11" not in line)

    assert resolve("web") == ["198.18.1.100"]
    assert resolve("shop_web") == ["198.18.1.100"]
    assert resolve("tasks.web") == ["198.18.1.11", "198.18.1.12", "198.18.1.21"]
    assert resolve("hweb") == ["198.18.1.21"]            # dnsrr: task IPs
    assert resolve("web1") == ["198.18.1.11"]            # a remote container's name
    assert resolve("frontdoor") == ["198.18.1.31"]       # own alias
    assert resolve("b1") == []                           # on another network: not visible
    assert lab.exec(h3, "client", "cat /etc/resolv.conf").startswith("nameserver 127.0.0.11")


def test_tasks_follow_a_sync_and_unhealthy_backends_leave(lab):
    h3 = lab.host(3)
    web = lab.services["shop_web"]
    web.backends[0].healthy = False                      # web1 fails its health check
    web.backends = [b for b in web.backends if b.task_id != "task-web3"]   # web3 scaled away
    try:
        lab.sync()
        out = lab.exec(h3, "client", "nslookup tasks.web; i=0; while [ $i -lt 40 ]; do "
                                     "timeout 3 wget -qO- http://web/; i=$((i+1)); done")
        assert "198.18.1.12" in out and "198.18.1.11" not in out and "198.18.1.21" not in out
        served = collections.Counter(line for line in out.splitlines() if line.startswith("web"))
        assert served == {"web2": 40}
    finally:
        web.backends = [lab.backend(n) for n in ("web1", "web2", "web3")]
        lab.sync()
    out = lab.exec(h3, "client", "nslookup tasks.web")
    assert all(ip in out for ip in ("198.18.1.11", "198.18.1.12", "198.18.1.21"))


def test_a_sync_that_changes_only_services_leaves_the_links_alone(lab):
    """A rolling update changes only services (a backend leaves the VIP): such a sync rewrites the
    rules without runtimed's pass over every container's links, which took about 4 s on a host with
    32 containers under load while the other nodes kept sending connections to the stopped backend
    (docs/rolling-upgrades.md). What that pass repairs (here a neighbour entry deleted by hand) is
    repaired by the next sync that changes peers, networks or containers, or a minute later."""
    h3 = lab.host(3)
    web = lab.services["shop_web"]
    lab.sync(h3)  # a full pass due now happens here, not in the syncs below
    h3.ip_cmd("neigh", "del", "198.18.1.11", "dev", "shvx4101")
    web.backends = [b for b in web.backends if b.task_id != "task-web1"]
    try:
        lab.sync(h3)
        out = lab.exec(h3, "client", "i=0; while [ $i -lt 20 ]; do timeout 3 wget -qO- http://web/; i=$((i+1)); done")
        assert set(out.split()) == {"web2", "web3"}, out
        assert "198.18.1.11 " not in h3.ip_cmd("neigh", "show", "dev", "shvx4101")
        lab.endpoints["extra"] = {"host": lab.host(1), "ips": {FRONT: "198.18.1.99"}}  # a new peer
        lab.sync(h3)
        assert "198.18.1.11 " in h3.ip_cmd("neigh", "show", "dev", "shvx4101")
    finally:
        lab.endpoints.pop("extra", None)
        web.backends = [lab.backend(n) for n in ("web1", "web2", "web3")]
        lab.sync()


def test_published_port_answers_on_every_host(lab):
    for host in lab.hosts:                               # h3 has no web backend
        answers = lab.from_outside(f"for i in 1 2 3 4 5 6; do {wget(f'http://{host.ip}:8080/')}; done").split()
        assert "FAILED" not in answers and set(answers) <= {"web1", "web2", "web3"}, (host.netns, answers)
    seen = client_address(lab.from_outside(wget("http://192.0.2.13:8080/cgi-bin/ip")))
    assert seen == lab.gateway_ip(INGRESS, 3)           # routing mesh: SNAT to the host's ingress address


def test_host_mode_port_answers_only_on_its_host(lab):
    assert lab.from_outside(wget("http://192.0.2.12:8081/")).strip() == "web3"
    assert lab.from_outside(wget("http://192.0.2.11:8081/")).strip() == "FAILED"
    assert lab.from_outside(wget("http://192.0.2.13:8081/")).strip() == "FAILED"


def test_local_only_ingress_keeps_the_client_address(lab):
    answers = lab.from_outside(f"for i in 1 2 3 4 5 6; do {wget('http://192.0.2.11:8082/')}; done").split()
    assert set(answers) <= {"web1", "web2"} and answers, answers
    assert client_address(lab.from_outside(wget("http://192.0.2.11:8082/cgi-bin/ip"))) == "192.0.2.100"
    assert lab.from_outside(wget("http://192.0.2.13:8082/")).strip() == "FAILED"   # no local backend


def test_networks_are_isolated_and_internal_has_no_egress(lab):
    h2, h3 = lab.host(2), lab.host(3)
    assert lab.exec(h3, "b2", wget("http://198.18.2.21/")).strip() == "b1"        # back reaches back
    assert lab.exec(h3, "client", wget("http://198.18.2.21/")).strip() == "FAILED"  # front cannot reach back
    assert lab.exec(h2, "b1", wget("http://198.18.1.21/")).strip() == "FAILED"      # nor back front (same host)
    assert lab.exec(h3, "client", "ping -c1 -W2 192.0.2.100 >/dev/null && echo out").strip() == "out"  # egress
    assert lab.exec(h3, "p1", "ping -c1 -W2 192.0.2.100 >/dev/null && echo out; ip route").strip() == \
        "198.18.3.0/24 dev eth0 scope link  src 198.18.3.31"


def test_bad_attachments_are_refused_and_leave_nothing(lab):
    from agent_runtime.api import Conflict, InvalidArgument
    h3 = lab.host(3)
    client = h3.client()
    before = (len(client.list(all=True)), sorted(os.listdir("/run/netns")), h3.ip_cmd("-o", "link").count("\n"))
    for attachment, error in [(NetworkAttachment(network_id="nope", address="198.18.9.5/24"), InvalidArgument),
                              (NetworkAttachment(network_id=FRONT, address="198.18.1.5/16"), InvalidArgument),
                              (NetworkAttachment(network_id=FRONT, address="198.18.1.11/24"), Conflict)]:
        with pytest.raises(error):
            client.create(ContainerSpec(image=IMAGE, command=["true"], networks=[attachment]))
    assert (len(client.list(all=True)), sorted(os.listdir("/run/netns")), h3.ip_cmd("-o", "link").count("\n")) \
        == before
    with pytest.raises(InvalidArgument, match="overlaps"):
        state = lab.state_for(h3)
        state.networks[1].subnet = "198.18.0.0/23"
        client.network_sync(state)
    assert lab.exec(h3, "client", "nslookup web | grep Address: | tail -n 1").split()[-1] == "198.18.1.100"


def test_network_connect_and_disconnect_keep_the_other_interfaces(lab):
    """docker network connect/disconnect on runtimed: a running container on an internal network
    gets a second network (eth1) and, with it, egress (eth2); leaving the first network takes eth0
    away and renames nothing; leaving the last one leaves it with loopback; names survive a restart
    of runtimed. Docker's refusals: a container in private (none) mode, connecting twice, leaving a
    network it is not on."""
    from agent_runtime.errors import Forbidden, InvalidArgument, NotFound
    h3 = lab.host(3)
    client = h3.client()
    cid = lab.run(h3, "hop", {PRIVATE: "198.18.3.33"}, ["sleep", "3600"])
    lone = client.create(ContainerSpec(image=IMAGE, name="lone", command=["sleep", "3600"]))

    def links():
        out = lab.exec(h3, "hop", "ip -o -4 addr show | grep -v ' lo '")
        return sorted((line.split()[1], line.split()[3]) for line in out.splitlines())

    try:
        assert links() == [("eth0", "198.18.3.33/24")]
        lab.endpoints["hop"]["ips"][BACK] = "198.18.2.33"      # the manager publishes the new address
        lab.sync()
        assert client.network_connect("hop", NetworkAttachment(network_id=BACK, address="198.18.2.33/24",
                                                               attachment_id="att-back")) == "eth1"
        assert links() == [("eth0", "198.18.3.33/24"), ("eth1", "198.18.2.33/24"), ("eth2", egress_address(h3))]
        assert lab.exec(h3, "hop", wget("http://198.18.2.21/")).strip() == "b1"        # across hosts
        assert lab.exec(h3, "hop", "ping -c1 -W2 192.0.2.100 >/dev/null && echo out").strip() == "out"
        assert "198.18.2.33" in lab.exec(h3, "hop", "cat /etc/hosts")
        with pytest.raises(Forbidden, match="endpoint with name hop already exists in network back0"):
            client.network_connect("hop", NetworkAttachment(network_id=BACK, address="198.18.2.34/24"))
        with pytest.raises(InvalidArgument, match=r"in private \(none\) mode"):
            client.network_connect("lone", NetworkAttachment(network_id=BACK, address="198.18.2.35/24"))

        assert client.network_disconnect(cid, PRIVATE) == {"NetworkID": PRIVATE, "AttachmentID": ""}
        assert [name for name, _ in links()] == ["eth1", "eth2"]
        assert lab.exec(h3, "hop", wget("http://198.18.2.21/")).strip() == "b1"
        with pytest.raises(NotFound, match=f"container {cid} is not connected to network {PRIVATE}"):
            client.network_disconnect(cid, PRIVATE)
        assert client.network_disconnect(cid, PRIVATE, force=True)["NetworkID"] == ""
        config = client.inspect("hop").config
        assert [(a.network_id, a.interface) for a in config.networks] == [(BACK, "eth1")]
        assert config.labels["com.shoal.network.attachment.id"] == "att-back"

        h3.stop()
        h3.start()
        assert [name for name, _ in links()] == ["eth1", "eth2"]

        assert client.network_disconnect(cid, "back0")["AttachmentID"] == "att-back"     # by name
        assert links() == []
        assert "com.shoal.network.attachment.id" not in client.inspect("hop").config.labels
        assert client.network_connect("hop", NetworkAttachment(network_id=FRONT, address="198.18.1.33/24")) \
            == "eth0"
        lab.endpoints["hop"]["ips"] = {FRONT: "198.18.1.33"}
        lab.sync()
        assert lab.exec(h3, "hop", wget("http://198.18.1.11/")).strip() == "web1"
    finally:
        client.remove(lone, force=True)
        client.remove(cid, force=True)
        del lab.endpoints["hop"]
        lab.sync()
    assert f"shv{cid[:9]}" not in h3.ip_cmd("link")


def egress_address(host) -> str:
    """The egress address runtimed gave the container ``hop`` (the gateway bridge's subnet)."""
    for c in host.client().network_inspect()["Containers"]:
        if c["Name"] == "hop":
            return f"{c['GatewayIP']}/24"
    return ""


def test_run_publish_reaches_a_container_on_no_swarm_network(lab):
    """run -p: a container on no swarm network gets egress only (Docker's default bridge) and the
    host DNATs its ports to it: from outside, from the host itself at 127.0.0.1, on one address
    only when given; a free port when none is given; Docker's error for a port taken by another
    container or by a service; everything goes with the container."""
    from agent_runtime.api import Conflict, PortBinding
    h3 = lab.host(3)
    client = h3.client()
    spec = ContainerSpec(image=IMAGE, name="pub", hostname="pub", command=["sh", "-c", HTTPD],
                         ports=[PortBinding(80, host_port=8090), PortBinding(80, host_ip="192.0.2.13", host_port=8091),
                                PortBinding(80)])
    cid = client.create(spec)
    try:
        client.start(cid)
        ports = client.inspect(cid).config.ports
        assert [(p.host_ip, p.host_port) for p in ports][:2] == [("", 8090), ("192.0.2.13", 8091)]
        assert 32768 <= ports[2].host_port <= 60999
        assert wait_for(lambda: lab.from_outside(wget("http://192.0.2.13:8090/")).strip() == "pub")
        assert lab.from_outside(wget(f"http://192.0.2.13:{ports[2].host_port}/")).strip() == "pub"
        assert lab.from_outside(wget("http://192.0.2.13:8091/")).strip() == "pub"
        from_host = sh("nsenter", f"--net=/run/netns/{h3.netns}", "busybox", "sh", "-c",
                       wget("http://127.0.0.1:8090/") + "; " + wget("http://127.0.0.1:8091/"), check=False).stdout
        assert from_host.split() == ["pub", "FAILED"]           # 8091 is bound to 192.0.2.13 only
        assert client_address(lab.from_outside(wget("http://192.0.2.13:8090/cgi-bin/ip"))) == "192.0.2.100"
        for taken, message in ((8090, "Bind for 0.0.0.0:8090 failed: port is already allocated"),
                               (8080, "Bind for 0.0.0.0:8080 failed: port is already allocated")):   # a service's
            with pytest.raises(Conflict, match=message):
                client.create(ContainerSpec(image=IMAGE, command=["true"], ports=[PortBinding(80, host_port=taken)]))
        listener = subprocess.Popen(["nsenter", f"--net=/run/netns/{h3.netns}", "busybox", "httpd", "-f", "-p",
                                     "192.0.2.13:8095", "-h", "/"])
        try:
            assert wait_for(lambda: "192.0.2.13:8095" in sh("nsenter", f"--net=/run/netns/{h3.netns}", "busybox",
                                                            "netstat", "-ltn").stdout)
            with pytest.raises(Conflict, match="Error starting userland proxy: listen tcp4 0.0.0.0:8095: bind: "
                                               "address already in use"):
                client.create(ContainerSpec(image=IMAGE, command=["true"], ports=[PortBinding(80, host_port=8095)]))
        finally:
            listener.kill()
            listener.wait()
    finally:
        client.remove(cid, force=True)
    assert lab.from_outside(wget("http://192.0.2.13:8090/")).strip() == "FAILED"
    assert f"shv{cid[:9]}" not in h3.ip_cmd("link")


def test_encrypted_network_is_refused_with_the_reason(lab):
    from agent_runtime.api import Conflict
    h3 = lab.host(3)
    lab.add_network(SECRET, encrypted=True)
    try:
        lab.sync(h3)
        with pytest.raises(Conflict, match="CONFIG_INET_ESP"):
            h3.client().create(ContainerSpec(image=IMAGE, command=["true"], networks=[
                NetworkAttachment(network_id=SECRET, address="198.18.4.32/24")]))
        assert h3.client().list(all=True) and "shov4104" not in h3.ip_cmd("link")
    finally:
        del lab.networks[SECRET]
        lab.sync(h3)


def test_restart_rebuilds_and_removes_stale_state(lab):
    h2, h3 = lab.host(2), lab.host(3)
    h2.stop()
    # what a crash, or a state that changed while runtimed was down, leaves behind
    stale_ns = f"shoal-{h2.rid}-deadbeef0000"
    sh("ip", "netns", "add", stale_ns)
    h2.ip_cmd("link", "add", "shvdeadbeef00", "type", "veth", "peer", "name", "shvdeadbeef01")
    h2.ip_cmd("link", "add", "shov4999", "type", "bridge")
    sh("bridge", "-n", h2.netns, "fdb", "append", "02:42:c6:12:01:63", "dev", "shvx4101", "dst", "192.0.2.99",
       "self", "permanent")
    h2.ip_cmd("neigh", "replace", "198.18.1.99", "lladdr", "02:42:c6:12:01:63", "dev", "shvx4101", "nud", "permanent")
    hweb = lab.services.pop("hweb")
    try:
        h2.start()                                       # converges from its persisted state first
        links = h2.ip_cmd("link")
        assert "shvdeadbeef0" not in links and "shov4999" not in links
        assert stale_ns not in os.listdir("/run/netns")
        assert "192.0.2.99" not in sh("bridge", "-n", h2.netns, "fdb", "show", "dev", "shvx4101").stdout
        assert "198.18.1.99" not in h2.ip_cmd("neigh", "show", "dev", "shvx4101")
        dns_back = lab.exec(h2, "b1", "nslookup b2 | grep Address: | tail -n 1").split()
        assert dns_back[-1] == "198.18.2.31"            # the resolver is back, on new sockets
        assert lab.from_outside(wget("http://192.0.2.12:8081/")).strip() == "web3"          # old state still
        lab.sync()                                       # the worker's sync: hweb is gone cluster-wide
        assert lab.from_outside(wget("http://192.0.2.12:8081/")).strip() == "FAILED"
        assert lab.exec(h3, "client", wget("http://198.18.1.21/")).strip() == "web3"
        assert lab.exec(h3, "client", "ping -c1 -W2 198.18.2.21 >/dev/null || echo isolated").strip() == "isolated"
    finally:
        lab.services["hweb"] = hweb
        sh("ip", "netns", "del", stale_ns, check=False)
        lab.sync()


def test_removing_the_last_container_of_a_network_removes_its_devices(lab):
    h2 = lab.host(2)
    b1 = next(c for c in h2.client().list(all=True) if c.name == "b1")
    own_netns = f"shoal-{h2.rid}-{b1.id[:12]}"
    assert own_netns in os.listdir("/run/netns") and "shov4102" in h2.ip_cmd("link")
    h2.client().remove("b1", force=True)
    del lab.endpoints["b1"]
    lab.sync()
    links = h2.ip_cmd("link")
    assert "shov4102" not in links and "shvx4102" not in links and f"shv{b1.id[:9]}" not in links
    assert own_netns not in os.listdir("/run/netns")
    ruleset = sh("nsenter", f"--net=/run/netns/{h2.netns}", "nft", "list", "table", "ip", "shoal").stdout
    assert "shov4102" not in ruleset and "shov4101" in ruleset
    assert "198.18.2.21" not in sh("bridge", "-n", lab.host(3).netns, "fdb", "show", "dev", "shvx4102").stdout + \
        lab.host(3).ip_cmd("neigh", "show", "dev", "shvx4102")   # its peers forgot it too


def test_an_exited_container_whose_network_left_is_not_reported(lab):
    """A task's container exits, the manager stops sending its network: nothing to report on
    every sync (the worker logged it as a warning every 30 s). A running one still is reported."""
    h1 = lab.host(1)
    client = h1.client()
    lab.add_network(GONE)
    ids = [lab.run(h1, "short", {GONE: "198.18.5.11"}, ["true"]),
           lab.run(h1, "long", {GONE: "198.18.5.12"}, ["sleep", "3600"])]
    try:
        client.wait(ids[0])
        del lab.networks[GONE], lab.endpoints["short"], lab.endpoints["long"]
        errors = lab.sync(h1)[0]["Errors"]
        assert not [e for e in errors if "short" in e], errors
        assert [e for e in errors if "long" in e and "are not built here" in e], errors
    finally:
        for cid in ids:
            client.remove(cid, force=True)
        lab.networks.pop(GONE, None)
        lab.sync()


def test_containers_are_fenced_off_nodes_and_the_registry(lab, tmp_path):
    """Daemon ports of every node (the container's own and others) and the fenced registry refuse a
    container; published ports, the routing mesh and other egress still work (issue 11 item 7)."""
    h2 = lab.host(2)
    (tmp_path / "index.html").write_text("daemon\n")
    listeners = [subprocess.Popen(["nsenter", f"--net=/run/netns/{ns}", "busybox", "httpd", "-f", "-p",
                                   f"{ip}:{port}", "-h", str(tmp_path)])
                 for ns, ip, port in ((h2.netns, h2.ip, 2377), (lab.host(3).netns, lab.host(3).ip, 2377),
                                      (lab.ext, "192.0.2.100", 5000), (lab.ext, "192.0.2.100", 5001))]
    try:
        urls = ["http://192.0.2.12:2377/", "http://192.0.2.13:2377/", "http://192.0.2.100:5000/",
                "http://192.0.2.100:5001/"]
        # positive signal first: every listener answers from outside the containers
        assert all(wait_for(lambda u=u: lab.from_outside(wget(u)).strip() == "daemon") for u in urls), urls
        got = [lab.exec(lab.host(3), "client", wget(u)).strip() for u in urls]
        assert got == ["FAILED", "FAILED", "FAILED", "daemon"], got          # other egress still works
        refused = lab.exec(lab.host(3), "client", "nc -w 3 192.0.2.12 2377 </dev/null 2>&1; echo rc=$?")
        assert "rc=1" in refused                                              # refused at once, not hung
        for ip in ("192.0.2.12", "192.0.2.13"):                               # published ports still do
            assert lab.exec(lab.host(3), "client", wget(f"http://{ip}:8080/")).strip() in {"web1", "web2", "web3"}
        assert lab.exec(lab.host(3), "client", "ping -c1 -W2 192.0.2.12 >/dev/null && echo up").strip() == "up"
    finally:
        for p in listeners:
            p.kill()
            p.wait()
