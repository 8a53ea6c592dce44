"""Raft members in their own processes (member.py), for crash, power-loss and port-abuse tests."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from raft_cluster import free_port

MEMBER = Path(__file__).with_name("member.py")


class Member:
    """A member.py process; ``ask`` sends one command and returns its reply."""

    def __init__(self, addr: str, peers: list[str], data_dir: Path, shadow: Path | None) -> None:
        self.addr, self.peers, self.data_dir, self.shadow = addr, peers, data_dir, shadow
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        extra = ["--shadow", str(self.shadow)] if self.shadow else []
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, str(MEMBER), self.addr, ",".join(self.peers), str(self.data_dir), *extra,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=2**24)
        started = await self.read()
        assert started == {"started": self.addr}, started

    async def read(self) -> dict:
        line = await asyncio.wait_for(self.proc.stdout.readline(), 30)
        assert line, f"member {self.addr} exited (rc {self.proc.returncode})"
        return json.loads(line)

    def send(self, cmd: dict) -> None:
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())

    async def ask(self, cmd: dict) -> dict:
        self.send(cmd)
        reply = await self.read()
        assert "error" not in reply, reply
        return reply

    def rss_kib(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise AssertionError(f"no VmRSS for member {self.addr}")

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            os.kill(self.proc.pid, signal.SIGKILL)

    async def reap(self) -> bytes:
        """Wait for a killed member and return what it wrote that was not read yet."""
        rest = await self.proc.stdout.read()
        await self.proc.wait()
        self.proc = None
        return rest

    async def stop(self) -> None:
        if self.proc is not None:
            self.proc.stdin.close()
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.kill()
                await self.proc.wait()
            self.proc = None


@pytest.fixture
async def members(tmp_path):
    made: list[Member] = []

    def make(count: int, shadow: bool) -> list[Member]:
        addrs = [f"127.0.0.1:{free_port()}" for _ in range(count)]
        for i, addr in enumerate(addrs):
            made.append(Member(addr, [a for a in addrs if a != addr], tmp_path / f"m{i}",
                               tmp_path / f"shadow{i}" if shadow else None))
        return made

    yield make
    for member in made:
        member.kill()
        if member.proc is not None:
            await member.reap()


async def leader_of(members: list[Member]) -> Member:
    found: list[Member] = []
    for _ in range(500):
        statuses = [await m.ask({"op": "status"}) for m in members]
        leaders = {s["leader"] for s in statuses}
        if len(leaders) == 1 and None not in leaders:
            found = [m for m, s in zip(members, statuses) if s["is_leader"]]
            if found:
                return found[0]
        await asyncio.sleep(0.05)
    raise AssertionError("no agreed leader")


async def agreed_state(members: list[Member]) -> list[dict]:
    """Wait until every member has applied the same commit index; return their statuses."""
    for member in members:
        await member.ask({"op": "barrier"})
    for _ in range(500):
        statuses = [await m.ask({"op": "status"}) for m in members]
        if len({(s["commit_index"], s["last_applied"]) for s in statuses}) == 1:
            return statuses
        await asyncio.sleep(0.05)
    raise AssertionError(f"members never reached the same commit index: {statuses}")
