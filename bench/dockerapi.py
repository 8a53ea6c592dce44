"""`docker service ls` through shoald's Docker API against `shoal service ls`, on one lab manager.

Issue 13's goal: the Docker API adds translation, not round trips, so `docker service ls` against
Shoal should take at most 1.5x `shoal service ls`. Both are whole CLI invocations, timed the way
hyperfine does (warm-up runs, then N alternated runs, wall clock), with S services of R replicas
created first. Also timed: `docker service ls` alone against a bare GET of the same endpoint
(curl), which separates the docker CLI's own start-up from the server's answer.

Prints (no asserts) median and p95 of each, and the ratio docker/shoal of the medians.

Run as root: ``.venv/bin/python bench/dockerapi.py [--runs 30] [--services 10] [--replicas 1]``. It
brings up a 1-manager lab (``bench-dockerapi-PID``) and brings it down at the end.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shoal.lab import Lab  # noqa: E402


def timed(argv: list[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def summary(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return f"median {statistics.median(samples) * 1000:7.1f} ms   p95 {p95 * 1000:7.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--services", type=int, default=10)
    parser.add_argument("--replicas", type=int, default=1)
    args = parser.parse_args()
    if shutil.which("docker") is None:
        sys.exit("the docker CLI is not installed (make install gets it)")
    lab = Lab(f"bench-dockerapi-{os.getpid()}")
    lab.up(1, 0)
    try:
        host = lab.status()["hosts"][0]
        sock = host["docker_socket"]
        image = f"{lab.registry}/shoal/busybox:latest"
        for i in range(args.services):
            lab.shoal("manager1", "service", "create", "-d", "--name", f"b{i}", "--replicas", str(args.replicas),
                      image, "sleep", "1d")
        env = {"DOCKER_HOST": f"unix://{sock}", "DOCKER_CONFIG": f"/tmp/bench-dockerapi-{os.getpid()}",
               "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        shoal = [str(Path(sys.executable).parent / "shoal"), "--host", f"unix://{host['socket']}", "service", "ls"]
        docker = ["docker", "service", "ls"]
        curl = ["curl", "-sf", "-o", "/dev/null", "--unix-socket", sock, "http://localhost/v1.50/services?status=true"]
        for _ in range(args.warmup):
            timed(shoal), timed(docker, env), timed(curl)
        results: dict[str, list[float]] = {"shoal service ls": [], "docker service ls": [], "curl GET /services": []}
        for _ in range(args.runs):   # alternated, so load on the machine hits both alike
            results["shoal service ls"].append(timed(shoal))
            results["docker service ls"].append(timed(docker, env))
            results["curl GET /services"].append(timed(curl))
        print(f"{args.services} services x {args.replicas} replicas, {args.runs} runs each (after {args.warmup} warm-up)")
        for name, samples in results.items():
            print(f"  {name:20s} {summary(samples)}")
        ratio = statistics.median(results["docker service ls"]) / statistics.median(results["shoal service ls"])
        print(f"  docker/shoal median ratio: {ratio:.2f} (goal: at most 1.5)")
    finally:
        lab.down()


if __name__ == "__main__":
    main()
