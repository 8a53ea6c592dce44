"""Benchmark the overlay data plane on a three-host netns lab, in one run. Prints figures, asserts nothing.

- VIP vs direct: HTTP request latency (p50/p95) and sequential rate from a container to a service
  VIP (nft DNAT in the client's netns, numgen over 3 busybox httpd backends on 2 hosts) against the
  same requests straight to one task IP; the client is a thread that joined the container's netns;
- TCP throughput container <-> container across hosts over VXLAN vs host <-> host on the underlay
  (Python sockets, one stream, bounded bytes: CPU-bound figures on a small VM, read the ratio);
- DNS: query latency of the embedded resolver (127.0.0.11 in the container);
- new backend: time from the start of a ``network_sync`` that adds a backend until a request
  through the VIP first reaches it; and the sync's own duration;
- nft: time to load the container table / host table rendered for N services (scratch netns);
- memory: runtimed's RSS growth per container attached to an overlay.

Run as root: ``.venv/bin/python bench/network.py [--requests 500] [--bytes-mib 256]``. It builds
its lab (netns ``tnet-PID-*``, as the privileged tests do) and removes everything it made.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent_runtime.api import Backend, NetworkAttachment, NetworkState, PortConfig, Service, VirtualIP  # noqa: E402
from agent_runtime.network import netns, rules  # noqa: E402
from agent_runtime.network.model import Network  # noqa: E402
from agent_runtime.network.plan import LocalContainer, endpoints_for  # noqa: E402
from tests.privileged.test_network import FRONT, HTTPD, INGRESS, Lab  # noqa: E402


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def http_get(ip: str, port: int = 80) -> bytes:
    with socket.create_connection((ip, port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        chunks = []
        while data := s.recv(65536):
            chunks.append(data)
    return b"".join(chunks)


def container_netns(host, name: str) -> str:
    c = next(x for x in host.client().list(all=True) if x.name == name)
    return f"shoal-{host.rid}-{c.id[:12]}"


def latency(ns: str, ip: str, n: int) -> tuple[list[float], float]:
    def run():
        samples = []
        start = time.perf_counter()
        for _ in range(n):
            t = time.perf_counter()
            http_get(ip)
            samples.append((time.perf_counter() - t) * 1000)
        return samples, n / (time.perf_counter() - start)
    return netns.run_in(ns, run)


def throughput(server_ns: str, server_ip: str, client_ns: str, total: int) -> float:
    """Gbit/s of one TCP stream of ``total`` bytes from client_ns to server_ns."""
    ready, result = threading.Event(), {}

    def serve():
        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((server_ip, 5201))
        srv.listen(1)
        ready.set()
        conn, _ = srv.accept()
        got = 0
        while data := conn.recv(1 << 20):
            got += len(data)
        result["got"] = got
        conn.close()
        srv.close()

    server = threading.Thread(target=lambda: netns.run_in(server_ns, serve))
    server.start()
    ready.wait(10)

    def send():
        block = b"\0" * (1 << 20)
        with socket.create_connection((server_ip, 5201)) as s:
            start = time.perf_counter()
            for _ in range(total // len(block)):
                s.sendall(block)
            s.shutdown(socket.SHUT_WR)
            s.recv(1)
            return time.perf_counter() - start
    seconds = netns.run_in(client_ns, send)
    server.join()
    return result["got"] * 8 / seconds / 1e9


def dns_latency(ns: str, name: str, n: int) -> list[float]:
    from dnslib import DNSRecord
    query = DNSRecord.question(name).pack()

    def run():
        samples = []
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(2)
            for _ in range(n):
                t = time.perf_counter()
                s.sendto(query, ("127.0.0.11", 53))
                s.recv(4096)
                samples.append((time.perf_counter() - t) * 1000)
        return samples
    return netns.run_in(ns, run)


def nft_scale(counts: list[int]) -> None:
    scratch = f"tnet-bench-nft-{__import__('os').getpid()}"
    netns.create(scratch)
    try:
        for n in counts:
            nets = [Network(id="f", name="f", vni=4097, subnet="198.18.0.0/16", host_gateway_ip="198.18.255.241"),
                    Network(id="i", name="i", vni=4096, subnet="198.19.0.0/16", host_gateway_ip="198.19.255.241",
                            ingress=True)]
            services = []
            for k in range(n):
                base = f"{k // 200}.{k % 200 + 1}"
                services.append(Service(
                    id=f"s{k}", name=f"svc{k}", virtual_ips=[VirtualIP("f", f"198.18.{base}")],
                    ports=[PortConfig(80, 10000 + k)],
                    backends=[Backend(f"t{k}-{j}", "192.0.2.12", {"f": f"198.18.{100 + j}.{k % 250 + 1}",
                                                                 "i": f"198.19.{100 + j}.{k % 250 + 1}"})
                              for j in range(3)]))
            state = NetworkState(underlay_ip="192.0.2.11", gateway_bridge_subnet="198.20.0.0/24", networks=nets,
                                 services=services)
            c = LocalContainer(id="c" * 64, name="c", hostname="c", netns=scratch,
                               endpoints=endpoints_for("c" * 64, [NetworkAttachment("f", "198.18.250.1/16")]),
                               dns_port=40000)
            for label, text in (("container table", rules.render_container_table(state, c)),
                                ("host table", rules.render_host_table(state, [c], nets))):
                times = []
                for _ in range(3):
                    t = time.perf_counter()
                    subprocess.run(["nsenter", f"--net={netns.path(scratch)}", "nft", "-f", "-"], input=text.encode(),
                                   check=True)
                    times.append((time.perf_counter() - t) * 1000)
                print(f"  nft {label:15s} N={n:5d} services: first load {times[0]:7.1f} ms, "
                      f"atomic replace {statistics.median(times[1:]):7.1f} ms")
            subprocess.run(["nsenter", f"--net={netns.path(scratch)}", "nft", "flush", "ruleset"], check=True)
    finally:
        netns.delete(scratch)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--bytes-mib", type=int, default=256)
    parser.add_argument("--containers", type=int, default=20)
    args = parser.parse_args()
    lab = Lab(Path(tempfile.mkdtemp(prefix="shoal-bench-net-")))
    try:
        lab.build()
        lab.add_network(INGRESS)
        lab.add_network(FRONT)
        h1, h2, h3 = lab.hosts
        lab.run(h1, "web1", {FRONT: "198.18.1.11"}, ["sh", "-c", HTTPD])
        lab.run(h2, "web2", {FRONT: "198.18.1.21"}, ["sh", "-c", HTTPD])
        lab.run(h2, "web3", {FRONT: "198.18.1.22"}, ["sh", "-c", HTTPD])
        lab.run(h3, "client", {FRONT: "198.18.1.31"}, ["sleep", "3600"])
        lab.service("web", ["web1", "web2"], vips={FRONT: "198.18.1.100"})
        lab.sync()
        client_ns = container_netns(h3, "client")
        n = args.requests
        latency(client_ns, "198.18.1.100", 20)  # warm-up (ARP, conntrack)
        vip, vip_rate = latency(client_ns, "198.18.1.100", n)
        direct, direct_rate = latency(client_ns, "198.18.1.21", n)
        print(f"HTTP request from a container (h3) to 2 busybox backends (h1, h2), {n} sequential requests:")
        print(f"  via VIP     p50 {pct(vip, .5):.3f} ms  p95 {pct(vip, .95):.3f} ms  {vip_rate:7.0f} req/s")
        print(f"  direct IP   p50 {pct(direct, .5):.3f} ms  p95 {pct(direct, .95):.3f} ms  {direct_rate:7.0f} req/s")
        print(f"  VIP/direct p50 ratio {pct(vip, .5) / pct(direct, .5):.2f}")

        total = args.bytes_mib << 20
        over = throughput(container_netns(h1, "web1"), "198.18.1.11", client_ns, total)
        under = throughput(h1.netns, h1.ip, h3.netns, total)
        print(f"TCP, one stream, {args.bytes_mib} MiB (Python sockets; CPU-bound on this VM):")
        print(f"  container h3 -> h1 over VXLAN {over:6.2f} Gbit/s; host h3 -> h1 underlay {under:6.2f} Gbit/s; "
              f"ratio {over / under:.2f}")

        d = dns_latency(client_ns, "tasks.web", 200)
        print(f"DNS at 127.0.0.11 (tasks.web, 200 queries): p50 {pct(d, .5):.3f} ms  p95 {pct(d, .95):.3f} ms")

        web = lab.services["web"]
        web.backends.append(lab.backend("web3"))
        start = time.perf_counter()
        reports = lab.sync()
        synced = time.perf_counter() - start

        def first_hit():
            while b"web3" not in http_get("198.18.1.100"):
                pass
            return time.perf_counter() - start
        hit = netns.run_in(client_ns, first_hit)
        print(f"new backend: sync of 3 hosts {synced * 1000:.1f} ms (runtimed DurationMs "
              f"{', '.join(str(r['DurationMs']) for r in reports)}); first request served by it "
              f"{hit * 1000:.1f} ms after the sync began")

        pid = h2.proc.pid
        before = rss_kib(pid)
        for k in range(args.containers):
            lab.run(h2, f"idle{k}", {FRONT: f"198.18.1.{50 + k}"}, ["sleep", "3600"])
        after = rss_kib(pid)
        print(f"runtimed RSS on h2: {before} KiB -> {after} KiB with {args.containers} more overlay containers "
              f"({(after - before) / args.containers:.0f} KiB per container, container manager included)")
    finally:
        leftovers = lab.teardown()
        if leftovers:
            print("LEFT BEHIND:", leftovers)
    print("nftables load time for N VIP services (3 backends each; one `nft -f` transaction each):")
    nft_scale([10, 100, 1000])


if __name__ == "__main__":
    main()
