"""One container's record: identity, resolved config, state, and its directory on disk.

States move created -> running -> exited (-> running again on a restart) and any -> removing.
Everything needed to re-adopt the container after a runtimed restart is in ``config.json``
(written once at create) and ``state.json`` (rewritten atomically on every state change):

    <root>/containers/<id>/config.json  state.json  init.spec  exitcode
                           upper/ work/ merged/      <id>-json.log[.N]
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from agent_runtime.errors import Conflict
from agent_runtime.imageconfig import ProcessConfig
from agent_runtime.spec import ContainerInfo, ContainerSpec, ContainerState, Healthcheck, from_json, to_json

CREATED, RUNNING, EXITED, REMOVING = "created", "running", "exited", "removing"
TRANSITIONS = {
    CREATED: {RUNNING, EXITED, REMOVING},
    RUNNING: {EXITED, REMOVING},
    EXITED: {RUNNING, REMOVING, EXITED},
    REMOVING: {REMOVING},
}


def now_iso() -> str:
    ns = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + f".{ns % 10**9:09d}Z"


def write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)


@dataclass
class Runtime:
    """Process facts kept in state.json beside the public state (pids with their start times)."""

    waiter_pid: int = 0
    waiter_start: int = 0
    pid_start: int = 0
    restart_count: int = 0          # restarts by the restart policy since the last start by a user
    manually_stopped: bool = False  # stopped or killed through the API: the policy leaves it stopped
    overlay: bool = False           # runs in the data plane's netns (kept when its last network is disconnected)


@dataclass
class Container:
    id: str
    name: str
    created: str
    spec: ContainerSpec
    image_id: str
    lower_dirs: list[str]
    process: ProcessConfig
    dir: Path
    cgroup_path: str
    state: ContainerState = field(default_factory=ContainerState)
    runtime: Runtime = field(default_factory=Runtime)
    # in memory only
    exited_event: asyncio.Event = field(default_factory=asyncio.Event)
    log_writer: object = None
    pipes: dict[int, str] = field(default_factory=dict)  # read fd -> stream name
    pidfd: int = -1
    stdin_fd: int = -1        # the workload's input (pty master or pipe), for attached clients
    input_ready: asyncio.Event = field(default_factory=asyncio.Event)   # set when a start made stdin_fd
    # attached clients (agent_runtime.attach.Attachment): each gets the output as it is read and
    # ended() after the exit; kept across a start, so a client attached before it sees everything
    attached: set = field(default_factory=set)

    @property
    def log_path(self) -> Path:
        return self.dir / f"{self.id}-json.log"

    def set_status(self, status: str) -> None:
        """Move to ``status``; Conflict if the state machine forbids it. Persists the state."""
        if status not in TRANSITIONS[self.state.status]:
            raise Conflict(f"container {self.name}: cannot go from {self.state.status} to {status}")
        self.state.status = status
        self.state.running = status == RUNNING
        self.save_state()

    def info(self) -> ContainerInfo:
        return ContainerInfo(id=self.id, name=self.name, created=self.created, image=self.spec.image,
                             image_id=self.image_id, state=self.state, config=self.spec,
                             log_path=str(self.log_path), restart_count=self.runtime.restart_count)

    def on_overlay(self) -> bool:
        """Whether it runs in a netns the overlay data plane made (it has or had swarm networks, or
        publishes ports: those reach it through the gateway bridge)."""
        return bool(self.spec.networks) or bool(self.spec.ports) or self.runtime.overlay

    def volume_names(self) -> list[str]:
        return [m.source for m in self.spec.mounts if m.type == "volume"]

    # persistence ---------------------------------------------------------------------------
    def save_config(self) -> None:
        write_json_atomic(self.dir / "config.json", {
            "Id": self.id, "Name": self.name, "Created": self.created, "Spec": self.spec.to_json(),
            "ImageId": self.image_id, "LowerDirs": self.lower_dirs, "CgroupPath": self.cgroup_path,
            "Process": to_json(self.process)})

    def save_state(self) -> None:
        write_json_atomic(self.dir / "state.json", {"State": to_json(self.state),
                                                    "Runtime": to_json(self.runtime)})

    @classmethod
    def load(cls, directory: Path) -> "Container":
        config = json.loads((directory / "config.json").read_text())
        state = json.loads((directory / "state.json").read_text())
        proc = config["Process"]
        process = ProcessConfig(
            args=proc["Args"], env=proc["Env"], cwd=proc["Cwd"], user=proc["User"],
            hostname=proc["Hostname"], stop_signal=proc["StopSignal"],
            healthcheck=from_json(Healthcheck, proc["Healthcheck"]) if proc.get("Healthcheck") else None)
        return cls(id=config["Id"], name=config["Name"], created=config["Created"],
                   spec=ContainerSpec.from_json(config["Spec"]), image_id=config["ImageId"],
                   lower_dirs=config["LowerDirs"], process=process, dir=directory,
                   cgroup_path=config["CgroupPath"], state=from_json(ContainerState, state["State"]),
                   runtime=from_json(Runtime, state["Runtime"]))

    def remove_dir(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
