"""Service convergence on a 3-manager + 2-worker shoal-lab (run by `make bench`).

Prints, median of 3 runs each: time from `service create --replicas N` (detached) until N
tasks are RUNNING, for N = 1, 10, 50, 100; `service scale` 50 → 100; and a 10-replica rolling
update at parallelism 1 — side by side with what Docker Swarm took on this machine kind
(docs/benchmarks.md, "Reference figures": same local image, stop signal KILL, polled every 50 ms),
as ratios.
No Docker engine runs on this machine kind, so the Docker figures are the recorded anchors.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from proto import control_pb2, control_pb2_grpc, objects_pb2  # noqa: E402
from shoal.cli.service_flags import build_spec  # noqa: E402
from shoal.lab import Lab  # noqa: E402

DOCKER = {"create 1": 0.449, "create 10": 1.449, "create 50": 5.798, "scale 50->100": 6.388,
          "rolling update 10 @1": 16.54}
POLL = 0.05


def stub(lab: Lab):
    return control_pb2_grpc.ControlStub(grpc.insecure_channel(f"unix:{lab.host('manager1').socket}"))


def opts(**kw) -> dict:
    base = {"name": None, "replicas": None, "mode": None, "stop_signal": "KILL", "detach": True}
    base.update(kw)
    return base


def running(control, service_id: str, spec_version: int | None = None) -> int:
    tasks = control.ListTasks(control_pb2.ListTasksRequest(filters={"service": service_id})).tasks
    return sum(1 for t in tasks if t.status.state == objects_pb2.RUNNING and t.desired_state == objects_pb2.RUNNING
               and (spec_version is None or t.spec_version == spec_version))


def wait_running(control, service_id: str, n: int, spec_version: int | None = None, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while running(control, service_id, spec_version) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{n} tasks of {service_id} not running after {timeout}s")
        time.sleep(POLL)


def remove_all(control) -> None:
    for service in control.ListServices(control_pb2.ListServicesRequest()).services:
        control.RemoveService(control_pb2.RemoveServiceRequest(service_id=service.id))
    deadline = time.monotonic() + 120
    while control.ListTasks(control_pb2.ListTasksRequest()).tasks and time.monotonic() < deadline:
        time.sleep(0.2)


def create(control, image: str, name: str, replicas: int) -> str:
    spec = build_spec(image, ["sleep", "3600"], opts(name=name, replicas=replicas))
    return control.CreateService(control_pb2.CreateServiceRequest(spec=spec)).service.id


def main() -> None:
    lab = Lab(f"bench-conv-{os.getpid() % 10000}")
    results: dict[str, list[float]] = {}
    try:
        lab.up(3, 2)
        control = stub(lab)
        image = f"{lab.registry}/shoal/busybox:latest"
        # Warm the image cache on every node, as Docker's runs used a local image.
        service_id = create(control, image, "warm", 10)
        wait_running(control, service_id, 10)
        remove_all(control)
        for n in (1, 10, 50, 100):
            for run in range(3):
                started = time.perf_counter()
                service_id = create(control, image, f"c{n}x{run}", n)
                wait_running(control, service_id, n)
                results.setdefault(f"create {n}", []).append(time.perf_counter() - started)
                remove_all(control)
        for run in range(3):
            service_id = create(control, image, f"s{run}", 50)
            wait_running(control, service_id, 50)
            service = control.GetService(control_pb2.GetServiceRequest(service_id=service_id)).service
            service.spec.replicas = 100
            started = time.perf_counter()
            control.UpdateService(control_pb2.UpdateServiceRequest(
                service_id=service_id, version=service.meta.version, spec=service.spec))
            wait_running(control, service_id, 100)
            results.setdefault("scale 50->100", []).append(time.perf_counter() - started)
            remove_all(control)
        for run in range(3):
            spec = build_spec(image, ["sleep", "3600"], opts(name=f"u{run}", replicas=10))
            spec.update.parallelism = 1
            spec.update.delay = 0
            service_id = control.CreateService(control_pb2.CreateServiceRequest(spec=spec)).service.id
            wait_running(control, service_id, 10)
            service = control.GetService(control_pb2.GetServiceRequest(service_id=service_id)).service
            service.spec.task.container.env.append(f"RUN={run}")
            started = time.perf_counter()
            updated = control.UpdateService(control_pb2.UpdateServiceRequest(
                service_id=service_id, version=service.meta.version, spec=service.spec)).service
            wait_running(control, service_id, 10, spec_version=updated.spec_version)
            results.setdefault("rolling update 10 @1", []).append(time.perf_counter() - started)
            remove_all(control)
    finally:
        lab.down()
    print(f"{'what':<24}{'shoal median (min-max) s':<30}{'Docker Swarm s':<16}ratio")
    for what, samples in results.items():
        med = statistics.median(samples)
        docker = DOCKER.get(what)
        ratio = f"{med / docker:.2f}" if docker else "-"
        print(f"{what:<24}{med:>8.3f} ({min(samples):.3f}-{max(samples):.3f})        "
              f"{docker if docker else '-':<16}{ratio}")


if __name__ == "__main__":
    main()
