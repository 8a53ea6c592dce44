"""Restart policy, the start gate, and task history — decisions only.

Restart policy (``--restart-condition none|on-failure|any``, ``--restart-delay``,
``--restart-max-attempts``, ``--restart-window``); a spec without a policy gets Docker's default:
any, 5 s delay, unlimited attempts. Jobs treat ``any`` as ``on-failure``: a completed job task is
done. Attempts are counted from ``Task.restarts`` (the times of the slot's earlier restarts, which
each replacement carries forward), so the count survives a change of leader; with a window, only
restarts inside it count, and a slot that ran out of attempts is looked at again when the oldest
counted restart leaves the window.

Start gate: a replacement is created with desired state READY (prepared but held) when it must
wait, and moved to RUNNING once ``restart_at`` has passed and the slot's previous task has
stopped — or its node is down, or OLD_TASK_TIMEOUT has passed (SwarmKit's rule, so a stuck
worker cannot hold a slot for ever).

History: each slot keeps at most ``retention`` tasks (Docker's ``--task-history-limit``, 5);
the oldest finished ones beyond it are deleted, never a task that may still run, never a slot's
newest task.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from proto import objects_pb2

from .task import created_at, has_ended, is_alive, is_reapable, is_runnable

Condition = objects_pb2.RestartPolicy

DEFAULT_RESTART = objects_pb2.RestartPolicy(condition=Condition.ANY, delay=5.0)
OLD_TASK_TIMEOUT = 60.0
DEFAULT_HISTORY_RETENTION = 5


def restart_policy(spec: objects_pb2.TaskSpec) -> objects_pb2.RestartPolicy:
    """The spec's restart policy, or Docker's default when it has none."""
    return spec.restart if spec.HasField("restart") else DEFAULT_RESTART


@dataclass(frozen=True)
class RestartDecision:
    """``restart``: make a replacement. ``not_before``: the earliest time it may start (0 = at
    once). ``restarts``: the history the replacement carries. When not restarting, ``retry_at``
    says when the answer may change (attempts leaving the window), else None."""

    restart: bool
    reason: str
    not_before: float = 0.0
    restarts: tuple[float, ...] = ()
    retry_at: float | None = None


def decide_restart(task: objects_pb2.Task, now: float, *, job: bool = False) -> RestartDecision:
    """Whether the slot of ``task`` — its newest task, which has ended — gets a new task."""
    policy = restart_policy(task.spec)
    state = task.status.state
    state_name = objects_pb2.TaskState.Name(state).lower()
    if policy.condition == Condition.NONE:
        return RestartDecision(False, f"task {state_name}; restart condition is none")
    if state == objects_pb2.COMPLETE and (policy.condition == Condition.ON_FAILURE or job):
        return RestartDecision(False, "task completed successfully")
    history = sorted(task.restarts)
    limit = policy.max_attempts
    if limit:
        counted = [t for t in history if t > now - policy.window] if policy.window else history
        if len(counted) >= limit:
            retry_at = counted[len(counted) - limit] + policy.window if policy.window else None
            scope = f" within {policy.window:g}s" if policy.window else ""
            return RestartDecision(False, f"task {state_name}; {len(counted)} restarts{scope} "
                                          f"reached the maximum of {limit}", retry_at=retry_at)
        history = history[-(limit - 1):] if limit > 1 else []
        history.append(now)
    else:
        history = []
    ended_at = task.status.timestamp or now
    not_before = ended_at + policy.delay if policy.delay > 0 else 0.0
    if not_before <= now:
        not_before = 0.0
    return RestartDecision(True, f"task {state_name}; restart condition "
                                 f"{Condition.Condition.Name(policy.condition).lower()}",
                           not_before=not_before, restarts=tuple(history))


def start_gate(task: objects_pb2.Task, slot_tasks: Iterable[objects_pb2.Task],
               nodes: dict[str, objects_pb2.Node], now: float) -> tuple[bool, float | None]:
    """For a task held at desired READY: (may it go to RUNNING now, when to look again)."""
    wait_until = task.restart_at
    others_alive = any(t.id != task.id and not is_runnable(t) and is_alive(t, nodes)
                       for t in slot_tasks)
    if others_alive:
        wait_until = max(wait_until, task.meta.created_at + OLD_TASK_TIMEOUT)
    if now >= wait_until:
        return True, None
    return False, wait_until


def prune_history(slot_tasks: list[objects_pb2.Task], retention: int,
                  nodes: dict[str, objects_pb2.Node]) -> list[objects_pb2.Task]:
    """The tasks to delete so the slot keeps at most ``retention`` tasks: oldest finished first,
    never the newest task of the slot (it tells what the slot last did)."""
    ordered = sorted(slot_tasks, key=created_at)
    excess = len(ordered) - max(retention, 1)
    doomed = []
    for task in ordered[:-1]:
        if excess <= 0:
            break
        if is_reapable(task, nodes) and (has_ended(task) or not task.node_id):
            doomed.append(task)
            excess -= 1
    return doomed
