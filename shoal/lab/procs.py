"""Starting lab daemons inside a host's network namespace, and ending them by PID.

Daemons are started as `nsenter --net=/run/netns/NS -- PROGRAM ARGS`: nsenter joins the network
namespace and execs PROGRAM, so the PID we record is the daemon's own. Unlike `ip netns exec`,
nsenter leaves the mount namespace alone: shoal-runtimed's mounts (container roots, namespace bind
mounts) are visible from the host and from `down`, as they would be on a real machine, and a
restarted runtimed sees the mounts its predecessor made. Each daemon gets its own session
(`start_new_session=True`), so it outlives the shoal-lab command that started it.
"""
from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sysconfig
import time
from pathlib import Path
from typing import Mapping, Sequence

from agent_runtime.logformat import logfmt_value
from shoal.lab.errors import LabError
from shoal.lab.store import ProcessRecord

logger = logging.getLogger(__name__)

NSENTER = "nsenter"
STOP_GRACE = 10.0
_POLL = 0.05
# Daemons this process started, so their exit is collected (no zombies) while it lives.
_children: dict[int, subprocess.Popen] = {}


def netns_path(netns: str) -> str:
    return f"/run/netns/{netns}"


def in_netns(netns: str, argv: Sequence[str]) -> list[str]:
    """argv that runs `argv` inside network namespace `netns`, exec'ing it (same PID)."""
    return [NSENTER, f"--net={netns_path(netns)}", "--", *argv]


def program(name: str) -> str:
    """Path of console script `name`: the one beside this interpreter if present, else on PATH."""
    beside = Path(sysconfig.get_path("scripts")) / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise LabError(f"cannot find the program {name!r} (not in {beside.parent} nor on PATH)")
    return found


def scripts_dir() -> str:
    return sysconfig.get_path("scripts")


def process_starttime(pid: int) -> int | None:
    """The start time (clock ticks since boot) of live process `pid`; None if it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # comm (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(")") + 2:].split()
    state, starttime = fields[0], int(fields[19])
    if state in ("Z", "X"):
        return None
    return starttime


def _reap(pid: int) -> None:
    """Collect `pid` if this process started it and it has exited (no zombies left behind)."""
    child = _children.get(pid)
    if child is not None and child.poll() is not None:
        del _children[pid]


def is_running(record: ProcessRecord | None) -> bool:
    """True if the recorded process is alive and is the very process we started."""
    if record is None:
        return False
    _reap(record.pid)
    return process_starttime(record.pid) == record.starttime


def start(
    argv: Sequence[str],
    *,
    netns: str,
    log_path: Path,
    env: Mapping[str, str] | None = None,
) -> ProcessRecord:
    """Start `argv` inside `netns` in a new session, stdout and stderr appended to `log_path`.
    Returns its record; raises LabError if it cannot be started."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    full = in_netns(netns, argv)
    with open(log_path, "ab") as log:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())  # the daemons' own logfmt
        log.write(f"time={stamp} level=info component=shoal-lab msg={logfmt_value('starting: ' + ' '.join(full))}\n"
                  .encode())
        log.flush()
        try:
            proc = subprocess.Popen(
                full,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                start_new_session=True,
            )
        except OSError as exc:
            raise LabError(f"cannot start {argv[0]} in {netns}: {exc}") from exc
    _children[proc.pid] = proc
    starttime = process_starttime(proc.pid)
    if starttime is None:
        _reap(proc.pid)
        raise LabError(f"{argv[0]} in {netns} exited at once; see {log_path}:\n{log_tail(log_path)}")
    logger.info("started %s in %s as pid %d", argv[0], netns, proc.pid)
    return ProcessRecord(pid=proc.pid, starttime=starttime)


def signal_process(record: ProcessRecord, sig: int) -> bool:
    """Send `sig` to the recorded process if it is still ours; returns whether it was sent."""
    if not is_running(record):
        return False
    try:
        os.kill(record.pid, sig)
    except ProcessLookupError:
        return False
    return True


def wait_gone(records: Sequence[ProcessRecord], timeout: float) -> list[ProcessRecord]:
    """Wait up to `timeout` seconds for the processes to end; returns those still running."""
    deadline = time.monotonic() + timeout
    alive = [r for r in records if is_running(r)]
    while alive and time.monotonic() < deadline:
        time.sleep(_POLL)
        alive = [r for r in alive if is_running(r)]
    return alive


def stop(records: Sequence[ProcessRecord | None], grace: float = STOP_GRACE) -> None:
    """SIGTERM the recorded processes, wait up to `grace` seconds, then SIGKILL what is left and
    wait for it to be gone. Records of processes already gone are ignored."""
    live = [r for r in records if r is not None and signal_process(r, signal.SIGTERM)]
    for record in wait_gone(live, grace):
        logger.warning("pid %d did not stop within %.0f s of SIGTERM; sending SIGKILL", record.pid, grace)
        signal_process(record, signal.SIGKILL)
    kill(live)


def kill(records: Sequence[ProcessRecord | None]) -> None:
    """SIGKILL the recorded processes and wait until they are gone."""
    live = [r for r in records if r is not None and signal_process(r, signal.SIGKILL)]
    left = wait_gone(live, STOP_GRACE)
    if left:
        raise LabError(f"processes {[r.pid for r in left]} survived SIGKILL")


def kill_pids(pids: Sequence[int]) -> None:
    """SIGKILL processes by bare PID (ones found inside a lab namespace or cgroup) and wait for them."""
    records = []
    for pid in pids:
        starttime = process_starttime(pid)
        if starttime is not None:
            records.append(ProcessRecord(pid, starttime))
    kill(records)


def log_tail(path: Path, lines: int = 20) -> str:
    """The last `lines` lines of a log file, or a note that it is missing."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return f"(no log at {path})"
