"""Replicated services and replicated jobs: tasks in slots 1..N.

``reconcile_replicated`` (mode REPLICATED):
  * slots are replica numbers; the lowest ``replicas`` occupied slots are kept, the rest (the
    highest) are removed: their tasks marked REMOVE, finished ones deleted;
  * each kept slot is tended (slots.tend_slot): ended tasks restarted per policy, tasks on
    removed/down/drained nodes or nodes that no longer meet the constraints replaced;
  * missing slots are created in the lowest free numbers, as many per plan as there are slots
    (between MIN_ and MAX_NEW_TASKS_PER_PASS)
    (the next pass, which the new tasks trigger, creates more); replicas above MAX_REPLICAS
    (which the ControlAPI refuses) count as MAX_REPLICAS;
  * the rolling update advances (update.plan_update), history beyond ``retention`` is pruned.
  Scale to 0 leaves nothing running.

``reconcile_replicated_job`` (mode REPLICATED_JOB): ``replicas`` tasks run to completion, all at
once, or at most ``max_concurrent`` at a time (Docker's --max-concurrent: a slot starts when an
earlier one completed). A completed task is never restarted; a failed one is, per policy (``any``
acts as ``on-failure``). A new spec version is a new run: tasks of the old run are shut down and
every slot runs again.
"""

from __future__ import annotations

from common.limits import MAX_NEW_TASKS_PER_PASS, MAX_REPLICAS, MIN_NEW_TASKS_PER_PASS
from manager.ids import new_id
from proto import objects_pb2

from .errors import WrongServiceMode
from .plan import Plan
from .restart import DEFAULT_HISTORY_RETENTION
from .slots import SlotContext, group_by, prune, reap, remove_slot, tend_slot
from .task import IdFactory, created_at, is_runnable, new_task
from .update import plan_update

Mode = objects_pb2.ServiceSpec
REMOVE = objects_pb2.REMOVE


def reconcile_replicated(service: objects_pb2.Service, tasks: list[objects_pb2.Task],
                         nodes: list[objects_pb2.Node], now: float, *, ids: IdFactory = new_id,
                         retention: int = DEFAULT_HISTORY_RETENTION) -> Plan:
    """The plan that moves a replicated service's tasks towards ``spec.replicas`` running
    replicas of its current spec. ``tasks`` may include other services' tasks (ignored).
    Pure: no I/O; ``ids`` makes task ids (inject a counter in tests)."""
    _require_mode(service, Mode.REPLICATED, "reconcile_replicated")
    return _reconcile_slots(service, tasks, nodes, now, ids, retention, job=False)


def reconcile_replicated_job(service: objects_pb2.Service, tasks: list[objects_pb2.Task],
                             nodes: list[objects_pb2.Node], now: float, *,
                             ids: IdFactory = new_id,
                             retention: int = DEFAULT_HISTORY_RETENTION) -> Plan:
    """The plan that runs ``spec.replicas`` tasks of the job's current run to completion."""
    _require_mode(service, Mode.REPLICATED_JOB, "reconcile_replicated_job")
    return _reconcile_slots(service, tasks, nodes, now, ids, retention, job=True)


def _reconcile_slots(service, tasks, nodes, now, ids, retention, *, job: bool) -> Plan:
    plan = Plan(service.id)
    nodes_by_id = {n.id: n for n in nodes}
    mine = [t for t in tasks if t.service_id == service.id]
    reap(plan, mine, nodes_by_id)
    every_run = group_by(mine, lambda t: t.slot)
    if job:
        mine = _shut_down_previous_runs(service, mine, plan)
    by_slot = group_by(mine, lambda t: t.slot)
    occupied = sorted(k for k, members in by_slot.items()
                      if k > 0 and any(t.desired_state != REMOVE for t in members))
    # The ControlAPI refuses more than MAX_REPLICAS; a service written before it did is held there.
    replicas = min(service.spec.replicas, MAX_REPLICAS)
    keep, extra = occupied[:replicas], occupied[replicas:]
    if 0 in by_slot:
        extra.append(0)
    for slot in extra + [k for k in every_run if k > replicas and k not in extra]:
        remove_slot(plan, every_run[slot], nodes_by_id, f"scaled down to {replicas}")

    def make(slot, desired, restart_at=0.0, restarts=(), after=0.0):
        return new_task(service, slot=slot, now=now, ids=ids, desired_state=desired,
                        restart_at=restart_at, restarts=restarts, after=after)

    ctx = SlotContext(service, nodes_by_id, now, plan, make, job=job)
    views = [tend_slot(ctx, slot, by_slot[slot]) for slot in keep]
    kept = set(keep)
    free_numbers = (n for n in range(1, replicas + len(keep) + 1) if n not in kept)
    # As many new tasks per plan as the service has slots (at least MIN_NEW_TASKS_PER_PASS, at most
    # MAX_NEW_TASKS_PER_PASS; common/limits.py): their creation marks the service dirty again, so
    # a large scale is built in bounded steps rather than in one plan of any size, and in few
    # passes (each pass reads every task of the service).
    room = replicas - len(keep)
    if job and service.spec.max_concurrent:
        running = sum(1 for slot in keep if not any(t.status.state == objects_pb2.COMPLETE for t in by_slot[slot]))
        room = min(room, max(0, service.spec.max_concurrent - running))
    step = min(MAX_NEW_TASKS_PER_PASS, max(MIN_NEW_TASKS_PER_PASS, len(keep)))
    for _ in range(min(room, step)):
        slot = next(free_numbers)
        after = max((t.meta.created_at for t in every_run.get(slot, ())), default=0.0)
        plan.add(make(slot, objects_pb2.RUNNING, after=after), f"slot {slot} of {replicas}")
    if not job:
        plan_update(service, views, nodes_by_id, now, plan, make)
    if job:  # older runs' tasks count as history of their slot
        for view in views:
            older = [plan.current(t) for t in every_run[view.key] if t.spec_version != service.spec_version]
            view.tasks = sorted(older + view.tasks, key=created_at)
    prune(plan, views, retention, nodes_by_id)
    return plan


def _shut_down_previous_runs(service, tasks, plan: Plan) -> list[objects_pb2.Task]:
    """Jobs: a new spec version is a new run. Shut down what still runs of older runs; the
    slots then only look at this run's tasks (older ones stay as history, or are deleted when
    their slot is removed)."""
    current = []
    for task in tasks:
        if task.spec_version == service.spec_version:
            current.append(task)
        elif is_runnable(task):
            plan.set_desired(task, objects_pb2.SHUTDOWN,
                             f"job run of spec version {task.spec_version} superseded by {service.spec_version}")
    return current


def _require_mode(service: objects_pb2.Service, mode: int, operation: str) -> None:
    if service.spec.mode != mode:
        raise WrongServiceMode(service.id, Mode.Mode.Name(service.spec.mode).lower(), operation)

