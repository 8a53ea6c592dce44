"""Scale: a real 3-manager shoal-lab plus N simulated nodes (issue 10 item 6; run by hand).

The simulated nodes are real agents: each joins through the real join path (the lab's root CA
fetched and pinned by the worker join token, a node certificate issued by the managers' NodeCA for
its own key), then keeps a real mutual-TLS session with heartbeats (worker/agent.py's Agent and
worker.Worker), backed by worker/testing.py's FakeRuntime, which reports every task RUNNING. They
run as asyncio agents, many per process, inside the lab's underlay network namespace. The managers
are drained so every task lands on a simulated node.

Prints: seconds from `service create --replicas T` until all T tasks are assigned and until all are
reported running; leader and follower CPU seconds and RSS (from /proc of the recorded shoald PIDs);
Raft log and snapshot bytes on disk; term changes; nodes seen Down (ListNodes sampled each second);
a killed and restarted follower's catch-up time; `service ls` / `service ps` latency. Compared with
issue 10's goals. Usage: bench/scale.py [--nodes N] [--tasks T]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from proto import cluster_pb2, cluster_pb2_grpc, control_pb2, control_pb2_grpc, objects_pb2  # noqa: E402
from proto.ports import DEFAULT_PORT  # noqa: E402

GOALS = {"nodes": 1000, "tasks": 50_000, "seconds": 60.0, "terms": 0, "down": 0, "rss_mib": 1024.0,
         "catchup": 10.0}
AGENTS_PER_PROCESS = 250
POLL = 1.0


# -- the simulated nodes (run inside the underlay namespace) ------------------------------------
async def _simulate(managers: list[str], token: str, first: int, count: int, ready: Path) -> None:
    from manager.ca import NodeTLS, channel_credentials, channel_options, fetch_root_ca, make_node_key_and_csr
    from manager.ca import parse_join_token
    from shoal.daemon.config import node_description
    from worker.agent import Agent
    from worker.reporter import Reporter
    from worker.testing import FakeRuntime
    from worker.worker import Worker

    import logging
    # the agents' own account (sessions ended and why, redirects) in sim-N.log
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("worker.worker").setLevel(logging.WARNING)
    digest = parse_join_token(token).ca_digest_hex
    root = await asyncio.to_thread(fetch_root_ca, managers[0], digest, 10.0)
    runs = []

    async def noop(_message) -> None:
        return None

    async with grpc.aio.secure_channel(managers[0], channel_credentials(root), options=channel_options()) as channel:
        ca = cluster_pb2_grpc.NodeCAStub(channel)
        for i in range(first, first + count):
            hostname = f"sim{i:05d}"
            key, csr = make_node_key_and_csr()
            issued = await ca.IssueNodeCertificate(cluster_pb2.IssueNodeCertificateRequest(
                csr=csr, token=token, hostname=hostname, advertise_addr=f"198.18.{i // 250}.{i % 250 + 1}:{DEFAULT_PORT}",
                availability=0), timeout=60)  # active
            tls = NodeTLS(issued.certificate, key, issued.root_ca)
            reporter = Reporter()
            worker = Worker(FakeRuntime(), reporter, hostname=hostname)
            agent = Agent(list(issued.managers) or managers, tls.channel_credentials, channel_options(),
                          lambda h=hostname, t=tls: node_description(h, "", t.tls_info()), noop,
                          worker=worker, reporter=reporter)
            runs.append(asyncio.create_task(agent.run()))
    ready.write_text(str(count))
    await asyncio.gather(*runs)


# -- measurements ------------------------------------------------------------------------------
def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def raft_bytes(raft_dir: Path) -> tuple[int, int]:
    """(log bytes, snapshot bytes) under a manager's Raft directory: raft.dump (and any *dump*/*snap*
    file) is the snapshot, the rest (raft.journal, raft.state) the log; sizes as on disk (st_size)."""
    log = snap = 0
    for path in raft_dir.rglob("*"):
        if path.is_file():
            if "dump" in path.name or "snap" in path.name:
                snap += path.stat().st_size
            else:
                log += path.stat().st_size
    return log, snap


def format_report(r: dict) -> str:
    """The report: each figure with its goal from issue 10 and the ratio (figure / goal)."""
    def ratio(value: float, goal: float) -> str:
        return f"{value / goal:.2f}x" if goal else ("met" if value == 0 else "NOT met")

    def seconds(value: float | str) -> str:
        return value if isinstance(value, str) else f"{value:8.1f} s"

    mib = 1024 * 1024
    lines = [
        f"{r['nodes']} simulated nodes, {r['tasks']} tasks, 3 managers"
        f" (goal scale: {GOALS['nodes']} nodes, {GOALS['tasks']} tasks)",
        f"  create -> all assigned    {seconds(r['assigned_s'])}",
        f"  create -> all running     {seconds(r['running_s'])}   goal {GOALS['seconds']:.0f} s at goal scale"
        + (f": {ratio(r['running_s'], GOALS['seconds'])}" if not isinstance(r['running_s'], str) else ""),
        f"  leader {r['leader']:<10}        CPU {r['leader_cpu']:7.1f} s, RSS {r['leader_rss']:7.1f} MiB"
        f"   goal {GOALS['rss_mib']:.0f} MiB: {ratio(r['leader_rss'], GOALS['rss_mib'])}",
    ]
    for name, cpu, rss in r["followers"]:
        lines.append(f"  follower {name:<10}      CPU {cpu:7.1f} s, RSS {rss:7.1f} MiB")
    lines += [
        f"  raft on disk (leader)     log {r['raft_log'] / mib:.1f} MiB, snapshots {r['raft_snap'] / mib:.1f} MiB",
        f"  term changes              {r['terms']:8d}   goal 0: {ratio(r['terms'], 0)}"
        f"   (and {r['terms_catchup']} while the killed follower came back)",
        f"  nodes seen Down           {r['down']:8d}   goal 0: {ratio(r['down'], 0)}",
        f"  follower catch-up         {r['catchup_s']:8.1f} s   goal {GOALS['catchup']:.0f} s:"
        f" {ratio(r['catchup_s'], GOALS['catchup'])}",
        f"  service ls                {seconds(r['ls_s'])}",
        f"  service ps                {seconds(r['ps_s'])}",
        f"  machine load average      {r['load']:8.1f} on {r['cpus']} CPUs",
    ]
    return "\n".join(lines)


def timed_cli(lab, *args: str) -> float | str:
    """Wall seconds of `shoal ARGS` on manager1, or what it failed with (reported, not raised)."""
    started = time.perf_counter()
    done = lab.shoal("manager1", *args, check=False, timeout=300)
    if done.returncode != 0:
        return f"failed: {(done.stderr or done.stdout).strip().splitlines()[-1][:120]}"
    return time.perf_counter() - started


def _info(socket: Path, timeout: float = 60) -> control_pb2.InfoResponse:
    with grpc.insecure_channel(f"unix:{socket}") as channel:
        return control_pb2_grpc.ControlStub(channel).Info(control_pb2.InfoRequest(), timeout=timeout)


def keep_logs(lab, into: Path) -> None:
    """Copy every host's daemon logs and the simulated nodes' logs of ``lab`` into ``into``."""
    import shutil
    into.mkdir(parents=True, exist_ok=True)
    try:
        hosts = lab.record().hosts
    except Exception as exc:    # the lab never came up: nothing to keep
        print(f"no logs kept: {exc}", file=sys.stderr)
        return
    for name in hosts:
        for log in lab.host(name).log_dir.glob("*.log"):
            shutil.copy(log, into / f"{name}-{log.name}")
    for log in lab.host("manager1").directory.parent.glob("sim-*.log"):
        shutil.copy(log, into / log.name)


def top_functions(path: Path, count: int = 25) -> str:
    """The functions most often on the stack (inclusive) and on top (self) in py-spy's raw output."""
    total = 0
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    for line in path.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        if not stack or not samples.isdigit():
            continue
        n = int(samples)
        total += n
        frames = [f.split(" (")[0] + " " + f.rsplit("/", 1)[-1].rstrip(")").rsplit(":", 1)[0] for f in stack.split(";")]
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + n
        own[frames[-1]] = own.get(frames[-1], 0) + n
    lines = [f"leader profile: {total} samples (py-spy, 50/s, busy threads only) in {path}"]
    for title, table in (("self", own), ("inclusive", inclusive)):
        lines.append(f"  top {count} by {title}:")
        for frame, n in sorted(table.items(), key=lambda kv: -kv[1])[:count]:
            lines.append(f"    {100 * n / max(total, 1):5.1f} %  {frame}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--heartbeat", default="5s", help="--dispatcher-heartbeat for the run (Docker's default)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for all tasks running")
    parser.add_argument("--profile", metavar="FILE",
                        help="sample the leader's shoald with py-spy from service create until all tasks run; "
                             "collapsed stacks (flamegraph input) go to FILE, the top functions are printed")
    parser.add_argument("--logs", metavar="DIR", help="copy the managers' and simulated nodes' logs to DIR "
                                                       "before the lab is brought down")
    parser.add_argument("--simulate", nargs=4, metavar=("MANAGERS", "TOKEN", "FIRST", "COUNT"), help=argparse.SUPPRESS)
    parser.add_argument("--ready", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.simulate:
        managers, token, first, count = args.simulate
        asyncio.run(_simulate(managers.split(","), token, int(first), int(count), Path(args.ready)))
        return

    from shoal.cli.service_flags import build_spec
    from shoal.lab import Lab
    from shoal.lab.plan import underlay_netns
    from shoal.lab.procs import in_netns

    lab = Lab(f"bench-scale-{os.getpid() % 10000}")
    children: list[subprocess.Popen] = []
    stop = threading.Event()
    try:
        lab.up(3, 0, runtime=True)
        names = ["manager1", "manager2", "manager3"]
        for name in names:
            lab.shoal("manager1", "node", "update", "--availability", "drain", name)
        # Docker's default heartbeat (5 s, Down after 15 s without one), not the lab's 1 s made for
        # fast failure tests: a scale run measures a production-like cluster.
        lab.shoal("manager1", "swarm", "update", "--dispatcher-heartbeat", args.heartbeat)
        token = lab.shoal("manager1", "swarm", "join-token", "-q", "worker").stdout.strip()
        managers = ",".join(f"{lab.address(m)}:{DEFAULT_PORT}" for m in names)
        logs = lab.host("manager1").directory.parent
        for first in range(0, args.nodes, AGENTS_PER_PROCESS):
            count = min(AGENTS_PER_PROCESS, args.nodes - first)
            argv = [sys.executable, __file__, "--simulate", managers, token, str(first), str(count),
                    "--ready", str(logs / f"sim-{first}.ready")]
            with open(logs / f"sim-{first}.log", "w") as log:
                children.append(subprocess.Popen(in_netns(underlay_netns(lab.name), argv), stdout=log, stderr=log))
        # Polled on a follower (each manager holds the whole store): a ListTasks of 50,000 tasks every
        # second on the leader would measure the bench, not the leader.
        observer = next(m for m in names if m != lab.leader())
        control = control_pb2_grpc.ControlStub(grpc.insecure_channel(
            f"unix:{lab.host(observer).socket}", options=[("grpc.max_receive_message_length", -1)]))

        def ready_nodes() -> list:
            return [n for n in control.ListNodes(control_pb2.ListNodesRequest(), timeout=30).nodes
                    if n.status.state == objects_pb2.NodeStatus.READY and n.description.hostname.startswith("sim")]

        deadline = time.monotonic() + 600
        joining = time.monotonic()
        while len(ready_nodes()) < args.nodes:
            dead = [c.pid for c in children if c.poll() is not None]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(f"simulated nodes not all ready (exited: {dead}); see {logs}/sim-*.log")
            time.sleep(POLL)

        print(f"{args.nodes} simulated nodes ready after {time.monotonic() - joining:.1f} s", flush=True)
        down: set[str] = set()

        def sample_down() -> None:
            while not stop.wait(POLL):
                try:
                    for n in control.ListNodes(control_pb2.ListNodesRequest(), timeout=30).nodes:
                        if n.status.state == objects_pb2.NodeStatus.DOWN:
                            down.add(n.id)
                except grpc.RpcError:
                    pass
        sampler = threading.Thread(target=sample_down, daemon=True)
        sampler.start()

        leader = lab.leader()
        record = lab.record().hosts
        pids = {m: record[m].shoald.pid for m in names}
        cpu0 = {m: cpu_seconds(p) for m, p in pids.items()}
        term0 = _info(lab.host(leader).socket).raft_term
        load0 = os.getloadavg()[0]
        base = {"name": "scale", "replicas": args.tasks, "mode": None, "stop_signal": "KILL", "detach": True}
        profiler = None
        if args.profile:
            profiler = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "--nonblocking",
                                         "--format", "raw", "--rate", "50", "-o", args.profile,
                                         "--pid", str(pids[leader])],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started = time.perf_counter()
        service_id = control.CreateService(control_pb2.CreateServiceRequest(
            spec=build_spec("busybox", ["sleep", "3600"], base)), timeout=60).service.id
        assigned_s = running_s = None
        progress = 10.0
        while running_s is None:
            tasks = control.ListTasks(control_pb2.ListTasksRequest(filters={"service": service_id}), timeout=60).tasks
            now = time.perf_counter() - started
            if assigned_s is None and sum(1 for t in tasks if t.node_id) >= args.tasks:
                assigned_s = now
            running = sum(1 for t in tasks if t.status.state == objects_pb2.RUNNING)
            if running >= args.tasks:
                running_s = now
            elif now >= progress:     # how it goes, for a run that does not converge
                progress += 10
                print(f"  {now:5.0f} s: {len(tasks)} tasks, {sum(1 for t in tasks if t.node_id)} assigned, "
                      f"{running} running; {len(down)} nodes seen Down; leader CPU "
                      f"{cpu_seconds(pids[leader]) - cpu0[leader]:.1f} s", flush=True)
            if now > args.timeout:   # report what was reached (and the rest of the figures), not a traceback
                running = sum(1 for t in tasks if t.status.state == objects_pb2.RUNNING)
                running_s = f"NOT reached: {running} of {args.tasks} running after {now:.0f} s ({len(tasks)} tasks)"
                assigned_s = assigned_s if assigned_s is not None else "NOT reached"
                break
            time.sleep(POLL)
        cpu = {m: cpu_seconds(p) - cpu0[m] for m, p in pids.items()}
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)     # py-spy writes its file on SIGINT
            profiler.wait(60)
            print(top_functions(Path(args.profile)))
        rss = {m: rss_mib(p) for m, p in pids.items()}
        term1 = _info(lab.host(leader).socket).raft_term
        load = (load0 + os.getloadavg()[0]) / 2
        raft_log, raft_snap = raft_bytes(lab.host(leader).state_dir / "raft")

        ls_s = timed_cli(lab, "service", "ls")
        ps_s = timed_cli(lab, "service", "ps", "scale")

        follower = next(m for m in names if m != leader)
        stop.set()              # Down counts the run, not the follower killed on purpose below
        sampler.join()
        lab.kill(follower)
        target = _info(lab.host(leader).socket).raft_commit_index
        t = time.perf_counter()
        lab.start(follower)
        while True:
            try:
                if _info(lab.host(follower).socket, timeout=5).raft_commit_index >= target:
                    break
            except grpc.RpcError:
                pass
            if time.perf_counter() - t > 300:
                raise TimeoutError(f"{follower} did not catch up to commit index {target} in 300 s")
            time.sleep(0.1)
        catchup_s = time.perf_counter() - t
        terms = _info(lab.host(leader).socket).raft_term - term0
        stop.set()
        print(format_report({
            "nodes": args.nodes, "tasks": args.tasks, "assigned_s": assigned_s, "running_s": running_s,
            "leader": leader, "leader_cpu": cpu[leader], "leader_rss": rss[leader],
            "followers": [(m, cpu[m], rss[m]) for m in names if m != leader],
            "raft_log": raft_log, "raft_snap": raft_snap, "terms": term1 - term0,
            "terms_catchup": terms - (term1 - term0), "down": len(down),
            "catchup_s": catchup_s, "ls_s": ls_s, "ps_s": ps_s, "load": load, "cpus": os.cpu_count()}))
    finally:
        stop.set()
        if args.logs:
            keep_logs(lab, Path(args.logs))
        for child in children:
            child.terminate()
        for child in children:
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        lab.down()


if __name__ == "__main__":
    main()
