"""Benchmark: three RaftNodes on loopback, one process each (the shape of a 3-manager cluster).

Prints:
  - single-write commit latency p50/p99 (sequential awaited Store.update, one object each),
    proposed on the leader and on a follower (forwarded);
  - throughput of many concurrent single-object proposals, and of 200-object transactions;
  - idle CPU of each member;
  - time from SIGKILL of the leader process until a survivor reports a new leader, and until a
    write commits (median of 5 rounds; the killed member is restarted from its data dir between).

Usage: python bench/raft_local.py [--writes 500] [--concurrent 3000] [--rounds 5]
Each member is this file run with --member; the driver talks to it by JSON lines on stdin/stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "bench-raft-password"


# -- member process ---------------------------------------------------------------------------

async def member_main(index: int, addrs: list[str], data_dir: Path) -> None:
    sys.path.insert(0, str(ROOT))
    from manager.state import Kind, MemoryStore, ProposalError, Store
    from manager.state.raft import RaftNode
    from proto import objects_pb2

    memory = MemoryStore()
    node = RaftNode(addrs[index], [a for a in addrs if a != addrs[index]], data_dir, PASSWORD, memory)
    store = Store(memory, node)
    counter = 0

    def new_ids(n: int) -> list[str]:
        nonlocal counter
        counter += n
        return [f"m{index}-{os.getpid()}-{i}" for i in range(counter - n, counter)]

    def creating(ids):
        def fn(tx):
            for object_id in ids:
                tx.create(objects_pb2.Task(id=object_id, service_id="bench"))
        return fn

    async def handle(cmd: dict) -> dict:
        op = cmd["op"]
        if op == "status":
            s = node.status()
            return {"leader": s.leader_addr, "is_leader": s.is_leader, "version": memory.version,
                    "tasks": memory.view().count(Kind.TASK)}
        if op == "ready":
            await node.wait_ready(cmd.get("timeout", 20))
            return {"ok": True}
        if op == "seq":
            latencies = []
            for _ in range(cmd["n"]):
                started = time.perf_counter()
                await store.update(creating(new_ids(1)))
                latencies.append(time.perf_counter() - started)
            return {"latencies": latencies}
        if op == "concurrent":
            limit = asyncio.Semaphore(cmd["in_flight"])

            async def one():
                async with limit:
                    await store.update(creating(new_ids(1)), timeout=30)

            started = time.perf_counter()
            await asyncio.gather(*(one() for _ in range(cmd["n"])))
            return {"seconds": time.perf_counter() - started}
        if op == "batches":
            started = time.perf_counter()
            for _ in range(cmd["n"]):
                await store.update(creating(new_ids(cmd["size"])), timeout=30)
            return {"seconds": time.perf_counter() - started}
        if op == "failover":
            old = cmd["old_leader"]
            deadline = time.monotonic() + cmd["timeout"]
            elected_at = None

            async def watch_leader():
                nonlocal elected_at
                while elected_at is None and time.monotonic() < deadline:
                    leader = node.status().leader_addr
                    if leader is not None and leader != old:
                        elected_at = time.monotonic()
                    await asyncio.sleep(0.002)

            watcher = asyncio.create_task(watch_leader())
            committed_at = None
            while time.monotonic() < deadline:
                try:
                    await store.update(creating(new_ids(1)), timeout=0.5)
                    committed_at = time.monotonic()
                    break
                except ProposalError:
                    await asyncio.sleep(0.005)
            await watcher
            return {"elected_at": elected_at, "committed_at": committed_at}
        raise ValueError(f"unknown op {op}")

    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print(json.dumps({"pid": os.getpid()}), flush=True)
    try:
        while line := await reader.readline():
            cmd = json.loads(line)
            try:
                reply = await handle(cmd)
            except Exception as exc:  # report, keep serving
                reply = {"error": f"{type(exc).__name__}: {exc}"}
            print(json.dumps(reply), flush=True)
    finally:
        await node.close()


# -- driver -----------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Member:
    def __init__(self, index: int, addrs: list[str], data_dir: Path) -> None:
        self.index, self.addrs, self.data_dir = index, addrs, data_dir
        self.addr = addrs[index]
        self.proc: subprocess.Popen | None = None
        self.log_file = data_dir.parent / f"m{index}.log"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--member", str(self.index), "--addrs", ",".join(self.addrs),
             "--data-dir", str(self.data_dir)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
            stderr=open(self.log_file, "a"))
        hello = json.loads(self.proc.stdout.readline())
        assert hello["pid"] == self.proc.pid

    def send(self, **cmd) -> None:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()

    def receive(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"member {self.addr} exited")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"member {self.addr}: {reply['error']}")
        return reply

    def call(self, **cmd) -> dict:
        self.send(**cmd)
        return self.receive()

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()


def leader_of(members: list[Member]) -> Member:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        statuses = [m.call(op="status") for m in members]
        leaders = {s["leader"] for s in statuses}
        if len(leaders) == 1 and None not in leaders:
            (addr,) = leaders
            return next(m for m in members if m.addr == addr)
        time.sleep(0.05)
    raise RuntimeError("no agreed leader within 20 s")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def drive(args: argparse.Namespace) -> None:
    root = Path(tempfile.mkdtemp(prefix="shoal-bench-raft-"))
    addrs = [f"127.0.0.1:{free_port()}" for _ in range(3)]
    members = [Member(i, addrs, root / f"m{i}") for i in range(3)]
    try:
        for m in members:
            m.start()
        for m in members:
            m.call(op="ready")
        leader = leader_of(members)
        follower = next(m for m in members if m is not leader)
        print(f"3 members on loopback, one process each; leader {leader.addr}")

        leader.call(op="seq", n=50)          # warm up
        lat = leader.call(op="seq", n=args.writes)["latencies"]
        print(f"single-write commit (on leader, {len(lat)} sequential): "
              f"p50 {percentile(lat, 0.5) * 1e3:.2f} ms  p99 {percentile(lat, 0.99) * 1e3:.2f} ms")
        lat = follower.call(op="seq", n=args.writes)["latencies"]
        print(f"single-write commit (on a follower, forwarded): "
              f"p50 {percentile(lat, 0.5) * 1e3:.2f} ms  p99 {percentile(lat, 0.99) * 1e3:.2f} ms")

        seconds = leader.call(op="concurrent", n=args.concurrent, in_flight=256)["seconds"]
        print(f"concurrent single-object proposals: {args.concurrent / seconds:,.0f} writes/s "
              f"({args.concurrent} with 256 in flight)")
        batches = 20
        seconds = leader.call(op="batches", n=batches, size=200)["seconds"]
        print(f"200-object transactions, sequential: {batches * 200 / seconds:,.0f} objects/s "
              f"({seconds / batches * 1e3:.1f} ms per transaction)")

        before = [m.cpu_seconds() for m in members]
        time.sleep(3)
        idle = [(m.cpu_seconds() - b) / 3 * 100 for m, b in zip(members, before)]
        print("idle CPU per member: " + ", ".join(f"{c:.1f} %" for c in idle))

        elect, accept = [], []
        for round_no in range(args.rounds):
            leader = leader_of(members)
            survivors = [m for m in members if m is not leader]
            leader.kill()
            killed_at = time.monotonic()
            for m in survivors:
                m.send(op="failover", old_leader=leader.addr, timeout=15)
            replies = [m.receive() for m in survivors]
            elected = [r["elected_at"] for r in replies if r["elected_at"]]
            committed = [r["committed_at"] for r in replies if r["committed_at"]]
            if not elected or not committed:
                raise RuntimeError(f"round {round_no}: no new leader or no commit within 15 s")
            elect.append(min(elected) - killed_at)
            accept.append(min(committed) - killed_at)
            print(f"  round {round_no + 1}: new leader after {elect[-1] * 1e3:.0f} ms, "
                  f"first write committed after {accept[-1] * 1e3:.0f} ms")
            leader.start()
            leader.call(op="ready")
        print(f"leader SIGKILLed -> new leader: median {statistics.median(elect) * 1e3:.0f} ms; "
              f"-> write accepted: median {statistics.median(accept) * 1e3:.0f} ms "
              f"(max {max(accept) * 1e3:.0f} ms, {args.rounds} rounds)")
        total = leader_of(members).call(op="status")
        print(f"store at the end: version {total['version']}, {total['tasks']} tasks")
        logs = "".join(m.log_file.read_text() for m in members)
        print(f"PySyncObj log lines 'truncating already-applied': {logs.count('truncating already-applied')}, "
              f"errors/tracebacks: {logs.count('Traceback')}")
    finally:
        for m in members:
            m.stop()
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=500)
    parser.add_argument("--concurrent", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--member", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--addrs", help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.member is not None:
        import logging
        logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
        asyncio.run(member_main(args.member, args.addrs.split(","), args.data_dir))
    else:
        drive(args)


if __name__ == "__main__":
    main()
