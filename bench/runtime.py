"""Benchmark shoal-runtimed against runc and crun on the same busybox rootfs, in one run.

Prints (no asserts):
- start latency, spec -> process running (API create+start returns once the workload exec'd;
  ``runc run -d`` / ``crun run -d``), median and p95 over N runs, and the ratios;
- run-to-exit of ``true`` (create+start+wait through the API; ``runc run`` / ``crun run``);
- memory (PSS) per running container: each container's waiter process plus runtimed's own
  growth per container;
- ``shoal run --rm IMAGE true`` end to end through the CLI;
- the seccomp filter's cost: the same run-to-exit with Docker's default profile and with
  ``seccomp=unconfined``, alternated (API and CLI), and their ratio.

Run as root: ``.venv/bin/python bench/runtime.py [--runs 50] [--containers 20]``. It starts its own
shoal-runtimed (temp root, cgroup parent ``shoal-bench-PID``) and removes everything it made.
crun refuses cgroup v1 hybrid mode, so its runs happen in a private mount namespace where
/sys/fs/cgroup/unified is unmounted (a helper process started with ``unshare -m``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent_runtime.api import ContainerSpec, RuntimeClient, ShoalRuntimeError  # noqa: E402

VENV_BIN = Path(sys.executable).parent
IMAGE = "shoal/busybox:latest"


def build_rootfs(root: Path) -> None:
    (root / "bin").mkdir(parents=True)
    shutil.copy2("/bin/busybox", root / "bin" / "busybox")
    for d in ("proc", "sys", "dev", "etc", "tmp", "root"):
        (root / d).mkdir(exist_ok=True)
    for applet in subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True).stdout.split():
        if not (root / "bin" / applet).exists():
            (root / "bin" / applet).symlink_to("busybox")
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc/group").write_text("root:x:0:\n")


def make_bundle(bundle: Path, rootfs: Path, args: list[str]) -> None:
    bundle.mkdir(parents=True)
    subprocess.run(["runc", "spec"], cwd=bundle, check=True)
    cfg = json.loads((bundle / "config.json").read_text())
    cfg["root"] = {"path": str(rootfs), "readonly": True}
    cfg["process"]["terminal"] = False
    cfg["process"]["args"] = args
    (bundle / "config.json").write_text(json.dumps(cfg))


def stats(samples: list[float]) -> tuple[float, float]:
    s = sorted(samples)
    return statistics.median(s), s[min(len(s) - 1, int(round(0.95 * (len(s) - 1))))]


def fmt(name: str, samples: list[float]) -> str:
    med, p95 = stats(samples)
    return f"  {name:<34} median {med * 1000:7.2f} ms   p95 {p95 * 1000:7.2f} ms   (n={len(samples)})"


def time_oci(tool: str, bundle: Path, runs: int, detach: bool, prefix: str) -> list[float]:
    """Time ``tool run [-d]`` of the bundle; detached containers are deleted untimed."""
    out = []
    for i in range(runs):
        cid = f"{prefix}-{os.getpid()}-{i}"
        argv = [tool, "run"] + (["-d"] if detach else []) + ["-b", str(bundle), cid]
        t0 = time.perf_counter()
        subprocess.run(argv, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        out.append(time.perf_counter() - t0)
        if detach:
            subprocess.run([tool, "delete", "-f", cid], check=True, stdout=subprocess.DEVNULL)
    return out


def crun_inner(bundle: str, runs: int, detach: bool) -> None:
    """Inside ``unshare -m``: hide the v2 hierarchy from crun, then time it; print JSON samples."""
    subprocess.run(["mount", "--make-rprivate", "/"], check=True)
    subprocess.run(["umount", "/sys/fs/cgroup/unified"], check=True)
    print(json.dumps(time_oci("crun", Path(bundle), runs, detach, "bench-crun")))


def time_crun(bundle: Path, runs: int, detach: bool) -> list[float]:
    out = subprocess.run(["unshare", "-m", sys.executable, __file__, "--crun-inner", str(bundle), str(runs)]
                         + (["--detach"] if detach else []), check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def pss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(p) for p in (task / "children").read_text().split()]
    return out


def cli_env(sock: str, shoal: str) -> dict[str, str]:
    """The environment the CLI is timed in: runtimed's socket, and the CLI's modules byte-compiled
    as an installed CLI has them (pip compiles them; an editable checkout writes them on first
    use). PYTHONDONTWRITEBYTECODE in the caller's environment would otherwise make every run
    compile the CLI's sources again, tens of ms that no user pays."""
    env = dict(os.environ, SHOAL_RUNTIME_HOST=f"unix://{sock}")
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    subprocess.run([sys.executable, "-m", "compileall", "-q", *(str(ROOT / p) for p in ("shoal", "agent_runtime", "common"))],
                   env=env, check=True, stdout=subprocess.DEVNULL)
    return env


def cpu_seconds(pid: int) -> float:
    """CPU time of a process and of its children it reaped (utime, stime, cutime, cstime)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def cli_end_to_end(sock: str, n: int, shoal: str, runtimed_pid: int) -> None:
    """`shoal run --rm IMAGE true`: wall time and the CLI process's own CPU time (user+sys, less
    sensitive to a busy machine than wall time), n runs after 3 warm-ups; the CPU time runtimed
    and its children (waiter, init, workload) spent meanwhile; the same for the bare interpreter;
    and the CLI's import time (`python -X importtime`, top-level modules summed).

    The CPU times add up to the work one run takes on this machine, whatever the load: most of it
    is one chain (CLI, runtimed, init, CLI again), so on a quiet machine the wall time is about
    that sum plus the waits for the kernel (mounts, cgroups)."""
    import resource
    env = cli_env(sock, shoal)

    def timed(argv: list[str]) -> tuple[float, float]:
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        done = subprocess.run(argv, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()}")
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        return wall, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)

    argv = [shoal, "run", "--rm", IMAGE, "true"]
    for _ in range(3):
        timed(argv)
    daemon0 = cpu_seconds(runtimed_pid)
    runs = [timed(argv) for _ in range(n)]
    daemon = (cpu_seconds(runtimed_pid) - daemon0) / n
    bare = [timed([sys.executable, "-c", "pass"]) for _ in range(n)]
    imports = []
    for _ in range(5):
        err = subprocess.run([sys.executable, "-X", "importtime", "-c",
                              "import shoal.cli.entry, shoal.cli.run_fast, agent_runtime.api"],
                             env=env, capture_output=True, text=True, check=True).stderr
        top = [line.split("|") for line in err.splitlines() if line.startswith("import time:")]
        imports.append(sum(int(cols[1]) for cols in top[1:] if cols[2].startswith(" ") and not cols[2].startswith("  ")
                           and cols[1].strip().isdigit()) / 1e6)
    print("CLI end to end (wall, then the CLI process's CPU time):")
    print(fmt("shoal run --rm IMAGE true (wall)", [w for w, _ in runs]))
    print(fmt("shoal run --rm IMAGE true (CPU)", [c for _, c in runs]))
    print(fmt("python -c pass (wall)", [w for w, _ in bare]))
    print(fmt("python -c pass (CPU)", [c for _, c in bare]))
    print(fmt("the CLI's imports for `run` (importtime)", imports))
    cli_cpu = stats([c for _, c in runs])[0]
    print(f"  runtimed and its children's CPU per run (mean): {daemon * 1000:.1f} ms; with the CLI's "
          f"median {(daemon + cli_cpu) * 1000:.1f} ms = {(daemon + cli_cpu) / 0.292:.2f} of the anchor")
    print(f"  vs docker run --rm (anchor 0.292 s): {stats([w for w, _ in runs])[0] / 0.292:.2f} "
          f"(wall; on a busy machine read the CPU figure too); load average {os.getloadavg()[0]:.1f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--containers", type=int, default=20)
    ap.add_argument("--crun-inner", nargs=2, metavar=("BUNDLE", "RUNS"))
    ap.add_argument("--detach", action="store_true")
    ap.add_argument("--cli-only", action="store_true",
                    help="only `shoal run --rm IMAGE true` end to end (and the CLI's import time)")
    ap.add_argument("--cli", default=str(VENV_BIN / "shoal"),
                    help="the shoal program to time (another checkout's, to compare)")
    args = ap.parse_args()
    if args.crun_inner:
        crun_inner(args.crun_inner[0], int(args.crun_inner[1]), args.detach)
        return
    base = Path(tempfile.mkdtemp(prefix="shoal-bench-"))
    parent = f"shoal-bench-{os.getpid()}"
    sock = str(base / "runtimed.sock")
    proc = None
    try:
        rootfs = base / "rootfs"
        build_rootfs(rootfs)
        with tarfile.open(base / "busybox.tar", "w") as tar:
            tar.add(rootfs, arcname=".")
        make_bundle(base / "bundle-true", rootfs, ["/bin/true"])
        make_bundle(base / "bundle-sleep", rootfs, ["/bin/sleep", "1000"])
        log = open(base / "runtimed.log", "wb")
        proc = subprocess.Popen([str(VENV_BIN / "shoal-runtimed"), "--root", str(base / "root"), "--socket", sock,
                                 "--cgroup-parent", parent], stdout=log, stderr=log)
        client = RuntimeClient(sock)
        for _ in range(200):
            try:
                client.version()
                break
            except ShoalRuntimeError:
                time.sleep(0.05)
        client.image_import(str(base / "busybox.tar"), IMAGE)
        n = args.runs
        if args.cli_only:
            cli_end_to_end(sock, n, args.cli, proc.pid)
            return

        # warm-up (page cache, interpreter)
        for _ in range(3):
            cid = client.create(ContainerSpec(image=IMAGE, command=["true"]))
            client.start(cid); client.wait(cid); client.remove(cid)
        subprocess.run(["runc", "run", "-b", str(base / "bundle-true"), f"warm-{os.getpid()}"], check=True)

        start_shoal, exit_shoal = [], []
        for _ in range(n):
            t0 = time.perf_counter()
            cid = client.create(ContainerSpec(image=IMAGE, command=["sleep", "1000"]))
            client.start(cid)
            start_shoal.append(time.perf_counter() - t0)
            client.remove(cid, force=True)
        for _ in range(n):
            t0 = time.perf_counter()
            cid = client.create(ContainerSpec(image=IMAGE, command=["true"]))
            client.start(cid)
            client.wait(cid)
            exit_shoal.append(time.perf_counter() - t0)
            client.remove(cid)
        start_runc = time_oci("runc", base / "bundle-sleep", n, True, "bench-runc")
        exit_runc = time_oci("runc", base / "bundle-true", n, False, "bench-runc-true")
        start_crun = time_crun(base / "bundle-sleep", n, True)
        exit_crun = time_crun(base / "bundle-true", n, False)

        print(f"Container start, {n} runs each (same busybox rootfs; shoal adds an overlayfs upper layer)")
        print("spec -> process running:")
        for name, s in (("shoal-runtimed API create+start", start_shoal), ("runc run -d", start_runc),
                        ("crun run -d", start_crun)):
            print(fmt(name, s))
        print("run-to-exit of `true`:")
        for name, s in (("shoal-runtimed API create+start+wait", exit_shoal), ("runc run", exit_runc),
                        ("crun run", exit_crun)):
            print(fmt(name, s))
        ms, mr, mc = (stats(x)[0] for x in (exit_shoal, exit_runc, exit_crun))
        ss, sr, sc = (stats(x)[0] for x in (start_shoal, start_runc, start_crun))
        print(f"  ratios (median): start shoal/runc {ss / sr:.2f}, shoal/crun {ss / sc:.2f}; "
              f"run-to-exit shoal/runc {ms / mr:.2f}, shoal/crun {mc and ms / mc:.2f}")

        # memory per running container
        k = args.containers
        before = pss_kib(proc.pid)
        ids = []
        for _ in range(k):
            cid = client.create(ContainerSpec(image=IMAGE, command=["sleep", "1000"]))
            client.start(cid)
            ids.append(cid)
        time.sleep(0.5)
        after = pss_kib(proc.pid)
        waiters = children(proc.pid)
        waiter_pss = sum(pss_kib(p) for p in waiters)
        per = (waiter_pss + max(0, after - before)) / k
        print(f"Memory with {k} running containers: waiters {len(waiters)} x {waiter_pss / max(1, len(waiters)):.0f} KiB PSS, "
              f"runtimed grew {after - before} KiB PSS ({before} -> {after})")
        print(f"  per container: {per:.0f} KiB PSS ({per / 1024:.2f} MiB); Docker's shim ~2.4 MiB")
        for cid in ids:
            client.remove(cid, force=True)

        # the seccomp filter's cost: default profile vs unconfined, alternated so that load on the
        # machine hits both alike
        confined, unconfined = [], []
        for i in range(2 * n):
            t0 = time.perf_counter()
            cid = client.create(ContainerSpec(image=IMAGE, command=["true"], seccomp="unconfined" if i % 2 else ""))
            client.start(cid)
            client.wait(cid)
            (unconfined if i % 2 else confined).append(time.perf_counter() - t0)
            client.remove(cid)
        print("seccomp (run-to-exit of `true` through the API, alternated):")
        print(fmt("default profile", confined))
        print(fmt("seccomp=unconfined", unconfined))
        print(f"  ratio (median) default/unconfined: {stats(confined)[0] / stats(unconfined)[0]:.2f}")

        # CLI end to end, the same alternation
        env = cli_env(sock, str(VENV_BIN / "shoal"))
        cli, cli_unconfined = [], []
        for i in range(2 * min(n, 20)):
            opt = ["--security-opt", "seccomp=unconfined"] if i % 2 else []
            t0 = time.perf_counter()
            subprocess.run([str(VENV_BIN / "shoal"), "run", "--rm", *opt, IMAGE, "true"], env=env, check=True)
            (cli_unconfined if i % 2 else cli).append(time.perf_counter() - t0)
        print("CLI end to end:")
        print(fmt("shoal run --rm IMAGE true", cli))
        print(fmt("  --security-opt seccomp=unconfined", cli_unconfined))
        print(f"  ratio (median) default/unconfined: {stats(cli)[0] / stats(cli_unconfined)[0]:.2f}")
        print(f"  vs docker run --rm (docs/benchmarks.md reference, 0.292 s): {stats(cli)[0] / 0.292:.2f}")
    finally:
        if proc is not None:
            try:
                c = RuntimeClient(sock)
                for x in c.list(all=True):
                    c.remove(x.id, force=True)
            except ShoalRuntimeError:
                pass
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=10)
        subprocess.run(["runc", "delete", "-f", f"warm-{os.getpid()}"], capture_output=True)
        for d in Path("/sys/fs/cgroup").glob(f"*/{parent}"):
            try:
                d.rmdir()
            except OSError as exc:
                print(f"could not remove {d}: {exc}", file=sys.stderr)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
