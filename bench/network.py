"""Benchmark the overlay data plane on a real shoal-lab (3 managers + 2 workers), in one run.
Prints figures, asserts nothing (goals from issue 5 are printed beside them).

- TCP throughput, iperf3 one stream, ``-t`` seconds: container (manager1) -> container (worker1)
  across hosts over the VXLAN overlay, vs host manager1 -> host worker1 on the underlay. iperf3
  runs from the host's filesystem inside each container's network namespace
  (``nsenter --net=/proc/PID/ns/net``): the packets take exactly the container's path (its veth,
  the network's bridge, VXLAN, the underlay), only the binary is not the image's;
- VIP vs direct: sequential HTTP requests from the client container to the service VIP
  (nftables DNAT in the client's netns, random over 2 busybox httpd backends on 2 workers) vs
  the same requests straight to one task IP: p50/p95 latency and rate;
- DNS: query latency of the embedded resolver (127.0.0.11) for tasks.web;
- new backend: ``service scale web=3``, then the time from the new task's RUNNING status
  (its timestamp, from the manager) until a request through the VIP is first served by it;
- nft: time to load the container / host table rendered for N services (scratch netns).

Run as root: ``.venv/bin/python bench/network.py [--requests 500] [--seconds 3] [--iperf-runs 3]``. Needs
iperf3 (Debian package). The lab is named ``bnet-PID`` and brought down at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent_runtime.api import Backend, NetworkAttachment, NetworkState, PortConfig, Service, VirtualIP  # noqa: E402
from agent_runtime.network import netns, rules  # noqa: E402
from agent_runtime.network.model import Network  # noqa: E402
from agent_runtime.network.plan import LocalContainer, endpoints_for  # noqa: E402
from shoal.lab import Lab  # noqa: E402

HTTPD = "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 80 -h /www"
SUBNET = "198.19.40"
PYTHON = sys.executable

# Runs inside the client container's netns (nsenter): sequential HTTP GETs, then JSON on stdout.
HTTP_PROBE = r"""
import json, socket, sys, time
def get(ip):
    with socket.create_connection((ip, 80), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        out = b""
        while data := s.recv(65536):
            out += data
    return out.split(b"\r\n\r\n", 1)[-1].strip().decode()
mode, args = sys.argv[1], sys.argv[2:]
if mode == "latency":
    ip, n = args[0], int(args[1])
    for _ in range(20): get(ip)
    samples, start = [], time.perf_counter()
    for _ in range(n):
        t = time.perf_counter(); get(ip); samples.append((time.perf_counter() - t) * 1000)
    print(json.dumps({"samples": samples, "rate": n / (time.perf_counter() - start)}))
elif mode == "dns":
    from dnslib import DNSRecord
    query, n = DNSRecord.question(args[0]).pack(), int(args[1])
    samples = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        for _ in range(n):
            t = time.perf_counter(); s.sendto(query, ("127.0.0.11", 53)); s.recv(4096)
            samples.append((time.perf_counter() - t) * 1000)
    print(json.dumps({"samples": samples}))
elif mode == "watch":   # until a response names a backend not in the known list: print when
    ip, known, limit = args[0], set(args[1].split(",")), time.time() + float(args[2])
    while time.time() < limit:
        try:
            name = get(ip)
        except OSError:
            continue
        if name not in known:
            print(json.dumps({"backend": name, "at": time.time()})); break
"""


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def inspect_json(lab: Lab, host: str, *args: str):
    return json.loads(lab.shoal(host, *args).stdout)


def container(lab: Lab, service: str, node: str | None = None) -> tuple[str, int, str, str]:
    """(node, pid, task id, overlay IP) of a running task of ``service`` (on ``node`` if given)."""
    out = lab.shoal("manager1", "service", "ps", "--format", "json", service).stdout
    tasks = [json.loads(line) for line in out.splitlines() if line.strip()]
    task = next(t for t in tasks if t["CurrentState"].startswith("Running") and (node is None or t["Node"] == node))
    listing = lab.shoal(task["Node"], "container", "ls", "--format", "json").stdout
    for line in listing.splitlines():
        info = json.loads(line)
        if task["ID"][:12] in info["Names"] or info["Names"].endswith(task["ID"]):
            break
    else:
        raise RuntimeError(f"no container of task {task['ID']} on {task['Node']}")
    [detail] = inspect_json(lab, task["Node"], "container", "inspect", info["ID"])
    pid = detail["State"]["Pid"]
    address = next(n["Address"] for n in detail["Config"]["Networks"] if n["Address"].startswith(SUBNET))
    return task["Node"], pid, task["ID"], address.split("/")[0]


def in_netns(pid: int, argv: list[str], timeout: float = 120) -> str:
    return subprocess.run(["nsenter", f"--net=/proc/{pid}/ns/net", *argv], capture_output=True, text=True,
                          check=True, timeout=timeout).stdout


def probe(pid: int, *args: str, timeout: float = 120) -> dict:
    return json.loads(in_netns(pid, [PYTHON, "-c", HTTP_PROBE, *args], timeout=timeout))


def iperf(server: list[str], client: list[str], address: str, seconds: int) -> float:
    """Gbit/s received by an iperf3 server (one stream, ``seconds`` long). ``server``/``client``
    are argv prefixes that enter the right network namespace."""
    srv = subprocess.Popen([*server, "iperf3", "-s", "-1", "-B", address, "-p", "5201"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(50):
            time.sleep(0.1)
            probe_ok = subprocess.run([*client, "iperf3", "-c", address, "-p", "5201", "-t", str(seconds), "-J"],
                                      capture_output=True, text=True)
            if probe_ok.returncode == 0:
                report = json.loads(probe_ok.stdout)
                return report["end"]["sum_received"]["bits_per_second"] / 1e9
        raise RuntimeError(f"iperf3 to {address} failed: {probe_ok.stdout[-300:]} {probe_ok.stderr[-300:]}")
    finally:
        srv.kill()
        srv.wait()


def task_running_at(lab: Lab, task_id: str) -> float | None:
    import grpc

    from proto import control_pb2, control_pb2_grpc
    with grpc.insecure_channel(f"unix:{lab.host('manager1').socket}") as channel:
        task = control_pb2_grpc.ControlStub(channel).GetTask(control_pb2.GetTaskRequest(task_id=task_id),
                                                               timeout=10).task
    return task.status.timestamp if task.status.state == 512 else None   # RUNNING


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



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--seconds", type=int, default=3, help="iperf3 -t")
    parser.add_argument("--iperf-runs", type=int, default=3, help="overlay/underlay iperf3 runs (interleaved)")
    args = parser.parse_args()
    lab = Lab(f"bnet-{os.getpid()}")
    try:
        t0 = time.time()
        lab.up(3, 2)
        print(f"lab up in {time.time() - t0:.1f} s")
        image = f"{lab.registry}/shoal/busybox:latest"
        lab.shoal("manager1", "network", "create", "-d", "overlay", "--subnet", f"{SUBNET}.0/24", "benchnet")
        lab.shoal("manager1", "service", "create", "--name", "web", "--network", "benchnet", "--replicas", "2",
                  "--constraint", "node.role==worker", "--stop-signal", "KILL", image,
                  "sh", "-c", HTTPD, timeout=180)
        lab.shoal("manager1", "service", "create", "--name", "client", "--network", "benchnet", "--constraint",
                  "node.hostname==manager1", "--stop-signal", "KILL", image, "sleep", "3600", timeout=180)
        _, client_pid, _, client_ip = container(lab, "client")
        web_node, web_pid, _, web_ip = container(lab, "web", "worker1")
        [web] = inspect_json(lab, "manager1", "service", "inspect", "web")
        vip = next(v["Addr"] for v in web["Endpoint"]["VirtualIPs"] if v["Addr"].startswith(SUBNET)).split("/")[0]

        overs, unders = [], []
        for _ in range(args.iperf_runs):  # interleaved, so that load from elsewhere hits both alike
            overs.append(iperf(["nsenter", f"--net=/proc/{web_pid}/ns/net"],
                               ["nsenter", f"--net=/proc/{client_pid}/ns/net"], web_ip, args.seconds))
            unders.append(iperf(_host_prefix(lab, "worker1"), _host_prefix(lab, "manager1"), lab.address("worker1"),
                                args.seconds))
        print(f"TCP, iperf3, one stream, -t {args.seconds}, {args.iperf_runs} interleaved runs each "
              "(CPU-bound on a small VM whose cores may be shared: read the ratio of the best runs):")
        print(f"  container manager1 -> container worker1, VXLAN overlay {_gbits(overs)}")
        print(f"  host manager1 -> host worker1, underlay               {_gbits(unders)}")
        pairs = [o / u for o, u in zip(overs, unders)]
        print(f"  overlay / underlay {max(overs) / max(unders):.2f} best/best, per run "
              + " ".join(f"{r:.2f}" for r in pairs) + " (goal >= 0.80)")

        n = args.requests
        via_vip = probe(client_pid, "latency", vip, str(n))
        direct = probe(client_pid, "latency", web_ip, str(n))
        v, d = via_vip["samples"], direct["samples"]
        print(f"HTTP from a container (manager1) to busybox httpd on the workers, {n} sequential requests:")
        print(f"  via VIP {vip:15s} p50 {pct(v, .5):.3f} ms  p95 {pct(v, .95):.3f} ms  {via_vip['rate']:6.0f} req/s")
        print(f"  direct  {web_ip:15s} p50 {pct(d, .5):.3f} ms  p95 {pct(d, .95):.3f} ms  {direct['rate']:6.0f} req/s")
        print(f"  VIP / direct p50 {pct(v, .5) / pct(d, .5):.2f} (goal <= 1.10)")

        dns = probe(client_pid, "dns", "tasks.web", "200")["samples"]
        print(f"DNS at 127.0.0.11 (tasks.web, 200 queries): p50 {pct(dns, .5):.3f} ms  p95 {pct(dns, .95):.3f} ms")

        known = set(in_netns(client_pid, ["sh", "-c", f"for i in $(seq 40); do busybox wget -qO- http://{vip}/; done"]
                             ).split())
        watcher = subprocess.Popen(["nsenter", f"--net=/proc/{client_pid}/ns/net", PYTHON, "-c", HTTP_PROBE, "watch",
                                    vip, ",".join(sorted(known)), "90"], stdout=subprocess.PIPE, text=True)
        scaled = time.time()
        lab.shoal("manager1", "service", "scale", "-d", "web=3")
        out, _ = watcher.communicate(timeout=120)
        if not out.strip():
            print("new backend: no request reached a new backend within 90 s")
        else:
            hit = json.loads(out)
            new_task = next(t for t in (json.loads(line) for line in lab.shoal(
                "manager1", "service", "ps", "--format", "json", "web").stdout.splitlines() if line.strip())
                if t["ID"][:12] == hit["backend"][:12])
            running_at = task_running_at(lab, new_task["ID"])
            print(f"new backend: scale to 3 -> first request served by the new task {hit['at'] - scaled:.2f} s; "
                  + (f"{hit['at'] - running_at:.3f} s after its RUNNING status (goal <= 1 s)"
                     if running_at else "its RUNNING timestamp was not found"))
    finally:
        lab.down()
    print("nftables load time for N VIP services (3 backends each; one `nft -f` transaction each):")
    nft_scale([10, 100, 1000])


def _gbits(values: list[float]) -> str:
    """Figures in Gbit/s as 'best B Gbit/s (runs x y z)'."""
    return f"best {max(values):6.2f} Gbit/s (runs " + " ".join(f"{v:.2f}" for v in values) + ")"


def _host_prefix(lab: Lab, host: str) -> list[str]:
    """An argv prefix that runs a command in lab host ``host``'s network namespace."""
    return lab.exec_argv(host, ["true"])[:-1]


if __name__ == "__main__":
    main()
