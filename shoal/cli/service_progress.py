"""Waiting for a service to converge, with the docker CLI's progress display:

    overall progress: 2 out of 3 tasks
    1/3: running   [==================================================>]
    2/3: running   [==================================================>]
    3/3: preparing [=================================>                 ]
    verify: Service converged

``ProgressTracker.observe(service, tasks, nodes)`` is pure: it turns one snapshot into the lines
to show, whether the service has converged, and an error when it cannot (an update paused or
rolled back, a slot whose tasks keep failing). ``wait_for_service`` polls the ControlAPI every
0.2 s, renders with rich on a terminal (plain changed lines otherwise), and raises
``ConvergeError`` naming the reason. Only tasks running the service's current spec count, like
docker's `_up-to-date` filter.

Docker waits 5 s after convergence to check the tasks stay up; here that wait is
``SHOAL_SERVICE_VERIFY`` seconds (default 0, skipped). ``SHOAL_SERVICE_TIMEOUT`` (default 300 s)
bounds the whole wait.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field

from proto import objects_pb2 as pb

ServiceSpec = pb.ServiceSpec
UpdateStatus = pb.UpdateStatus

POLL_INTERVAL = 0.2
MAX_PROGRESS_BARS = 100
DEFAULT_FAILURE_LIMIT = 3
_NUMBERED = {pb.NEW: 1, pb.PENDING: 3, pb.ASSIGNED: 4, pb.ACCEPTED: 5, pb.PREPARING: 6,
             pb.READY: 7, pb.STARTING: 8, pb.RUNNING: 9}
_MAX_PROGRESS = 9
_LONGEST_STATE = len("preparing")
_FAILED = (pb.FAILED, pb.REJECTED)


class ConvergeError(Exception):
    """The service cannot converge; the message says why (a task's error, a paused update)."""


class Unavailable(Exception):
    """``fetch`` could not reach the cluster this time (a leader change, say); polling goes on."""


def progress_bar(current: int, total: int) -> str:
    """Docker's 50-column bar: "[=====>      ]"."""
    filled = min(int(current / total * 100) // 2, 50) if total else 0
    return f"[{'=' * filled}>{' ' * (50 - filled)}]"


def up_to_date(task: pb.Task, service: pb.Service) -> bool:
    """The task runs the service's current spec (its placement aside, as the orchestrator judges)."""
    if task.spec_version == service.spec_version:
        return True
    if task.endpoint.spec != service.spec.endpoint:
        return False
    wanted, actual = pb.TaskSpec(), pb.TaskSpec()
    wanted.CopyFrom(service.spec.task)
    actual.CopyFrom(task.spec)
    wanted.ClearField("placement")
    actual.ClearField("placement")
    return wanted == actual


def _failure_limit(spec: pb.TaskSpec) -> int:
    policy = spec.restart
    if spec.HasField("restart") and policy.condition == pb.RestartPolicy.NONE:
        return 1
    if spec.HasField("restart") and policy.max_attempts:
        return min(DEFAULT_FAILURE_LIMIT, policy.max_attempts + 1)
    return DEFAULT_FAILURE_LIMIT


def _eligible(node: pb.Node, constraints) -> bool:
    from manager.constraints import matches
    return (node.status.state == pb.NodeStatus.READY and node.spec.availability == pb.NodeSpec.ACTIVE
            and matches(constraints, node))


@dataclass
class Progress:
    lines: list[tuple[str, str]]          # (id, text): "overall progress", "1/3", a node id...
    converged: bool
    error: str | None = None


@dataclass
class ProgressTracker:
    """Follows one service from the moment a command changed it. ``initial`` is the service as
    the command left it: update states already there are not news; ``ignore`` holds the ids of
    tasks that had already failed before the command."""

    initial: pb.Service
    rollback: bool = False                # the command itself rolls back (`service rollback`)
    ignore: set[str] = field(default_factory=set)
    failure_limit: int | None = None
    rolled_back: str | None = None        # set when the orchestrator rolled our update back

    def __post_init__(self):
        self._manual_rollback = self.rollback

    def observe(self, service: pb.Service, tasks: list[pb.Task], nodes: list[pb.Node]) -> Progress:
        lines: list[tuple[str, str]] = []
        error = self._update_status(service, lines)
        if error:
            return Progress(lines, False, error)
        mine = [t for t in tasks if t.service_id == service.id and up_to_date(t, service)]
        active = {n.id for n in nodes if n.status.state != pb.NodeStatus.DOWN}
        job = service.spec.mode in (ServiceSpec.REPLICATED_JOB, ServiceSpec.GLOBAL_JOB)
        if service.spec.mode in (ServiceSpec.REPLICATED, ServiceSpec.REPLICATED_JOB):
            keys = list(range(1, service.spec.replicas + 1))
            key_of = lambda t: t.slot  # noqa: E731
            label = lambda k: f"{k}/{service.spec.replicas}"  # noqa: E731
        else:
            from manager.constraints import InvalidConstraint, constraints_of
            try:
                constraints = constraints_of(service.spec.task.placement)
            except InvalidConstraint:
                constraints = ()
            wanted = {n.id for n in nodes if _eligible(n, constraints)}
            wanted |= {t.node_id for t in mine if t.node_id in active and t.desired_state <= pb.RUNNING}
            keys = sorted(wanted)
            key_of = lambda t: t.node_id  # noqa: E731
            label = lambda k: k[:12]  # noqa: E731
        by_key: dict = {}
        for task in mine:
            by_key.setdefault(key_of(task), []).append(task)
        limit = self.failure_limit or _failure_limit(service.spec.task)
        done = 0
        slot_lines = []
        for key in keys:
            state, text, failures = self._slot(by_key.get(key, []), active, job)
            if failures and len(failures) >= limit:
                worst = max(failures, key=lambda t: t.meta.created_at)
                reason = worst.status.err or worst.status.message or pb.TaskState.Name(worst.status.state).lower()
                times = "once" if len(failures) == 1 else f"{len(failures)} times"
                return Progress(lines, False, f"task {worst.annotations.name or worst.id} "
                                              f"{pb.TaskState.Name(worst.status.state).lower()} {times}: {reason}")
            if state == (pb.COMPLETE if job else pb.RUNNING):
                done += 1
            slot_lines.append((label(key), text))
        if job:
            lines.append(("job progress", f"{done} out of {len(keys)} complete"))
        else:
            what = "rolling back update: " if self.rollback else ""
            lines.append(("overall progress", f"{what}{done} out of {len(keys)} tasks"))
        if len(keys) <= MAX_PROGRESS_BARS:
            lines.extend(slot_lines)
        if done == len(keys) and self.rolled_back is not None:
            return Progress(lines, False, f"service rolled back: {self.rolled_back}")
        return Progress(lines, done == len(keys))

    def _update_status(self, service: pb.Service, lines: list) -> str | None:
        status, before = service.update_status, self.initial.update_status
        if (status.state, status.started_at, status.message) == (before.state, before.started_at, before.message):
            if status.state == UpdateStatus.ROLLBACK_STARTED:
                self.rollback = True
            return None
        if status.state == UpdateStatus.PAUSED:
            return f"service update paused: {status.message}"
        if status.state == UpdateStatus.ROLLBACK_PAUSED:
            return f"service rollback paused: {status.message}"
        if status.state == UpdateStatus.ROLLBACK_STARTED:
            if not self.rollback and status.message:
                lines.append(("rollback", status.message))
            self.rollback = True
            if not self._manual_rollback:
                self.rolled_back = status.message or "update rolled back"
        if status.state == UpdateStatus.ROLLBACK_COMPLETED and not self._manual_rollback:
            return f"service rolled back: {status.message or 'update rolled back'}"
        return None

    def _slot(self, tasks: list[pb.Task], active: set[str], job: bool) -> tuple[int | None, str, list[pb.Task]]:
        """The slot's state, its progress text, and the tasks of it that failed since the start."""
        failures = [t for t in tasks if t.status.state in _FAILED and t.id not in self.ignore]
        if job and any(t.status.state == pb.COMPLETE for t in tasks):
            return pb.COMPLETE, f"{'complete':<{_LONGEST_STATE}} {progress_bar(1, 1)}", failures
        chosen = None
        for task in tasks:
            if task.desired_state not in _NUMBERED or task.status.state not in _NUMBERED:
                continue
            if task.node_id and task.node_id not in active:
                continue
            if chosen is not None:
                if _NUMBERED[chosen.desired_state] < _NUMBERED[task.desired_state]:
                    continue
                if (_NUMBERED[chosen.desired_state] == _NUMBERED[task.desired_state]
                        and _NUMBERED[chosen.status.state] <= _NUMBERED[task.status.state]):
                    continue
            chosen = task
        if chosen is None:
            if failures:
                last = max(failures, key=lambda t: t.meta.created_at)
                return None, (last.status.err or last.status.message)[:80], failures
            return None, "", failures
        if chosen.status.err:
            return chosen.status.state, chosen.status.err[:80], failures
        state = pb.TaskState.Name(chosen.status.state).lower()
        text = f"{state:<{_LONGEST_STATE}} {progress_bar(_NUMBERED[chosen.status.state], _MAX_PROGRESS)}"
        if chosen.status.state == pb.PENDING and chosen.status.message.startswith("no suitable node"):
            text = f"{text} {chosen.status.message}"
        return chosen.status.state, text, failures


# ---- the polling loop and its two renderers ---------------------------------------------------

class PlainRenderer:
    """Prints a line each time its text changes (for logs and pipes)."""

    def __init__(self, echo):
        self._echo = echo
        self._shown: dict[str, str] = {}

    def show(self, lines: list[tuple[str, str]]) -> None:
        summary = ("overall progress", "job progress")
        for key, text in sorted(lines, key=lambda line: line[0] in summary):   # the slots, then the totals
            if text and self._shown.get(key) != text:
                self._shown[key] = text
                self._echo(f"{key}: {text}")

    def note(self, key: str, text: str) -> None:
        self.show([(key, text)])

    def close(self) -> None:
        pass


class LiveRenderer:
    """Redraws the block of lines in place on a terminal (rich): rollback notes above the
    progress lines, the verify line below them, as the docker CLI shows them."""

    def __init__(self):
        from rich.console import Console
        from rich.live import Live
        self._above: list[tuple[str, str]] = []
        self._lines: list[tuple[str, str]] = []
        self._below: list[tuple[str, str]] = []
        self._live = Live(console=Console(highlight=False), auto_refresh=False, transient=False)
        self._live.start()

    def _refresh(self) -> None:
        from rich.text import Text
        text = "\n".join(f"{k}: {t}" for k, t in self._above + self._lines + self._below if t)
        self._live.update(Text(text), refresh=True)

    def show(self, lines: list[tuple[str, str]]) -> None:
        for key, text in lines:
            if key == "rollback" and (key, text) not in self._above:
                self._above.append((key, text))
        self._lines = [(k, t) for k, t in lines if k != "rollback"]
        self._refresh()

    def note(self, key: str, text: str) -> None:
        if key == "verify":
            self._below = [(key, text)]
        elif (key, text) not in self._above:
            self._above.append((key, text))
        self._refresh()

    def close(self) -> None:
        self._live.stop()


def _env_seconds(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


def wait_for_service(fetch, tracker: ProgressTracker, renderer, *, timeout: float | None = None,
                     verify: float | None = None, poll: float = POLL_INTERVAL,
                     clock=time.monotonic, sleep=time.sleep) -> None:
    """Poll ``fetch() -> (service, tasks, nodes)`` (service None once removed) until the tracker
    says the service converged, showing progress through ``renderer``. Raises ConvergeError."""
    timeout = _env_seconds("SHOAL_SERVICE_TIMEOUT", 300.0) if timeout is None else timeout
    verify = _env_seconds("SHOAL_SERVICE_VERIFY", 0.0) if verify is None else verify
    deadline = clock() + timeout
    converged_at = None
    try:
        while True:
            try:
                service, tasks, nodes = fetch()
            except Unavailable:
                if clock() >= deadline:
                    raise ConvergeError(f"service {tracker.initial.spec.annotations.name}: the cluster "
                                        f"stayed unavailable until the {timeout:g}s timeout") from None
                sleep(poll)
                continue
            if service is None:
                raise ConvergeError(f"service {tracker.initial.spec.annotations.name} was removed")
            progress = tracker.observe(service, tasks, nodes)
            renderer.show(progress.lines)
            if progress.error:
                raise ConvergeError(progress.error)
            job = service.spec.mode in (ServiceSpec.REPLICATED_JOB, ServiceSpec.GLOBAL_JOB)
            if progress.converged:
                if converged_at is None:
                    converged_at = clock()
                    if verify > 0 and not job:
                        renderer.note("verify", f"Waiting {verify:g} seconds to verify that tasks are stable...")
                if job or clock() - converged_at >= verify:
                    renderer.note("verify", "Job complete" if job else "Service converged")
                    return
            else:
                converged_at = None
            if clock() >= deadline:
                raise ConvergeError(f"service {service.spec.annotations.name} did not converge within "
                                    f"{timeout:g}s (SHOAL_SERVICE_TIMEOUT); see `shoal service ps "
                                    f"{service.spec.annotations.name}`")
            sleep(poll)
    finally:
        renderer.close()


def make_renderer(echo, stream=None):
    """rich on a terminal, plain changed lines otherwise."""
    stream = stream or sys.stdout
    if hasattr(stream, "isatty") and stream.isatty():
        return LiveRenderer()
    return PlainRenderer(echo)
