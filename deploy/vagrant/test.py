#!/usr/bin/env python3
"""`make vagrant-test`: a real 5-VM Shoal cluster brought up by Vagrant, checked from the host.

Phases (each one timed and printed):
  box        build or reuse the local Debian 12 box (deploy/vagrant/build-box.sh)
  libvirt    start libvirtd/virtlogd if they are not running; a storage pool for this run
  wheels     the Python packages built on the host into deploy/.wheels (provision.sh --wheels)
  registry   Debian's docker-registry on the host's address in the cluster network, with the
             project's busybox image pushed to it (servers do not run a registry)
  up         `vagrant up --no-provision` of 3 managers + 2 workers (deploy/Vagrantfile, libvirt:
             KVM where it can boot a stock kernel, QEMU's software emulation otherwise)
  provision  deploy/provision.sh on every VM, exactly as on a bare server: manager1 first (it inits
             the swarm), then the others join with the tokens a Vagrant trigger carries over
  converge   5 nodes Ready; `shoal stack deploy --wait -c examples/web.yml web` from manager1; the
             published port 8080 answers on all five VM addresses, with replies from >= 2 replicas
  upgrade    every node's shoald restarted in turn (systemctl restart) while the host requests the
             published port 10 times a second: the count of failed requests is printed
  failover   worker1 powered off (`virsh destroy`): its tasks run elsewhere and the port answers on
             the four others; started again, worker1 is Ready
  teardown   `vagrant destroy -f`, the networks Vagrant made, the pool, the registry, and the
             libvirt daemons this run started (unless --keep)

Addresses: the cluster network is 198.19.2.0/24 (host .1, managerN .1N, workerN .2N), the
management network 198.19.1.0/24. Everything lives under --work (default /var/tmp/shoal-vagrant);
the box is kept there between runs.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
SUBNET = "198.19.2"
MGMT = "198.19.1.0/24"
PREFIX = "shoalvt_"
NETWORK = "shoalvt-cluster"
MGMT_NETWORK = "shoalvt-mgmt"
POOL = "shoalvt"
MANAGERS, WORKERS = 3, 2
HOSTS = [f"manager{i}" for i in range(1, MANAGERS + 1)] + [f"worker{i}" for i in range(1, WORKERS + 1)]
ADDRESS = {**{f"manager{i}": f"{SUBNET}.{10 + i}" for i in range(1, MANAGERS + 1)},
           **{f"worker{i}": f"{SUBNET}.{20 + i}" for i in range(1, WORKERS + 1)}}
REGISTRY = f"{SUBNET}.1:5000"


class Failure(Exception):
    pass


def log(message: str) -> None:
    print(f"vagrant-test: {message}", flush=True)


def run(argv: list[str], *, check: bool = True, timeout: float | None = None, env: dict | None = None,
        capture: bool = True, cwd: Path | None = None, input: str | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=capture, text=True, timeout=timeout, env=env, cwd=cwd, input=input)
    if check and proc.returncode != 0:
        out = (proc.stderr or "") + (proc.stdout or "") if capture else ""
        raise Failure(f"{' '.join(argv[:4])}… exited {proc.returncode}: {out.strip()[-3000:]}")
    return proc


def wait_for(what: str, probe, timeout: float, interval: float = 3.0):
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            result = probe()
            if result:
                return result
        except (Failure, OSError, subprocess.TimeoutExpired, ValueError) as exc:
            last = exc
        if time.monotonic() > deadline:
            raise Failure(f"{what}: not within {timeout:.0f} s" + (f" (last error: {last})" if last else ""))
        time.sleep(interval)


class Run:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work = Path(args.work)
        self.box_dir = self.work / "box"
        self.vagrant_home = self.work / "vagrant.d"
        self.ssh_config = self.work / "ssh_config"
        self.started: list[tuple[str, int]] = []      # daemons this run started: (name, pid)
        self.registry: subprocess.Popen | None = None
        self.times: list[tuple[str, float]] = []
        self.driver = "qemu"
        self.figures: dict[str, object] = {}

    # -- helpers ---------------------------------------------------------------------------------
    def env(self) -> dict:
        env = dict(os.environ)
        env.update({
            "VAGRANT_HOME": str(self.vagrant_home),
            "VAGRANT_DEFAULT_PROVIDER": "libvirt",
            "VAGRANT_CHECKPOINT_DISABLE": "1",
            "SHOAL_BOX": "local/shoal-bookworm",
            "SHOAL_BOX_DIR": str(self.box_dir),
            "SHOAL_SUBNET": SUBNET,
            "SHOAL_MANAGERS": str(MANAGERS),
            "SHOAL_WORKERS": str(WORKERS),
            "SHOAL_VM_CPUS": "1",
            "SHOAL_VM_MEMORY": "1024",
            "SHOAL_LIBVIRT_DRIVER": self.driver,
            "SHOAL_LIBVIRT_POOL": POOL,
            "SHOAL_LIBVIRT_MGMT_NETWORK": MGMT_NETWORK,
            "SHOAL_LIBVIRT_MGMT_ADDRESS": MGMT,
            "SHOAL_LIBVIRT_NETWORK": NETWORK,
            "SHOAL_PREFIX": PREFIX,
            "SHOAL_PROVISION_ARGS": f"--insecure-registry {REGISTRY} --wheels /vagrant/deploy/.wheels",
            "LIBVIRT_DEFAULT_URI": "qemu:///system",
        })
        return env

    def vagrant(self, *argv: str, timeout: float = 3600, capture: bool = False) -> subprocess.CompletedProcess:
        return run(["vagrant", *argv], env=self.env(), cwd=DEPLOY, timeout=timeout, capture=capture)

    def ssh(self, host: str, command: str, *, check: bool = True, timeout: float = 120) -> str:
        proc = run(["ssh", "-F", str(self.ssh_config), "-o", "ConnectTimeout=10", host, command],
                   check=check, timeout=timeout)
        return proc.stdout

    def shoal(self, host: str, *argv: str, check: bool = True, timeout: float = 120) -> str:
        quoted = " ".join(_quote(a) for a in argv)
        return self.ssh(host, f"sudo shoal {quoted}", check=check, timeout=timeout)

    def phase(self, name: str, fn) -> None:
        log(f"phase {name} ...")
        start = time.monotonic()
        fn()
        took = time.monotonic() - start
        self.times.append((name, took))
        log(f"phase {name}: {took:.0f} s")

    # -- phases ----------------------------------------------------------------------------------
    def box(self) -> None:
        run([str(DEPLOY / "vagrant" / "build-box.sh"), str(self.box_dir)], capture=False, timeout=3600)
        box = self.box_dir / "shoal-bookworm.box"
        stamp = self.vagrant_home / "shoal-box.added"   # the box file Vagrant holds (mtime)
        listed = run(["vagrant", "box", "list"], env=self.env()).stdout
        if "local/shoal-bookworm" not in listed or not stamp.exists() or stamp.read_text() != str(box.stat().st_mtime):
            run(["vagrant", "box", "add", "--force", "--name", "local/shoal-bookworm", str(box)],
                env=self.env(), timeout=600)
            stamp.write_text(str(box.stat().st_mtime))

    def libvirt(self) -> None:
        for daemon in ("virtlogd", "libvirtd"):
            if run(["pgrep", "-x", daemon], check=False).returncode == 0:
                continue
            # Niced: the VMs (children of libvirtd) yield to interactive work on a shared machine.
            run(["nice", "-n", str(self.args.nice), daemon, "-d"])
            pid = int(run(["pgrep", "-nx", daemon]).stdout.split()[0])
            self.started.append((daemon, pid))
        wait_for("libvirtd answering", lambda: run(["virsh", "-c", "qemu:///system", "version"]).returncode == 0, 60, 1)
        self.driver = self.args.driver or ("kvm" if _kvm_boots_stock_kernels() else "qemu")
        log(f"libvirt driver: {self.driver}")
        pools = run(["virsh", "pool-list", "--all", "--name"]).stdout.split()
        if POOL not in pools:
            target = self.work / "pool"
            target.mkdir(parents=True, exist_ok=True)
            run(["virsh", "pool-define-as", POOL, "dir", "--target", str(target)])
        if POOL not in run(["virsh", "pool-list", "--name"]).stdout.split():
            run(["virsh", "pool-start", POOL])

    def start_registry(self) -> None:
        # The registry listens on the host's address in the cluster network, which exists once
        # Vagrant made that network: bind to all addresses of this host, port 5000 (the test only).
        data = self.work / "registry"
        data.mkdir(parents=True, exist_ok=True)
        config = data / "config.yml"
        config.write_text(
            "version: 0.1\nlog: {level: warn, accesslog: {disabled: true}}\n"
            f"storage: {{filesystem: {{rootdirectory: {data / 'data'}}}}}\n"
            "http: {addr: '0.0.0.0:5000'}\n")
        self.registry = subprocess.Popen(["docker-registry", "serve", str(config)],
                                         stdout=open(data / "registry.log", "ab"), stderr=subprocess.STDOUT)
        wait_for("registry on :5000", lambda: _http("http://127.0.0.1:5000/v2/") is not None, 30, 0.5)
        run([sys.executable, str(DEPLOY / "images" / "build_busybox.py"), str(data / "busybox-layout"),
             "--force", "--push", "127.0.0.1:5000/shoal/busybox:latest"], timeout=300)

    def wheels(self) -> None:
        """The Python packages the VMs install, built here (the VMs reach the package index only
        through this host's network, whose TLS they may not trust): provision.sh --wheels."""
        out = DEPLOY / ".wheels"
        out.mkdir(exist_ok=True)
        pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
        run([*pip, "wheel", "-w", str(out), "-c", str(REPO / "constraints.txt"), str(REPO)], timeout=1200)
        run([*pip, "download", "-d", str(out), "setuptools>=61", "wheel"], timeout=600)

    def up(self) -> None:
        self.vagrant("up", "--no-provision", "--provider", "libvirt", timeout=3600)
        cfg = self.vagrant("ssh-config", capture=True).stdout
        self.ssh_config.write_text(cfg)

    def provision(self) -> None:
        """Every VM provisions at once, one Vagrant process each (Vagrant locks a machine, not the
        project): the slow part, installing the runtime under emulation, overlaps on all five. A
        joining VM's provision.sh installs, then waits for its join token; manager1's trigger
        writes the tokens to deploy/.tokens once it has run `swarm init`, and a thread here pushes
        them to every joining VM over ssh (a `vagrant rsync` of the checkout took minutes per TCG
        VM, one after another). Each VM's output goes to WORK/provision-HOST.log, and the tail of
        a failed one is printed."""
        tokens = DEPLOY / ".tokens"
        shutil.rmtree(tokens, ignore_errors=True)
        pushed = threading.Event()
        stop = threading.Event()

        def push_tokens() -> None:
            while not stop.is_set():
                if all((tokens / kind).exists() and (tokens / kind).read_text().strip() for kind in ("worker", "manager")):
                    break
                stop.wait(2)
            else:
                return
            for host in HOSTS[1:]:
                for kind in ("worker", "manager"):
                    run(["ssh", "-F", str(self.ssh_config), "-o", "ConnectTimeout=30", host,
                         f"sudo sh -c 'umask 077; mkdir -p /vagrant/deploy/.tokens; "
                         f"cat > /vagrant/deploy/.tokens/{kind}.tmp && mv /vagrant/deploy/.tokens/{kind}.tmp "
                         f"/vagrant/deploy/.tokens/{kind}'"],
                        input=(tokens / kind).read_text(), timeout=300)
            log("join tokens pushed to the joining VMs")
            pushed.set()

        pusher = threading.Thread(target=push_tokens, daemon=True)
        pusher.start()
        try:
            self.provision_all(HOSTS)
        finally:
            stop.set()
            pusher.join()
        if not pushed.is_set():
            raise Failure("the join tokens never reached deploy/.tokens from manager1")

    def provision_all(self, hosts: list[str]) -> None:
        procs = {}
        for host in hosts:
            out = open(self.work / f"provision-{host}.log", "wb")
            procs[host] = (subprocess.Popen(["vagrant", "provision", host], env=self.env(), cwd=DEPLOY,
                                            stdout=out, stderr=subprocess.STDOUT), out)
        deadline = time.monotonic() + 3600
        failed = []
        for host, (proc, out) in procs.items():
            try:
                rc = proc.wait(max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                rc = proc.wait()
            out.close()
            log(f"provision {host}: exit {rc}")
            if rc != 0:
                failed.append(host)
        for host in failed:
            tail = (self.work / f"provision-{host}.log").read_text(errors="replace").splitlines()[-30:]
            log(f"provision {host} failed; the end of its output:\n" + "\n".join(tail))
        if failed:
            raise Failure(f"provisioning failed on {', '.join(failed)} (logs in {self.work})")

    def nodes(self) -> list[dict]:
        return _json_rows(self.shoal("manager1", "node", "ls", "--format", "json"))

    def ready_nodes(self) -> set[str]:
        return {n["Hostname"] for n in self.nodes() if n["Status"].lower() == "ready"}

    def converge(self) -> None:
        wait_for("5 nodes Ready", lambda: self.ready_nodes() == set(HOSTS), 600)
        self.ssh("manager1", f"cd /opt/shoal && sudo REGISTRY={REGISTRY} shoal stack deploy --wait "
                             f"--timeout 15m -c examples/web.yml web", timeout=1200)
        replies = set()
        for host in HOSTS:
            wait_for(f"port 8080 on {host}", lambda h=host: _http(f"http://{ADDRESS[h]}:8080/"), 300)
            for _ in range(6):
                reply = _http(f"http://{ADDRESS[host]}:8080/")
                if reply:
                    replies.add(reply.strip())
        log(f"replies: {sorted(replies)}")
        if len(replies) < 2:
            raise Failure(f"the routing mesh answered from one replica only: {replies}")
        self.figures["distinct replicas answering"] = len(replies)

    def upgrade(self) -> None:
        stop = threading.Event()
        counts = {"ok": 0, "failed": 0}

        def client() -> None:
            addresses = [ADDRESS[h] for h in HOSTS]
            i = 0
            while not stop.is_set():
                address = addresses[i % len(addresses)]
                i += 1
                counts["ok" if _http(f"http://{address}:8080/", timeout=2) else "failed"] += 1
                stop.wait(0.1)

        thread = threading.Thread(target=client, daemon=True)
        thread.start()
        try:
            for host in HOSTS:
                self.ssh(host, "sudo systemctl restart shoald")
                wait_for(f"{host} Ready after its shoald restart",
                         lambda h=host: h in self.ready_nodes() and self._running_tasks() >= 3, 600)
        finally:
            stop.set()
            thread.join()
        log(f"rolling restart: {counts['ok']} requests answered, {counts['failed']} failed")
        self.figures["rolling restart requests ok/failed"] = f"{counts['ok']}/{counts['failed']}"

    def _running_tasks(self) -> int:
        out = self.shoal("manager1", "service", "ps", "web_web", "--format", "json", check=False)
        tasks = _json_rows(out)
        return sum(1 for t in tasks if str(t.get("CurrentState", "")).lower().startswith("running")
                   and str(t.get("DesiredState", "")).lower() == "running")

    def failover(self) -> None:
        run(["virsh", "destroy", f"{PREFIX}worker1"])
        wait_for("worker1 Down", lambda: "worker1" not in self.ready_nodes(), 300)

        def moved() -> bool:
            out = self.shoal("manager1", "service", "ps", "web_web", "--format", "json")
            running = [t for t in _json_rows(out) if str(t.get("DesiredState", "")).lower() == "running"
                       and str(t.get("CurrentState", "")).lower().startswith("running")]
            return len(running) >= 3 and all(t.get("Node") != "worker1" for t in running)

        wait_for("web_web's tasks running off worker1", moved, 600)
        for host in HOSTS:
            if host != "worker1":
                wait_for(f"port 8080 on {host} with worker1 off", lambda h=host: _http(f"http://{ADDRESS[h]}:8080/"), 120)
        run(["virsh", "start", f"{PREFIX}worker1"])
        wait_for("worker1 Ready again", lambda: "worker1" in self.ready_nodes(), 900)

    def teardown(self) -> None:
        if self.args.keep:
            log(f"--keep: VMs left running; ssh -F {self.ssh_config} manager1; then run without --keep to tear down")
            return
        try:
            self.vagrant("destroy", "-f", timeout=900)
        except (Failure, subprocess.TimeoutExpired) as exc:
            log(f"vagrant destroy: {exc}")
        for name in HOSTS:                       # in case Vagrant lost track of a domain
            run(["virsh", "destroy", f"{PREFIX}{name}"], check=False)
            run(["virsh", "undefine", f"{PREFIX}{name}", "--remove-all-storage"], check=False)
        for net in (NETWORK, MGMT_NETWORK):
            run(["virsh", "net-destroy", net], check=False)
            run(["virsh", "net-undefine", net], check=False)
        run(["virsh", "pool-destroy", POOL], check=False)
        run(["virsh", "pool-undefine", POOL], check=False)
        shutil.rmtree(self.work / "pool", ignore_errors=True)
        shutil.rmtree(DEPLOY / ".tokens", ignore_errors=True)
        shutil.rmtree(DEPLOY / ".wheels", ignore_errors=True)
        shutil.rmtree(DEPLOY / ".vagrant", ignore_errors=True)
        if self.registry is not None:
            self.registry.terminate()
            self.registry.wait(30)
        for name, pid in reversed(self.started):   # only what this run started, by PID
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        if self.started:
            _remove_libvirt_tables()

    def main(self) -> int:
        self.work.mkdir(parents=True, exist_ok=True)
        failed = None
        try:
            self.phase("box", self.box)
            self.phase("libvirt", self.libvirt)
            self.phase("registry", self.start_registry)
            self.phase("wheels", self.wheels)
            self.phase("up", self.up)
            self.phase("provision", self.provision)
            self.phase("converge", self.converge)
            self.phase("upgrade", self.upgrade)
            self.phase("failover", self.failover)
        except (Failure, subprocess.TimeoutExpired) as exc:
            failed = exc
            log(f"FAILED: {exc}")
        finally:
            self.phase("teardown", self.teardown)
        log("phase times: " + ", ".join(f"{name} {took:.0f} s" for name, took in self.times))
        for key, value in self.figures.items():
            log(f"{key}: {value}")
        log("PASSED" if failed is None else "FAILED")
        return 0 if failed is None else 1


def _quote(arg: str) -> str:
    return "'" + arg.replace("'", "'\\''") + "'" if not arg.replace("-", "").replace("_", "").replace(".", "").replace("=", "").replace("/", "").isalnum() else arg


def _remove_libvirt_tables() -> None:
    """libvirtd (iptables backend, over nftables) leaves tables ip/ip6 filter|nat|mangle whose chains
    are its LIBVIRT_* chains and base chains that only jump to them. Remove such a table, and only
    such a table: one that holds any other rule belongs to someone else and is kept."""
    for family in ("ip", "ip6"):
        for table in ("filter", "nat", "mangle"):
            proc = run(["nft", "-j", "list", "table", family, table], check=False)
            if proc.returncode != 0:
                continue
            items = json.loads(proc.stdout).get("nftables", [])
            rules = [i["rule"] for i in items if "rule" in i]
            ours = all(r["chain"].startswith("LIBVIRT_") or
                       any("jump" in e and e["jump"]["target"].startswith("LIBVIRT_") for e in r.get("expr", []))
                       for r in rules)
            if ours:
                run(["nft", "delete", "table", family, table], check=False)
            else:
                log(f"kept nftables table {family} {table}: it holds rules that are not libvirt's")


def _json_rows(text: str) -> list[dict]:
    """`--format json` output: a JSON array, or one JSON object per line as Docker prints it."""
    text = text.strip()
    if not text:
        return []
    if text.startswith("["):
        return json.loads(text)
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _http(url: str, timeout: float = 5) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.read().decode(errors="replace") if response.status == 200 else None
    except OSError:
        return None


def _kvm_boots_stock_kernels() -> bool:
    """KVM is usable for a stock Debian kernel unless /dev/kvm is missing or is PVM (kvm_pvm)."""
    if not os.path.exists("/dev/kvm"):
        return False
    modules = Path("/proc/modules").read_text() if os.path.exists("/proc/modules") else ""
    return "kvm_pvm" not in modules and ("kvm_intel" in modules or "kvm_amd" in modules)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--work", default=os.environ.get("SHOAL_VAGRANT_WORK", "/var/tmp/shoal-vagrant"))
    parser.add_argument("--keep", action="store_true", help="leave the VMs running at the end")
    parser.add_argument("--nice", type=int, default=0, help="niceness of the libvirtd this run starts (its VMs inherit it)")
    parser.add_argument("--driver", choices=("kvm", "qemu"), default=None,
                        help="libvirt domain type (default: kvm when it can boot a stock kernel, else qemu)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        parser.error("run as root (libvirt, networks)")
    return Run(args).main()


if __name__ == "__main__":
    sys.exit(main())
