"""Density on one node: 500 replicas of one service on a 1-manager shoal-lab (run by `make bench`).

Prints: seconds from `service create --replicas 500` (detached) until 500 tasks are RUNNING, and
whether they are all still running 30 s later; shoald and shoal-runtimed RSS with 500 tasks; the
PSS of one container's waiter process (the only process per container besides the workload);
seconds to scale 500 -> 0 until runtimed holds no container. Compared with issue 10's goals
(<= 29 s; shoald + runtimed <= 250 MiB) and Docker Swarm on this machine kind (docs/benchmarks:
5.8 s for 50 replicas, about 0.116 s a task, so about 58 s for 500; dockerd + containerd 205 MiB
RSS at 100 tasks). Usage: bench/density.py [REPLICAS]
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent_runtime.api import RuntimeClient  # noqa: E402
from proto import control_pb2, control_pb2_grpc, objects_pb2  # noqa: E402
from shoal.cli.service_flags import build_spec  # noqa: E402
from shoal.lab import Lab  # noqa: E402

GOAL_SECONDS, GOAL_RSS_MIB = 29.0, 250.0
DOCKER_PER_TASK = 5.798 / 50          # create 50 on Docker Swarm here (seconds per task)
DOCKER_RSS_100 = 145.9 + 59.2         # dockerd + containerd at 100 tasks (MiB)
POLL = 0.2


def running(control, service_id: str) -> int:
    tasks = control.ListTasks(control_pb2.ListTasksRequest(filters={"service": service_id})).tasks
    return sum(1 for t in tasks if t.status.state == objects_pb2.RUNNING and t.desired_state == objects_pb2.RUNNING)


def wait(predicate, timeout: float, what: str) -> float:
    started = time.perf_counter()
    while not predicate():
        if time.perf_counter() - started > timeout:
            raise TimeoutError(f"{what}: not after {timeout:.0f} s")
        time.sleep(POLL)
    return time.perf_counter() - started


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` so far (load-independent, unlike wall time on a shared machine)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def waiter_pss_kib(runtimed_pid: int, containers) -> float:
    """Mean PSS of the containers' waiters: the parents of the workloads (busybox sh)."""
    pids = []
    for c in containers:
        try:
            stat = Path(f"/proc/{c.state.pid}/stat").read_text()
            pids.append(int(stat[stat.rindex(")") + 2:].split()[1]))  # the workload's parent
        except (OSError, ValueError):
            continue
    values = [pss_kib(p) for p in pids[:50]]
    return sum(values) / len(values) if values else 0.0


def main() -> None:
    replicas = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    lab = Lab(f"bench-dens-{os.getpid() % 10000}")
    try:
        lab.up(1, 0)
        control = control_pb2_grpc.ControlStub(grpc.insecure_channel(f"unix:{lab.host('manager1').socket}"))
        runtime = RuntimeClient(str(lab.host("manager1").runtime_socket), timeout=120)
        image = f"{lab.registry}/shoal/busybox:latest"
        base = {"name": "warm", "replicas": 1, "mode": None, "stop_signal": "KILL", "detach": True}
        warm = control.CreateService(control_pb2.CreateServiceRequest(
            spec=build_spec(image, ["sleep", "3600"], base))).service.id
        wait(lambda: running(control, warm) == 1, 120, "warm-up task")  # the image is local, as for Docker
        control.RemoveService(control_pb2.RemoveServiceRequest(service_id=warm))
        wait(lambda: not runtime.list(all=True), 120, "warm-up container removed")
        record = lab.record().hosts["manager1"]
        idle = rss_mib(record.shoald.pid) + rss_mib(record.runtimed.pid)

        cpu0 = {name: cpu_seconds(getattr(record, name).pid) for name in ("shoald", "runtimed")}
        load0 = os.getloadavg()[0]
        started = time.perf_counter()
        spec = build_spec(image, ["sleep", "3600"], dict(base, name="dense", replicas=replicas))
        service_id = control.CreateService(control_pb2.CreateServiceRequest(spec=spec)).service.id
        wait(lambda: running(control, service_id) == replicas, 900, f"{replicas} tasks running")
        converge = time.perf_counter() - started
        cpu = {name: cpu_seconds(getattr(record, name).pid) - cpu0[name] for name in cpu0}
        load = (load0 + os.getloadavg()[0]) / 2
        shoald, runtimed = rss_mib(record.shoald.pid), rss_mib(record.runtimed.pid)
        time.sleep(30)
        stayed = running(control, service_id)
        containers = runtime.list()
        waiter = waiter_pss_kib(record.runtimed.pid, containers)

        service = control.GetService(control_pb2.GetServiceRequest(service_id=service_id)).service
        service.spec.replicas = 0
        started = time.perf_counter()
        control.UpdateService(control_pb2.UpdateServiceRequest(service_id=service_id, version=service.meta.version,
                                                               spec=service.spec))
        wait(lambda: not runtime.list(all=True), 900, "every container removed")
        drain = time.perf_counter() - started
    finally:
        lab.down()
    docker = DOCKER_PER_TASK * replicas
    total = shoald + runtimed
    print(f"{replicas} replicas on one node")
    print(f"  create -> all running     {converge:7.1f} s   goal {GOAL_SECONDS:.0f} s: {converge / GOAL_SECONDS:.2f}x;"
          f" Docker Swarm ~{docker:.0f} s (5.8 s per 50): {converge / docker:.2f}x")
    print(f"  CPU while converging      shoald {cpu['shoald']:.1f} s, runtimed {cpu['runtimed']:.1f} s"
          f" (container inits not included); machine load average ~{load:.1f} on {os.cpu_count()} CPUs")
    print(f"  running 30 s later        {stayed} of {replicas}; {len(containers)} containers running in runtimed")
    print(f"  RSS shoald + runtimed     {total:7.1f} MiB (shoald {shoald:.1f}, runtimed {runtimed:.1f}; idle {idle:.1f})"
          f"   goal {GOAL_RSS_MIB:.0f} MiB: {total / GOAL_RSS_MIB:.2f}x;"
          f" dockerd + containerd at 100 tasks {DOCKER_RSS_100:.0f} MiB")
    print(f"  per task, over idle       {(total - idle) * 1024 / replicas:7.1f} KiB")
    print(f"  waiter PSS per container  {waiter:7.1f} KiB")
    print(f"  scale {replicas} -> 0            {drain:7.1f} s")


if __name__ == "__main__":
    main()
