"""One RaftNode in its own process, driven by JSON lines on stdin (for crash and power-loss tests).

    python tests/raft/member.py ADDR PEER,PEER DATA_DIR [--shadow DIR]

With ``--shadow`` the power-loss recorder (powerloss.py) watches DATA_DIR. Commands, one JSON
object a line; each gets one JSON reply line, except ``write`` which streams one line per
acknowledged write and then {"done": n}:

    {"op": "status"}                   -> term, commit_index, last_applied, leader, is_leader, tasks, digest
    {"op": "barrier"}                  -> {"ok": true} once everything committed is applied here
    {"op": "write", "prefix": P, "count": N, "parallel": K}
                                       -> {"ack": "P00001"} per committed write, K in flight at once
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

PASSWORD = "raft-test-password"


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("addr")
    parser.add_argument("peers")
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--shadow", type=Path)
    args = parser.parse_args()
    if args.shadow:
        import powerloss
        powerloss.install(args.data_dir, args.shadow)

    from manager.state import MemoryStore, Store
    from manager.state.raft import RaftNode
    from proto import objects_pb2

    memory = MemoryStore()
    peers = [p for p in args.peers.split(",") if p]
    node = RaftNode(args.addr, peers, args.data_dir, PASSWORD, memory)
    store = Store(memory, node)
    out = sys.stdout

    def reply(obj: dict) -> None:
        out.write(json.dumps(obj) + "\n")
        out.flush()

    async def write_one(task_id: str) -> None:
        await store.update(lambda tx: tx.create(objects_pb2.Task(id=task_id, service_id="powerloss")))
        reply({"ack": task_id})

    async def write(prefix: str, count: int, parallel: int) -> None:
        ids = iter(f"{prefix}{i:05}" for i in range(count))
        done = 0

        async def worker() -> None:
            nonlocal done
            for task_id in ids:
                await write_one(task_id)
                done += 1

        await asyncio.gather(*(worker() for _ in range(parallel)))
        reply({"done": done})

    reader = asyncio.StreamReader()
    await asyncio.get_running_loop().connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    reply({"started": args.addr})
    while line := await reader.readline():
        cmd = json.loads(line)
        try:
            if cmd["op"] == "status":
                status = node.status()
                snapshot = memory.snapshot()
                reply({"term": status.term, "commit_index": status.commit_index,
                       "last_applied": status.last_applied, "leader": status.leader_addr,
                       "is_leader": status.is_leader,
                       "tasks": sorted(t.id for t in memory.view().tasks()),
                       "digest": hashlib.sha256(snapshot).hexdigest()})
            elif cmd["op"] == "barrier":
                await node.wait_ready(10.0)
                reply({"ok": True})
            elif cmd["op"] == "write":
                await write(cmd["prefix"], cmd["count"], cmd.get("parallel", 1))
        except Exception as exc:  # the driver sees it as a reply
            reply({"error": f"{type(exc).__name__}: {exc}"})
    await node.close()


if __name__ == "__main__":
    asyncio.run(main())
