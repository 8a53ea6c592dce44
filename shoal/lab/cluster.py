"""Forming a lab's swarm the way a user would: with the `shoal` CLI against each host's socket.

manager1 runs `shoal swarm init`; every other host joins manager1 with the token for its role, one
at a time (Raft membership changes one member at a time); then we wait until `shoal node ls` on
manager1 lists every host Ready.
"""
from __future__ import annotations

import json
import logging
import subprocess
import time
from dataclasses import dataclass
from typing import Callable, Sequence

from shoal.lab.errors import CommandFailed, LabError
from shoal.lab.plan import LabPlan

logger = logging.getLogger(__name__)

# Lab clusters use a fast heartbeat so failure tests converge in seconds.
DISPATCHER_HEARTBEAT = "1s"
ShoalRunner = Callable[..., "subprocess.CompletedProcess[str]"]
Progress = Callable[[str], None]


def parse_node_ls(stdout: str) -> list[dict]:
    """Parse `shoal node ls --format json` output: one JSON object per line."""
    nodes = []
    for line in stdout.splitlines():
        line = line.strip()
        if line:
            try:
                nodes.append(json.loads(line))
            except ValueError as exc:
                raise LabError(f"`shoal node ls --format json` printed a line that is not JSON: {line!r}") from exc
    return nodes


@dataclass(frozen=True)
class Readiness:
    ready: list[str]
    missing: list[str]

    @property
    def done(self) -> bool:
        return not self.missing


def readiness(nodes: Sequence[dict], expected: Sequence[str]) -> Readiness:
    """Which of the `expected` hostnames `nodes` (node ls records) show Ready, and which not yet."""
    ready_hosts = {n.get("Hostname") for n in nodes if str(n.get("Status", "")).lower() == "ready"}
    return Readiness(
        ready=[h for h in expected if h in ready_hosts],
        missing=[h for h in expected if h not in ready_hosts],
    )


def form(plan: LabPlan, shoal: ShoalRunner, progress: Progress) -> None:
    """Init the swarm on manager1 and join every other host with the token for its role."""
    first = plan.hosts[0]
    progress(f"swarm init on {first.name} ({first.address})")
    shoal(first.name, "swarm", "init", "--advertise-addr", str(first.address),
          "--dispatcher-heartbeat", DISPATCHER_HEARTBEAT,
          "--default-addr-pool", "198.18.0.0/15", "--default-addr-pool-mask-length", "24")
    tokens = {
        role: shoal(first.name, "swarm", "join-token", "-q", role).stdout.strip()
        for role in ("manager", "worker")
    }
    for host in plan.hosts[1:]:
        progress(f"{host.name} ({host.address}) joins as {host.role}")
        shoal(host.name, "swarm", "join", "--token", tokens[host.role],
              "--advertise-addr", str(host.address), first.swarm_addr)


def wait_ready(
    plan: LabPlan,
    shoal: ShoalRunner,
    progress: Progress,
    timeout: float,
    on: str | None = None,
    expected: Sequence[str] | None = None,
) -> list[dict]:
    """Wait until `shoal node ls` on host `on` (default manager1) shows every `expected` hostname
    (default: every host) Ready; returns the node records. Prints progress when the count changes.
    Raises LabError naming the hosts not Ready when `timeout` seconds pass."""
    on = on or plan.hosts[0].name
    expected = list(expected if expected is not None else plan.host_names)
    deadline = time.monotonic() + timeout
    last_count = -1
    last_error = ""
    while True:
        try:
            nodes = parse_node_ls(shoal(on, "node", "ls", "--format", "json").stdout)
            state = readiness(nodes, expected)
            last_error = ""
        except CommandFailed as exc:
            nodes, state = [], readiness([], expected)
            last_error = exc.stderr.strip() or str(exc)
        if len(state.ready) != last_count:
            last_count = len(state.ready)
            progress(f"{last_count}/{len(expected)} nodes Ready")
        if state.done:
            return nodes
        if time.monotonic() > deadline:
            detail = f" (last error: {last_error})" if last_error else ""
            raise LabError(
                f"lab {plan.name}: nodes not Ready after {timeout:.0f} s: {', '.join(state.missing)}{detail}"
            )
        time.sleep(0.25)
