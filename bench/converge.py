"""Service convergence on a one-node shoal-lab, and with --with-docker on a one-node Docker Swarm
in the same run (run by `make bench`, Shoal only).

    bench/converge.py [--with-docker] [--runs N] [--sizes 1,10,50,100,500]

Figures, seconds, median (min-max) of --runs runs (sizes of 500 and more run once): from a
detached `service create --replicas N` of `sleep 3600` until N tasks are running, for each size;
`service scale` 50 -> 100 until 100 are running; a rolling update (an env change) of a
10-replica service at parallelism 1, delay 0, until all 10 run the new spec. Both sides use the
same busybox image (deploy/images/build_busybox.py), named by ID for Docker, stop signal KILL,
polled every 50 ms through each one's API; the two run interleaved (Shoal, then Docker, for each
run) so machine load hits both alike. The last column is the ratio Shoal / Docker.

Without --with-docker the Docker column holds figures Docker Swarm took on this machine kind
earlier (docs/benchmarks.md), marked "*": compare those loosely, the machines are noisy.

--with-docker installs Debian's docker.io if dockerd is missing (--no-install-recommends, services
left disabled) and runs a private engine, started and stopped by this process: containerd and
dockerd in their own network and mount namespaces (`unshare`), with their own root, state,
exec-root, pidfile and sockets under one temp dir, `--iptables=false --ip6tables=false
--ip-forward=false --bridge=none`, and their own cgroup parent. At the end it leaves the swarm,
stops dockerd and containerd by PID (SIGTERM, then SIGKILL), removes the temp dir and cgroups, and
checks that the machine is as before (no new links, nft or iptables rules, mounts or processes of
its own); it fails loudly if not.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Docker Swarm on this machine kind, measured earlier (docs/benchmarks.md): used without --with-docker.
DOCKER_RECORDED = {"create 1": 0.449, "create 10": 1.449, "create 50": 5.798, "scale 50->100": 6.388,
                   "rolling update 10 @1": 16.54}
POLL = 0.05
SIZES = (1, 10, 50, 100, 500)
ONCE_FROM = 500          # sizes this large run once, whatever --runs says
WAIT_TIMEOUT = 900.0


# ----------------------------------------------------------------------------------- the report

@dataclass
class Figure:
    what: str
    shoal: list[float] = field(default_factory=list)
    docker: list[float] = field(default_factory=list)


def summary(samples: list[float]) -> str:
    """``median (min-max)``, or the single value; ``-`` for none."""
    if not samples:
        return "-"
    med = statistics.median(samples)
    if len(samples) == 1:
        return f"{med:.3f}"
    return f"{med:.3f} ({min(samples):.3f}-{max(samples):.3f})"


def ratio(shoal: list[float], docker: list[float]) -> str:
    """Shoal's median over Docker's, two decimals (below 1: Shoal is faster); ``-`` if either is missing."""
    if not shoal or not docker:
        return "-"
    d = statistics.median(docker)
    return f"{statistics.median(shoal) / d:.2f}" if d > 0 else "-"


def report(figures: list[Figure], recorded: dict[str, float] | None = None) -> str:
    """The table: one row per figure. With ``recorded`` (no Docker ran), a figure without Docker
    samples takes the recorded one, marked ``*``."""
    rows = [("what", "shoal s", "docker swarm s", "shoal/docker")]
    marked = False
    for f in figures:
        docker, mark = f.docker, ""
        if not docker and recorded and f.what in recorded:
            docker, mark, marked = [recorded[f.what]], "*", True
        rows.append((f.what, summary(f.shoal), summary(docker) + mark, ratio(f.shoal, docker)))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(r)).rstrip() for r in rows]
    if marked:
        lines.append("* recorded earlier on this machine kind (docs/benchmarks.md), not measured in this run")
    return "\n".join(lines)


# ------------------------------------------------------------------------------- the two sides

class Side(Protocol):
    name: str

    def create(self, name: str, replicas: int, parallelism: int = 1) -> str: ...

    def scale(self, service_id: str, replicas: int) -> None: ...

    def update(self, service_id: str, marker: str) -> Any: ...

    def running(self, service_id: str, token: Any = None) -> int: ...

    def remove_all(self) -> None: ...


def wait_running(side: Side, service_id: str, n: int, token: Any = None, timeout: float = WAIT_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while side.running(service_id, token) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{side.name}: {n} tasks of {service_id} not running after {timeout:.0f} s")
        time.sleep(POLL)


class Shoal:
    """A one-node shoal-lab, driven through the manager's gRPC Control API."""

    name = "shoal"

    def __init__(self) -> None:
        from shoal.lab import Lab
        self.lab = Lab(f"bench-conv-{os.getpid() % 10000}")
        self.control: Any = None
        self.image = ""

    def up(self) -> None:
        import grpc

        from proto import control_pb2_grpc
        self.lab.up(1, 0)
        self.control = control_pb2_grpc.ControlStub(
            grpc.insecure_channel(f"unix:{self.lab.host('manager1').socket}"))
        self.image = f"{self.lab.registry}/shoal/busybox:latest"
        # Pull the image once, as Docker's runs use a loaded image.
        wait_running(self, self.create("warm", 1), 1)
        self.remove_all()

    def down(self) -> None:
        self.lab.down()

    def create(self, name: str, replicas: int, parallelism: int = 1) -> str:
        from proto import control_pb2
        from shoal.cli.service_flags import build_spec
        spec = build_spec(self.image, ["sleep", "3600"], {"name": name, "replicas": replicas, "mode": None,
                                                          "stop_signal": "KILL", "detach": True})
        spec.update.parallelism = parallelism
        spec.update.delay = 0
        return str(self.control.CreateService(control_pb2.CreateServiceRequest(spec=spec)).service.id)

    def _update(self, service_id: str, change) -> Any:
        from proto import control_pb2
        service = self.control.GetService(control_pb2.GetServiceRequest(service_id=service_id)).service
        change(service.spec)
        return self.control.UpdateService(control_pb2.UpdateServiceRequest(
            service_id=service_id, version=service.meta.version, spec=service.spec)).service

    def scale(self, service_id: str, replicas: int) -> None:
        self._update(service_id, lambda spec: setattr(spec, "replicas", replicas))

    def update(self, service_id: str, marker: str) -> Any:
        return self._update(service_id, lambda spec: spec.task.container.env.append(marker)).spec_version

    def running(self, service_id: str, token: Any = None) -> int:
        from proto import control_pb2, objects_pb2
        tasks = self.control.ListTasks(control_pb2.ListTasksRequest(filters={"service": service_id})).tasks
        return sum(1 for t in tasks if t.status.state == objects_pb2.RUNNING and t.desired_state == objects_pb2.RUNNING
                   and (token is None or t.spec_version == token))

    def remove_all(self) -> None:
        from proto import control_pb2
        import grpc
        for service in self.control.ListServices(control_pb2.ListServicesRequest()).services:
            for attempt in range(20):
                try:
                    self.control.RemoveService(control_pb2.RemoveServiceRequest(service_id=service.id))
                    break
                except grpc.RpcError as exc:  # a rolling update's last status write raced the removal
                    if exc.code() != grpc.StatusCode.ABORTED or attempt == 19:
                        raise
                    print(f"note: shoal: service rm {service.spec.annotations.name} answered"
                          f" {exc.details()!r}; retrying", file=sys.stderr)
                    time.sleep(0.2)
        wait_for(lambda: not self.control.ListTasks(control_pb2.ListTasksRequest()).tasks, "shoal: tasks removed")


def wait_for(predicate, what: str, timeout: float = WAIT_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not after {timeout:.0f} s")
        time.sleep(0.2)


class DockerError(RuntimeError):
    pass


class _UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.unix_path)
        self.sock = sock


INSTALLED_UNITS = {"docker.io": ("docker.service", "docker.socket"), "containerd": ("containerd.service",)}


def installed(package: str) -> bool:
    out = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True).stdout
    return "install ok installed" in out


def install_docker() -> None:
    """Debian's docker.io, if dockerd is missing: no recommends, no service started or left enabled."""
    if shutil.which("dockerd"):
        return
    new = [p for p in INSTALLED_UNITS if not installed(p)]
    print("installing docker.io (apt-get install --no-install-recommends)", flush=True)
    policy = Path("/usr/sbin/policy-rc.d")
    own_policy = not policy.exists()
    if own_policy:  # keep the package scripts from starting the daemons
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    try:
        subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "docker.io"], check=True,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    finally:
        if own_policy:
            policy.unlink()
    units = [u for p in new for u in INSTALLED_UNITS[p]]
    if units and shutil.which("systemctl"):
        subprocess.run(["systemctl", "disable", *units], check=False, capture_output=True)


def machine_state() -> dict[str, set[str]]:
    """What a Docker engine could leave behind in the root namespaces, as comparable lines."""
    def lines(cmd: list[str]) -> set[str]:
        if not shutil.which(cmd[0]):
            return set()
        out = subprocess.run(cmd, capture_output=True, text=True).stdout
        return {re.sub(r"\[\d+:\d+\]|counter packets \d+ bytes \d+", "", line).strip() for line in out.splitlines()
                if line.strip() and not line.startswith("#")}
    links = {line.split(":")[1].strip().split("@")[0] for line in lines(["ip", "-o", "link", "show"])}
    mounts = {line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()}
    return {"links": links, "nft": lines(["nft", "list", "ruleset"]), "iptables": lines(["iptables-save"]),
            "ip6tables": lines(["ip6tables-save"]), "mounts": mounts}


DOCKERISH = re.compile(r"docker|\bveth[0-9a-f]{7}\b|br-[0-9a-f]{12}|overlay|containerd|swarm|ingress", re.I)


def state_changes(before: dict[str, set[str]], after: dict[str, set[str]], tmp: str) -> tuple[list[str], list[str]]:
    """(what Docker left, other changes). Other helpers' labs change the machine too: only entries
    that look like Docker's, or lie under its temp dir, count against it."""
    ours, others = [], []
    for key in before:
        for line in sorted(after[key] - before[key]):
            (ours if DOCKERISH.search(line) or tmp in line else others).append(f"new {key}: {line}")
    return ours, others


class Docker:
    """A private one-node Docker Swarm (see the module doc), driven through Docker's Engine API."""

    name = "docker"
    API = "/v1.41"

    def __init__(self) -> None:
        self.tmp = tempfile.mkdtemp(prefix="shoal-bench-docker-")
        self.socket = f"{self.tmp}/docker.sock"
        self.cgroup_parent = f"shoal-bench-docker-{os.getpid()}"
        self.proc: subprocess.Popen | None = None
        self.containerd_pid: int | None = None
        self.image = ""
        self.before: dict[str, set[str]] = {}
        self.run_dirs = {d: os.path.exists(d) for d in ("/run/docker", "/run/containerd", "/etc/docker/key.json")}
        self.log = Path(self.tmp) / "engine.log"

    # -------------------------------------------------------------------------- lifecycle
    def up(self) -> None:
        install_docker()
        self.before = machine_state()
        tmp = self.tmp
        Path(tmp, "containerd.toml").write_text(
            f'version = 2\nroot = "{tmp}/containerd/root"\nstate = "{tmp}/containerd/state"\n'
            f'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
            f'[grpc]\n  address = "{tmp}/containerd.sock"\n[debug]\n  address = ""\n[metrics]\n  address = ""\n')
        Path(tmp, "daemon.json").write_text(json.dumps({"deprecated-key-path": f"{tmp}/key.json"}))
        # One shell in fresh network and mount namespaces: it starts containerd, then becomes dockerd.
        Path(tmp, "start.sh").write_text(
            "set -e\nip link set lo up\n"
            f"containerd --config {tmp}/containerd.toml >>{tmp}/containerd.log 2>&1 &\n"
            f"echo $! > {tmp}/containerd.pid\n"
            f"exec dockerd --config-file {tmp}/daemon.json --data-root {tmp}/data --exec-root {tmp}/exec"
            f" --pidfile {tmp}/dockerd.pid -H unix://{self.socket} --containerd {tmp}/containerd.sock"
            " --iptables=false --ip6tables=false --ip-forward=false --bridge=none"
            f" --cgroup-parent /{self.cgroup_parent}\n")
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(["unshare", "--net", "--mount", "--propagation", "private", "--",
                                          "sh", f"{tmp}/start.sh"], stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            if self.containerd_pid is None and Path(tmp, "containerd.pid").exists():
                text = Path(tmp, "containerd.pid").read_text().strip()
                self.containerd_pid = int(text) if text else None
            if self.proc.poll() is not None:
                raise DockerError(f"dockerd exited with {self.proc.returncode}: {self._log_tail()}")
            try:
                if self.api("GET", "/_ping", raw=True) == b"OK":
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise DockerError(f"dockerd not answering on {self.socket} after 60 s: {self._log_tail()}")
            time.sleep(0.2)
        self._load_image()
        self.api("POST", "/swarm/init", {"ListenAddr": "127.0.0.1:2377", "AdvertiseAddr": "127.0.0.1"})
        wait_running(self, self.create("warm", 1), 1)
        self.remove_all()

    def _log_tail(self) -> str:
        try:
            return " | ".join(self.log.read_text(errors="replace").splitlines()[-5:])
        except OSError:
            return "(no log)"

    def _load_image(self) -> None:
        oci, archive = f"{self.tmp}/oci", f"{self.tmp}/busybox.tar"
        subprocess.run([sys.executable, str(ROOT / "deploy/images/build_busybox.py"), oci], check=True,
                       capture_output=True)
        subprocess.run(["skopeo", "copy", "-q", f"oci:{oci}", f"docker-archive:{archive}:shoal/busybox:latest"],
                       check=True, capture_output=True)
        with open(archive, "rb") as f:
            self.api("POST", "/images/load?quiet=1", f.read(), content_type="application/x-tar", raw=True)
        self.image = self.api("GET", "/images/shoal/busybox:latest/json")["Id"]  # by ID: no registry lookups

    def down(self) -> None:
        """Stop everything this engine started and check the machine is as it was; raise if not."""
        problems: list[str] = []
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.remove_all()
            except Exception as exc:  # still stop everything
                problems.append(f"removing services: {exc}")
            # Shims exit a while after their containers are removed (long under load): wait for them.
            daemons = {self.proc.pid, self.containerd_pid}
            try:
                wait_for(lambda: not set(self._own_processes()) - daemons, "docker: shims exited", 120)
            except TimeoutError as exc:
                problems.append(str(exc))
            try:
                self.api("POST", "/swarm/leave?force=1")
            except Exception as exc:
                problems.append(f"swarm leave: {exc}")
        if self.proc is not None:
            stop(self.proc.pid, "dockerd", problems)
            self.proc.wait()
        if self.containerd_pid:
            stop(self.containerd_pid, "containerd", problems)
        for pid in self._own_processes():  # shims or containers that outlived their daemons
            problems.append(f"leftover process {pid}: {_cmdline(pid)}")
            stop(pid, "leftover", problems)
        for mount in sorted((m for m in machine_state()["mounts"] if m.startswith(self.tmp)), reverse=True):
            problems.append(f"leftover mount {mount}")
            subprocess.run(["umount", "-l", mount], check=False)
        problems += remove_cgroups(self.cgroup_parent)
        for path, existed in self.run_dirs.items():
            if not existed and os.path.exists(path):
                if os.path.isdir(path):
                    shutil.rmtree(path)
                else:
                    os.unlink(path)
        shutil.rmtree(self.tmp, ignore_errors=True)
        if self.before:
            ours, others = state_changes(self.before, machine_state(), self.tmp)
            problems += ours
            for line in others:
                print(f"note: changed meanwhile, by something else on this machine: {line}", file=sys.stderr)
        if problems:
            raise DockerError("the Docker engine did not leave the machine as it found it:\n  " + "\n  ".join(problems))

    def _own_processes(self) -> list[int]:
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) != os.getpid():
                cgroups = _read(entry / "cgroup")
                if self.tmp in _cmdline(int(entry.name)) or f"/{self.cgroup_parent}/" in cgroups:
                    pids.append(int(entry.name))
        return pids

    # ------------------------------------------------------------------------------ API
    def api(self, method: str, path: str, body: Any = None, content_type: str = "application/json",
            raw: bool = False) -> Any:
        conn = _UnixHTTP(self.socket, 120)
        try:
            data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
            conn.request(method, self.API + path, body=data, headers={"Content-Type": content_type})
            resp = conn.getresponse()
            payload = resp.read()
        finally:
            conn.close()
        if resp.status >= 300:
            raise DockerError(f"{method} {path}: HTTP {resp.status}: {payload[:300]!r}")
        if raw:
            return payload
        return json.loads(payload) if payload else None

    def create(self, name: str, replicas: int, parallelism: int = 1) -> str:
        spec = {"Name": name, "Mode": {"Replicated": {"Replicas": replicas}},
                "TaskTemplate": {"ContainerSpec": {"Image": self.image, "Command": ["sleep", "3600"],
                                                   "StopSignal": "KILL"}},
                "UpdateConfig": {"Parallelism": parallelism, "Delay": 0}}
        return str(self.api("POST", "/services/create", spec)["ID"])

    def _update(self, service_id: str, change) -> None:
        service = self.api("GET", f"/services/{service_id}")
        spec = service["Spec"]
        change(spec)
        self.api("POST", f"/services/{service_id}/update?version={service['Version']['Index']}", spec)

    def scale(self, service_id: str, replicas: int) -> None:
        self._update(service_id, lambda spec: spec["Mode"]["Replicated"].update(Replicas=replicas))

    def update(self, service_id: str, marker: str) -> Any:
        self._update(service_id, lambda spec: spec["TaskTemplate"]["ContainerSpec"].setdefault("Env", []).append(marker))
        return marker

    def running(self, service_id: str, token: Any = None) -> int:
        filters = urllib.parse.quote(json.dumps({"service": [service_id], "desired-state": ["running"]}))
        tasks = self.api("GET", f"/tasks?filters={filters}")
        return sum(1 for t in tasks if t["Status"]["State"] == "running"
                   and (token is None or token in t["Spec"]["ContainerSpec"].get("Env", [])))

    def remove_all(self) -> None:
        for service in self.api("GET", "/services"):
            self.api("DELETE", f"/services/{service['ID']}")
        wait_for(lambda: not self.api("GET", "/containers/json?all=1"), "docker: containers removed")


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _cmdline(pid: int) -> str:
    return _read(Path(f"/proc/{pid}/cmdline")).replace("\0", " ").strip()


def stop(pid: int, what: str, problems: list[str], grace: float = 30.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; a process that needed SIGKILL is a problem."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:  # not our child: poll for it
            if not Path(f"/proc/{pid}").exists():
                return
        time.sleep(0.1)
    problems.append(f"{what} (pid {pid}) ignored SIGTERM for {grace:.0f} s: killed")
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def remove_cgroups(parent: str) -> list[str]:
    """rmdir the engine's cgroup tree in every hierarchy; one that will not go is a problem."""
    problems = []
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        top = hierarchy / parent
        if not top.is_dir():
            continue
        for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda w: -len(w[0])):
            try:
                os.rmdir(dirpath)
            except OSError as exc:
                problems.append(f"cgroup {dirpath}: {exc}")
    return problems


# ----------------------------------------------------------------------------- the measurement

def measure(sides: list[Side], sizes: tuple[int, ...], runs: int) -> list[Figure]:
    figures: list[Figure] = []

    def record(fig: Figure, side: Side, seconds: float) -> None:
        (fig.shoal if side.name == "shoal" else fig.docker).append(seconds)
        print(f"  {fig.what:<22} {side.name:<7} {seconds:8.3f} s", flush=True)

    for n in sizes:
        fig = Figure(f"create {n}")
        figures.append(fig)
        for run in range(1 if n >= ONCE_FROM else runs):
            for side in sides:
                started = time.perf_counter()
                wait_running(side, side.create(f"c{n}x{run}", n), n)
                record(fig, side, time.perf_counter() - started)
                side.remove_all()
    fig = Figure("scale 50->100")
    figures.append(fig)
    for run in range(runs):
        for side in sides:
            service_id = side.create(f"s{run}", 50)
            wait_running(side, service_id, 50)
            started = time.perf_counter()
            side.scale(service_id, 100)
            wait_running(side, service_id, 100)
            record(fig, side, time.perf_counter() - started)
            side.remove_all()
    fig = Figure("rolling update 10 @1")
    figures.append(fig)
    for run in range(runs):
        for side in sides:
            service_id = side.create(f"u{run}", 10, parallelism=1)
            wait_running(side, service_id, 10)
            started = time.perf_counter()
            token = side.update(service_id, f"RUN={run}")
            wait_running(side, service_id, 10, token)
            record(fig, side, time.perf_counter() - started)
            side.remove_all()
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--with-docker", action="store_true", help="also run a private one-node Docker Swarm")
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (sizes >= 500 run once)")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="replica counts for create")
    args = parser.parse_args(argv)
    sizes = tuple(int(s) for s in args.sizes.split(","))
    shoal = Shoal()
    docker = Docker() if args.with_docker else None
    sides: list[Side] = []
    try:
        shoal.up()
        sides.append(shoal)
        if docker:
            docker.up()
            sides.append(docker)
        figures = measure(sides, sizes, args.runs)
    finally:
        try:
            shoal.down()
        finally:
            if docker:
                docker.down()
    print(f"one node, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; seconds, median (min-max)")
    print(report(figures, None if docker else DOCKER_RECORDED))


if __name__ == "__main__":
    main()
