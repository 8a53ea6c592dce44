"""Tending one slot: the part every orchestrator shares.

A slot is a replica number (replicated services and jobs) or a node (global ones). Tending it:

1. a runnable task that has ended is shut down (a completed job task is marked COMPLETE instead);
2. a runnable task whose node can no longer keep it (removed, down, drained, constraints) is shut
   down and replaced at once, without restart delay or attempt counting — moving is not a restart;
3. a slot left with nothing runnable gets a replacement if its newest task was shut down on
   purpose (status SHUTDOWN) or the restart policy says so (restart.decide_restart); otherwise
   the slot is *dead* (restart condition none, attempts used up, a job task done) and stays so;
4. a replacement that must wait (restart delay, or the previous task still stopping) is created
   with desired state READY and promoted to RUNNING by the start gate on a later pass.

Pure: works on a Plan, reads nodes and time, never mutates its inputs.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable, Hashable, Iterable

from proto import objects_pb2

from .plan import Plan
from .restart import decide_restart, prune_history, start_gate
from .task import created_at, has_ended, is_alive, is_reapable, is_runnable, why_node_unfit

REMOVE = objects_pb2.REMOVE
READY = objects_pb2.READY
RUNNING = objects_pb2.RUNNING

SlotKey = Hashable
# make_task(key, desired_state, restart_at, restarts, after) -> a new task for the slot, created
# after ``after`` (the creation time of the slot's newest task)
TaskMaker = Callable[[SlotKey, int, float, tuple, float], objects_pb2.Task]


@dataclass
class SlotView:
    """A slot as the plan leaves it: its tasks (current copies plus the ones this plan creates,
    oldest first, REMOVE-marked ones left out) and whether it is dead on purpose."""

    key: SlotKey
    tasks: list[objects_pb2.Task] = field(default_factory=list)
    dead: bool = False

    @property
    def runnable(self) -> list[objects_pb2.Task]:
        return [t for t in self.tasks if is_runnable(t)]

    @property
    def newest(self) -> objects_pb2.Task | None:
        return self.tasks[-1] if self.tasks else None


@dataclass
class SlotContext:
    service: objects_pb2.Service
    nodes: dict[str, objects_pb2.Node]
    now: float
    plan: Plan
    make_task: TaskMaker
    job: bool = False
    can_place: Callable[[SlotKey], bool] = lambda key: True


def group_by(tasks: Iterable[objects_pb2.Task], key: Callable[[objects_pb2.Task], SlotKey]
             ) -> dict[SlotKey, list[objects_pb2.Task]]:
    groups: dict[SlotKey, list[objects_pb2.Task]] = defaultdict(list)
    for task in tasks:
        groups[key(task)].append(task)
    for members in groups.values():
        members.sort(key=created_at)
    return groups


def tend_slot(ctx: SlotContext, key: SlotKey, tasks: list[objects_pb2.Task]) -> SlotView:
    """Steps 1-4 above for one slot; returns the slot as the plan leaves it."""
    plan, now = ctx.plan, ctx.now
    moved = False
    for task in tasks:
        if task.desired_state == REMOVE or not is_runnable(task):
            continue
        if has_ended(task):
            state = objects_pb2.TaskState.Name(task.status.state).lower()
            if ctx.job and task.status.state == objects_pb2.COMPLETE:
                plan.set_desired(task, objects_pb2.COMPLETE, "job task completed")
            else:
                plan.set_desired(task, objects_pb2.SHUTDOWN, f"task {state}")
        elif task.node_id and (reason := why_node_unfit(task, ctx.nodes)):
            plan.set_desired(task, objects_pb2.SHUTDOWN, reason)
            moved = True
    view = SlotView(key, [plan.current(t) for t in tasks if t.desired_state != REMOVE])
    if view.tasks and not view.runnable:
        _refill(ctx, view, moved)
    for task in view.runnable:
        if task.desired_state == READY:
            ok, wake_at = start_gate(task, view.tasks, ctx.nodes, now)
            if ok:
                plan.set_desired(task, RUNNING, "restart delay over and previous task stopped")
            else:
                plan.wake(wake_at)
    view.tasks = [plan.current(t) for t in view.tasks]
    return view


def _refill(ctx: SlotContext, view: SlotView, moved: bool) -> None:
    newest = view.newest
    if ctx.job and newest.status.state == objects_pb2.COMPLETE:
        view.dead = True
        return
    on_purpose = newest.status.state in (objects_pb2.SHUTDOWN, objects_pb2.ORPHANED)
    if moved or on_purpose or not has_ended(newest):
        why = "previous task was moved off its node" if moved else "previous task was shut down"
        restart_at, restarts = 0.0, tuple(newest.restarts)
    else:
        decision = decide_restart(newest, ctx.now, job=ctx.job)
        if not decision.restart:
            view.dead = True
            ctx.plan.wake(decision.retry_at)
            ctx.plan.note(f"slot {view.key} not restarted: {decision.reason}")
            return
        why, restart_at, restarts = decision.reason, decision.not_before, decision.restarts
    if not ctx.can_place(view.key):
        return
    hold = restart_at > ctx.now or any(is_alive(t, ctx.nodes) for t in view.tasks)
    task = ctx.make_task(view.key, READY if hold else RUNNING, restart_at, restarts,
                         newest.meta.created_at)
    ctx.plan.add(task, f"replaces {newest.id}: {why}"
                       + (f"; starts no sooner than {restart_at:.3f}" if restart_at else ""))
    if restart_at:
        ctx.plan.wake(restart_at)
    view.tasks.append(task)


def reap(plan: Plan, tasks: Iterable[objects_pb2.Task], nodes: dict[str, objects_pb2.Node],
         why: str = "removed and stopped") -> None:
    """Delete tasks marked REMOVE once no worker runs them."""
    for task in tasks:
        current = plan.current(task)
        if current.desired_state == REMOVE and is_reapable(current, nodes):
            plan.remove(task, why)


def remove_slot(plan: Plan, tasks: Iterable[objects_pb2.Task], nodes: dict[str, objects_pb2.Node],
                why: str) -> None:
    """Take a whole slot away: finished tasks are deleted now, the others marked REMOVE (the
    reaper deletes them once stopped)."""
    for task in tasks:
        current = plan.current(task)
        if is_reapable(current, nodes) or not (current.node_id or has_ended(current)):
            plan.remove(task, why)
        else:
            plan.set_desired(task, REMOVE, why)


def prune(plan: Plan, views: Iterable[SlotView], retention: int,
          nodes: dict[str, objects_pb2.Node]) -> None:
    for view in views:
        for task in prune_history(view.tasks, retention, nodes):
            plan.remove(task, f"task history of slot {view.key} beyond {retention}")
