"""Raft benchmark on a 3-manager shoal-lab (run by `make bench`).

Prints:
- election: time from SIGKILL of the leader's shoald until a surviving manager commits a
  write (median of 5 kills), against the goal of 2 s (SwarmKit needs about 10 s by default);
- single-write commit latency p50/p99: sequential node-label updates through the ControlAPI
  of the leader (a unix-socket gRPC round trip + validation + one Raft commit);
- concurrent writes per second: several clients updating different nodes at once;
- raw batched store writes per second from bench/raft_local.py (3 RaftNodes on loopback),
  if that script is present.
"""

from __future__ import annotations

import concurrent.futures
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from proto import control_pb2, control_pb2_grpc  # noqa: E402
from shoal.lab import Lab  # noqa: E402


def stub(lab: Lab, host: str):
    channel = grpc.insecure_channel(f"unix:{lab.host(host).socket}")
    return control_pb2_grpc.ControlStub(channel)


def label_write(control, node_ref: str, key: str, value: str, timeout: float = 5.0) -> None:
    node = control.GetNode(control_pb2.GetNodeRequest(node_id=node_ref), timeout=timeout).node
    spec = node.spec
    spec.annotations.labels[key] = value
    control.UpdateNode(control_pb2.UpdateNodeRequest(node_id=node.id, version=node.meta.version, spec=spec),
                       timeout=timeout)


def leader_host(lab: Lab, managers: list[str]) -> str:
    for host in managers:
        try:
            nodes = stub(lab, host).ListNodes(control_pb2.ListNodesRequest(), timeout=2).nodes
        except grpc.RpcError:
            continue
        for node in nodes:
            if node.manager_status.leader:
                return node.description.hostname
    raise RuntimeError("no leader")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def bench_latency(lab: Lab, leader: str, writes: int = 300) -> list[float]:
    control = stub(lab, leader)
    node_id = control.GetNode(control_pb2.GetNodeRequest(node_id=leader)).node.id
    samples = []
    version = control.GetNode(control_pb2.GetNodeRequest(node_id=node_id)).node.meta.version
    spec = control.GetNode(control_pb2.GetNodeRequest(node_id=node_id)).node.spec
    for i in range(writes):
        spec.annotations.labels["bench"] = str(i)
        started = time.perf_counter()
        reply = control.UpdateNode(control_pb2.UpdateNodeRequest(node_id=node_id, version=version, spec=spec))
        samples.append(time.perf_counter() - started)
        version = reply.node.meta.version
    return samples


def bench_concurrent(lab: Lab, managers: list[str], seconds: float = 3.0) -> float:
    def worker(host: str) -> int:
        control = stub(lab, host)
        node = control.GetNode(control_pb2.GetNodeRequest(node_id=host)).node
        count, deadline = 0, time.monotonic() + seconds
        while time.monotonic() < deadline:
            node.spec.annotations.labels["bench"] = str(count)
            node = control.UpdateNode(control_pb2.UpdateNodeRequest(
                node_id=node.id, version=node.meta.version, spec=node.spec)).node
            count += 1
        return count

    with concurrent.futures.ThreadPoolExecutor(len(managers)) as pool:
        total = sum(pool.map(worker, managers))
    return total / seconds


def bench_election(lab: Lab, managers: list[str], rounds: int = 5) -> list[float]:
    samples = []
    for _ in range(rounds):
        lab.wait_ready(on=managers[0])
        leader = leader_host(lab, managers)
        survivor = next(m for m in managers if m != leader)
        control = stub(lab, survivor)
        lab.kill(leader)
        killed = time.perf_counter()
        while True:
            try:
                label_write(control, survivor, "elected", str(killed), timeout=1.0)
                break
            except grpc.RpcError:
                time.sleep(0.01)
        samples.append(time.perf_counter() - killed)
        lab.start(leader)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                nodes = stub(lab, survivor).ListNodes(control_pb2.ListNodesRequest(), timeout=2).nodes
                if all(n.status.state == 2 for n in nodes) and \
                        all(n.manager_status.reachability == 2 or n.manager_status.leader for n in nodes):
                    break
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    return samples


def main() -> None:
    lab = Lab(f"bench-raft-{os.getpid() % 10000}")
    managers = ["manager1", "manager2", "manager3"]
    try:
        lab.up(3, 0, runtime=False)
        leader = leader_host(lab, managers)
        latency = bench_latency(lab, leader)
        print(f"single-write commit via ControlAPI (leader, n={len(latency)}): "
              f"p50 {percentile(latency, 50) * 1000:.2f} ms, p99 {percentile(latency, 99) * 1000:.2f} ms "
              f"(goal p50 < 10 ms)")
        follower = next(m for m in managers if m != leader)
        latency_f = bench_latency(lab, follower, 100)
        print(f"single-write commit via a follower (forwarded, n={len(latency_f)}): "
              f"p50 {percentile(latency_f, 50) * 1000:.2f} ms, p99 {percentile(latency_f, 99) * 1000:.2f} ms")
        rate = bench_concurrent(lab, managers)
        print(f"concurrent writes, 3 clients on 3 managers: {rate:.0f} writes/s")
        election = bench_election(lab, managers)
        print(f"leader SIGKILLed -> a survivor commits a write: median {statistics.median(election):.2f} s "
              f"(min {min(election):.2f}, max {max(election):.2f}, n={len(election)}; goal < 2 s, "
              f"SwarmKit defaults ~10 s)")
    finally:
        lab.down()
    local = Path(__file__).with_name("raft_local.py")
    if local.exists():
        print("-- raw store throughput, 3 RaftNodes on loopback (bench/raft_local.py):")
        subprocess.run([sys.executable, str(local)], check=False)


if __name__ == "__main__":
    main()
