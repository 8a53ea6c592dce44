"""`Lab`: one shoal-lab cluster on this machine — the API behind the `shoal-lab` command and tests.

A lab is a set of network namespaces (an underlay with a bridge and a registry, one namespace per
host), one `shoal-runtimed` and one `shoald` per host, and a directory `<root>/<name>/`. Everything
a lab starts is recorded (PID and start time) in `<root>/<name>/lab.json`, so any later
`shoal-lab` invocation, or another `Lab` object, can drive it. Methods are synchronous and meant to
be called from one thread at a time per lab; separate processes are kept apart by file locks.
"""
from __future__ import annotations

import logging
import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable, Sequence

from agent_runtime.network.plan import NETNS_PREFIX, runtime_id
from shoal.lab import cleanup, cluster, netns, procs, registry
from shoal.lab.errors import CommandFailed, LabError, LabExists, LabNotFound
from shoal.lab.plan import (
    DEFAULT_ROOT,
    HostPlan,
    LabPlan,
    allocate_network,
    lab_cgroup_pattern,
    lab_netns_pattern,
    validate_lab_name,
)
from shoal.lab.store import LabRecord, LabStore, ProcessRecord, replace_host

logger = logging.getLogger(__name__)

SOCKET_TIMEOUT = 30.0
READY_TIMEOUT = 120.0
ROOT_ENV = "SHOAL_LAB_ROOT"


def _socket_accepts(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True


FAKETIME_LIBRARY = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"


class Lab:
    """A named lab. Construction does nothing; `up` builds it, `down` removes every trace of it."""

    def __init__(
        self,
        name: str = "lab",
        root: Path | str | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.name = validate_lab_name(name)
        self.root = Path(root or os.environ.get(ROOT_ENV) or DEFAULT_ROOT)
        self.store = LabStore(self.root)
        self._progress = progress or (lambda message: logger.info("lab %s: %s", self.name, message))

    def __repr__(self) -> str:
        return f"Lab({self.name!r}, root={str(self.root)!r})"

    def __enter__(self) -> "Lab":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.down()

    # ----- what the lab is -------------------------------------------------------------------

    def record(self) -> LabRecord:
        """The lab's current record; LabNotFound if it is not up."""
        return self.store.load(self.name)

    @property
    def plan(self) -> LabPlan:
        return self.record().plan(self.root)

    @property
    def registry(self) -> str:
        """ADDR:PORT of the lab registry, reachable from every host (not from the root namespace)."""
        return self.plan.registry

    @property
    def hosts(self) -> list[str]:
        return self.plan.host_names

    def host(self, name: str) -> HostPlan:
        """Plan of host `name` (address, namespace, socket paths); LabError if there is none."""
        return self.plan.host(name)

    def address(self, host: str) -> str:
        return str(self.host(host).address)

    @staticmethod
    def names(root: Path | str | None = None) -> list[str]:
        """Names of the labs recorded under `root`."""
        return LabStore(Path(root or os.environ.get(ROOT_ENV) or DEFAULT_ROOT)).names()

    # ----- up --------------------------------------------------------------------------------

    def up(
        self,
        managers: int = 3,
        workers: int = 2,
        *,
        cluster: bool = True,
        form: bool = True,
        runtime: bool = True,
        log_level: str | None = None,
        timeout: float = READY_TIMEOUT,
    ) -> "Lab":
        """Build the lab: namespaces and registry; a shoal-runtimed per host if `runtime`; if `cluster`, a shoald per host, joined into one swarm with every node
        Ready (unless `form` is false: shoald runs, no swarm is formed, as on a fresh server). On any failure everything made so far is removed (as `down`) and the error
        re-raised. Returns self."""
        with self.store.registry_lock():
            if self.store.exists(self.name):
                raise LabExists(f"lab {self.name} is already up; `shoal-lab down --name {self.name}` first")
            pattern = lab_netns_pattern(self.name)
            stale = [ns for ns in netns.list_netns() if pattern.match(ns)]
            if stale:
                raise LabExists(f"lab {self.name}: namespaces {', '.join(stale)} are left from an earlier "
                                f"run; `shoal-lab down --name {self.name}` removes them")
            network = allocate_network(self.store.networks_in_use(), managers + workers)
            record = LabRecord(self.name, network, managers, workers, cluster, runtime, log_level)
            plan = record.plan(self.root)  # validates counts, names and path lengths
            plan.directory.mkdir(parents=True, exist_ok=True)
            self.store.save(record)
        try:
            self._build(plan, cluster and form, timeout)
        except BaseException:
            self._progress("up failed; removing what was made")
            try:
                self.down()
            except Exception:
                logger.exception("lab %s: cleanup after a failed up failed", self.name)
            raise
        return self

    def _build(self, plan: LabPlan, cluster_wanted: bool, timeout: float) -> None:
        self._progress(f"namespaces for {len(plan.hosts)} hosts in {plan.network}")
        netns.build_underlay(plan)
        for host in plan.hosts:
            netns.build_host(plan, host)
            for directory in (host.state_dir, host.runtime_dir, host.run_dir, host.log_dir):
                directory.mkdir(parents=True, exist_ok=True)
        self._progress(f"registry at {plan.registry}")
        record = registry.start(plan)
        self._update(lambda rec: setattr(rec, "registry", record))
        registry.wait_ready(plan, record)
        self._push_busybox(plan)
        self._start_daemons(plan.hosts)
        if not cluster_wanted:
            return
        cluster.form(plan, self._shoal_checked, self._progress)
        cluster.wait_ready(plan, self._shoal_checked, self._progress, timeout)

    def _push_busybox(self, plan: LabPlan) -> None:
        try:
            ref = registry.push_busybox(plan)
        except (LabError, subprocess.TimeoutExpired) as exc:
            self._progress(f"warning: the busybox demo image was not pushed: {exc}")
            return
        self._progress(f"pushed {ref}")

    # ----- processes -------------------------------------------------------------------------

    def _update(self, change: Callable[[LabRecord], None]) -> LabRecord:
        """Apply `change` to the record under the lab lock and save it."""
        with self.store.lab_lock(self.name):
            record = self.record()
            change(record)
            self.store.save(record)
        return record

    def _daemon_env(self, kind: str = "") -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("SHOAL_HOST", "SHOAL_RUNTIME_HOST")}
        env["PYTHONUNBUFFERED"] = "1"
        faketime = self._faketime_file()
        if kind == "shoald" and faketime.exists():
            env.update(LD_PRELOAD=FAKETIME_LIBRARY, FAKETIME_TIMESTAMP_FILE=str(faketime),
                       FAKETIME_CACHE_DURATION="1", DONT_FAKE_MONOTONIC="1")
        return env

    # ----- time travel (tests of certificate expiry) -----------------------------------------

    def _faketime_file(self) -> Path:
        return self.plan.directory / "faketime"

    def set_faketime(self, offset: str | None) -> None:
        """Run this lab's shoalds `offset` (libfaketime's syntax: "+75d", "-2h") away from the real
        wall clock, or on the real clock again with None. Takes effect within a second in shoalds
        started after the first call (restart them: `stop` + `start`); the monotonic clock is left
        alone, so timers keep their pace and only the date jumps."""
        path = self._faketime_file()
        if offset is None:
            path.unlink(missing_ok=True)
            return
        if not Path(FAKETIME_LIBRARY).exists():
            raise LabError(f"lab {self.name}: {FAKETIME_LIBRARY} is missing (Debian package libfaketime)")
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(offset + "\n")
        tmp.replace(path)

    def _runtimed_argv(self, host: HostPlan, log_level: str | None) -> list[str]:
        return [
            procs.program("shoal-runtimed"),
            "--root", str(host.runtime_dir),
            "--socket", str(host.runtime_socket),
            "--cgroup-parent", host.cgroup_parent,
            "--fence", self.plan.registry,   # containers reach the lab registry only if it is published
            "--insecure-registry", self.plan.registry,   # every pull on the host, `shoal image pull` included
            *(["--log-level", log_level] if log_level else []),
        ]

    def _shoald_argv(self, host: HostPlan, log_level: str | None) -> list[str]:
        return [
            procs.program("shoald"),
            "--state-dir", str(host.state_dir),
            "--socket", str(host.socket),
            "--runtime-socket", str(host.runtime_socket),
            "--docker-socket", str(host.docker_socket),
            "--host", host.remote_api,
            "--ui-socket", str(host.ui_socket),
            "--hostname", host.name,
            "--metrics-addr", host.metrics_addr,
            "--insecure-registry", self.plan.registry,
            *(["--log-level", log_level] if log_level else []),
        ]

    def _start_daemons(self, hosts: Sequence[HostPlan]) -> None:
        """Start on `hosts` whatever of their daemons is not running: runtimed if the lab has a
        runtime, shoald if the lab is a cluster. All runtimeds first, waiting
        for their sockets, then all shoalds, waiting for theirs."""
        record = self.record()
        wanted = {"runtimed": record.runtime, "shoald": record.cluster}
        for kind, socket_of, argv_of in (
            ("runtimed", lambda h: h.runtime_socket, self._runtimed_argv),
            ("shoald", lambda h: h.socket, self._shoald_argv),
        ):
            if not wanted[kind]:
                continue
            started: list[tuple[HostPlan, ProcessRecord]] = []
            for host in hosts:
                entry = record.hosts.get(host.name)
                if entry is not None and procs.is_running(getattr(entry, kind)):
                    continue
                socket_of(host).unlink(missing_ok=True)  # a stale socket would look ready
                self._progress(f"starting {kind} on {host.name}")
                proc = procs.start(argv_of(host, record.log_level), netns=host.netns,
                                   log_path=host.log_dir / f"{kind}.log", env=self._daemon_env(kind))
                self._update(lambda rec, h=host.name, p=proc: replace_host(rec, h, **{kind: p}))
                started.append((host, proc))
            for host, proc in started:
                self._wait_socket(host, kind, socket_of(host), proc)

    def _wait_socket(self, host: HostPlan, kind: str, path: Path, proc: ProcessRecord) -> None:
        log = host.log_dir / f"{kind}.log"
        deadline = time.monotonic() + SOCKET_TIMEOUT
        while not _socket_accepts(path):
            if not procs.is_running(proc):
                raise LabError(f"lab {self.name}: {kind} on {host.name} exited; {log}:\n{procs.log_tail(log)}")
            if time.monotonic() > deadline:
                raise LabError(f"lab {self.name}: {kind} on {host.name} did not open {path} within "
                               f"{SOCKET_TIMEOUT:.0f} s; {log}:\n{procs.log_tail(log)}")
            time.sleep(0.05)

    def kill(self, host: str) -> None:
        """SIGKILL `host`'s shoald (only), by its recorded PID."""
        self.host(host)
        record = self.record().hosts.get(host)
        procs.kill([record.shoald if record else None])
        self._update(lambda rec: replace_host(rec, host, shoald=None))

    def stop(self, host: str) -> None:
        """SIGTERM `host`'s shoald, then its runtimed, each waited for (SIGKILL after a grace)."""
        self.host(host)
        record = self.record().hosts.get(host)
        if record:
            procs.stop([record.shoald])
            procs.stop([record.runtimed])
        self._update(lambda rec: replace_host(rec, host, shoald=None, runtimed=None))

    def start(self, host: str) -> None:
        """Start `host`'s runtimed and shoald again (whichever is not running; in a --no-cluster lab
        only runtimed) with the same state directory; shoald rejoins from its state, no new join
        is needed."""
        self._start_daemons([self.host(host)])

    def stop_shoald(self, host: str) -> None:
        """SIGTERM `host`'s shoald (only; its runtime and containers keep running) and wait for it
        to exit; `start` starts it again."""
        self.host(host)
        record = self.record().hosts.get(host)
        procs.stop([record.shoald if record else None])
        self._update(lambda rec: replace_host(rec, host, shoald=None))

    def restart_shoald(self, host: str) -> None:
        """`stop_shoald`, then start it again with the same state: what an upgrade of shoald does
        to a node."""
        self.stop_shoald(host)
        self._start_daemons([self.host(host)])

    def partition(self, host: str) -> None:
        """Cut `host` off the underlay (its bridge-side link goes down); its processes keep running."""
        self._set_link(host, up=False)

    def heal(self, host: str) -> None:
        """Reconnect a partitioned `host` to the underlay."""
        self._set_link(host, up=True)

    def _set_link(self, host: str, up: bool) -> None:
        plan = self.plan
        netns.set_underlay_link(plan, plan.host(host), up)
        self._update(lambda rec: replace_host(rec, host, partitioned=not up))

    # ----- using the hosts -------------------------------------------------------------------

    def host_env(self, host: str) -> dict[str, str]:
        """Environment for commands on `host`: SHOAL_HOST and SHOAL_RUNTIME_HOST point at its
        sockets, and this installation's scripts (shoal, shoald…) come first on PATH."""
        plan = self.host(host)
        env = dict(os.environ)
        env["SHOAL_HOST"] = f"unix://{plan.socket}"
        env["SHOAL_RUNTIME_HOST"] = f"unix://{plan.runtime_socket}"
        env["PATH"] = os.pathsep.join([procs.scripts_dir(), env.get("PATH", os.defpath)])
        return env

    def exec_argv(self, host: str, argv: Sequence[str]) -> list[str]:
        """The argv that runs `argv` inside `host`'s network namespace (use with `host_env`)."""
        return procs.in_netns(self.host(host).netns, argv)

    def exec(
        self,
        host: str,
        argv: Sequence[str],
        check: bool = True,
        *,
        capture: bool = True,
        timeout: float | None = None,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run `argv` in `host`'s network namespace with `host_env`; output captured as text unless
        `capture` is false. With `check`, a non-zero exit raises CommandFailed carrying the output."""
        proc = subprocess.run(
            self.exec_argv(host, argv), env=self.host_env(host), capture_output=capture,
            text=True, timeout=timeout, input=input,
        )
        if check and proc.returncode != 0:
            detail = (proc.stderr or proc.stdout or "").strip()
            raise CommandFailed(
                f"lab {self.name}: `{' '.join(argv)}` on {host} exited {proc.returncode}: {detail}",
                proc.returncode, proc.stdout or "", proc.stderr or "",
            )
        return proc

    def shoal(self, host: str, *args: str, check: bool = True, timeout: float | None = 60.0
              ) -> subprocess.CompletedProcess[str]:
        """Run the `shoal` CLI on `host` against that host's shoald; output captured as text."""
        return self.exec(host, [procs.program("shoal"), *args], check=check, timeout=timeout)

    def _shoal_checked(self, host: str, *args: str) -> subprocess.CompletedProcess[str]:
        return self.shoal(host, *args)

    def nodes(self, on: str = "manager1") -> list[dict]:
        """`shoal node ls --format json` on host `on`, parsed."""
        return cluster.parse_node_ls(self.shoal(on, "node", "ls", "--format", "json").stdout)

    def leader(self, on: str = "manager1") -> str | None:
        """Hostname of the node that `on` reports as Leader, or None."""
        for node in self.nodes(on):
            if node.get("ManagerStatus") == "Leader":
                return node.get("Hostname")
        return None

    def wait_ready(self, timeout: float = READY_TIMEOUT, on: str | None = None,
                   hosts: Sequence[str] | None = None) -> list[dict]:
        """Wait until `shoal node ls` on `on` (default manager1) shows `hosts` (default all) Ready."""
        return cluster.wait_ready(self.plan, self._shoal_checked, self._progress, timeout, on, hosts)

    # ----- status ----------------------------------------------------------------------------

    def status(self) -> dict:
        """What is up: registry, and per host its role, address, PIDs, sockets and liveness. The
        shape is what `shoal-lab status --json` prints."""
        record = self.record()
        plan = record.plan(self.root)
        hosts = []
        for host in plan.hosts:
            entry = record.hosts.get(host.name)
            shoald = entry.shoald if entry else None
            runtimed = entry.runtimed if entry else None
            hosts.append({
                "name": host.name,
                "role": host.role,
                "address": str(host.address),
                "netns": host.netns,
                "pid": shoald.pid if shoald else None,
                "runtime_pid": runtimed.pid if runtimed else None,
                "socket": str(host.socket),
                "runtime_socket": str(host.runtime_socket),
                "docker_socket": str(host.docker_socket),
                "remote_api": host.remote_api,
                "ui_socket": str(host.ui_socket),
                "running": procs.is_running(shoald),
                "runtime_running": procs.is_running(runtimed),
                "partitioned": bool(entry and entry.partitioned),
            })
        return {
            "name": self.name,
            "network": str(plan.network),
            "directory": str(plan.directory),
            "registry": plan.registry,
            "registry_pid": record.registry.pid if record.registry else None,
            "registry_running": procs.is_running(record.registry),
            "cluster": record.cluster,
            "runtime": record.runtime,
            "hosts": hosts,
        }

    # ----- down ------------------------------------------------------------------------------

    def down(self) -> None:
        """Remove everything of this lab: its processes (recorded ones SIGTERM then SIGKILL, then any
        left in its namespaces or cgroups), mounts under its directory, its cgroups, namespaces and
        directory. Idempotent, and works from what the kernel shows when the record is missing or
        the lab was half built. Raises LabError listing what could not be removed."""
        errors: list[str] = []

        def attempt(what: str, action: Callable[[], None]) -> None:
            try:
                action()
            except Exception as exc:  # keep going: remove as much as possible
                logger.warning("lab %s: %s: %s", self.name, what, exc)
                errors.append(f"{what}: {exc}")

        directory = self.root / self.name
        with self.store.registry_lock():
            try:
                record: LabRecord | None = self.record()
            except LabNotFound:
                record = None
            except LabError as exc:
                errors.append(str(exc))
                record = None
            if record is not None:
                hosts = record.hosts.values()
                attempt("stopping shoald", lambda: procs.stop([h.shoald for h in hosts]))
                attempt("stopping runtimed", lambda: procs.stop([h.runtimed for h in hosts]))
                attempt("stopping the registry", lambda: procs.stop([record.registry]))
            pattern = lab_netns_pattern(self.name)
            # Container namespaces the hosts' runtimeds made: named after each runtime root.
            prefixes = tuple(f"{NETNS_PREFIX}{runtime_id(root)}-" for root in directory.glob("*/runtime"))
            containers = [ns for ns in netns.list_netns() if prefixes and ns.startswith(prefixes)]
            for ns in containers:
                attempt(f"killing processes in {ns}", lambda ns=ns: procs.kill_pids(netns.netns_pids(ns)))
                attempt(f"deleting namespace {ns}", lambda ns=ns: netns.delete_netns(ns))
            namespaces = [ns for ns in netns.list_netns() if pattern.match(ns)]
            for ns in namespaces:
                attempt(f"killing processes in {ns}", lambda ns=ns: procs.kill_pids(netns.netns_pids(ns)))
            for group in cleanup.find_cgroups(lab_cgroup_pattern(self.name)):
                attempt(f"removing cgroup {group}", lambda g=group: cleanup.remove_cgroup(g))
            attempt(f"unmounting under {directory}", lambda: cleanup.unmount_under(directory))
            # hosts before the underlay: deleting a host namespace also removes its veth pair
            for ns in sorted(namespaces, key=lambda n: n.endswith("-ul")):
                attempt(f"deleting namespace {ns}", lambda ns=ns: netns.delete_netns(ns))
            if not errors:
                attempt(f"removing {directory}", lambda: cleanup.remove_tree(directory))
        if errors:
            raise LabError(f"lab {self.name}: down left things behind: " + "; ".join(errors))
