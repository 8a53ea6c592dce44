"""Rolling update and rollback planning: which slots to update next, and when the update is
paused, rolled back or complete. Pure; progress lives in the service's ``update_status`` so a new
leader picks up where the old one stopped.

Model (SwarmKit's updater, made stateless):

* A slot is *dirty* when every task it still runs carries an outdated spec (``task.is_dirty``);
  a dead slot whose last task is outdated is dirty too. Dirty slots exist → an update is on
  (``UPDATING``, started_at = now) unless one is already on or paused.
* ``parallelism`` workers (0 = all slots at once) each take the lowest dirty slot, replace its
  task, wait until the new task is RUNNING (or has failed), then sleep ``delay`` before taking
  the next. The update task of a slot is its first up-to-date task created since started_at;
  while it is below RUNNING the slot is in flight.
* ``stop-first`` shuts the old task down and creates the new one held at READY until the old
  one has stopped; ``start-first`` starts the new one and shuts the old one down once the new
  one runs. A service with host-mode published ports always updates stop-first (the new task
  could not bind the port while the old one holds it).
* A new task that fails before running, or within ``monitor`` seconds of starting, marks its
  slot failed (``update_status.failed_slots``). When failed / slots in the update exceeds
  ``max_failure_ratio``: ``pause`` → PAUSED; ``rollback`` → the previous spec comes back and a
  rollback runs with the rollback config; a failing rollback pauses (ROLLBACK_PAUSED), it never
  rolls back a rollback; ``continue`` goes on, not retrying failed slots.
* When no slot is dirty or in flight, the update stays open one more ``monitor`` period after the
  last slot finished, then is COMPLETED (or ROLLBACK_COMPLETED).

A paused update does nothing until the ControlAPI resets update_status (``service update`` does).
"""

from __future__ import annotations

from typing import Callable

from proto import objects_pb2

from .plan import Plan
from .restart import decide_restart
from .slots import SlotKey, SlotView, TaskMaker
from .task import has_host_ports, is_alive, is_dirty, is_runnable

UpdateStatus = objects_pb2.UpdateStatus
UpdateConfig = objects_pb2.UpdateConfig

DEFAULT_UPDATE = UpdateConfig(parallelism=1, delay=0.0, failure_action=UpdateConfig.PAUSE,
                              monitor=5.0, max_failure_ratio=0.0, order=UpdateConfig.STOP_FIRST)
ACTIVE_STATES = (UpdateStatus.UPDATING, UpdateStatus.ROLLBACK_STARTED)
PAUSED_STATES = (UpdateStatus.PAUSED, UpdateStatus.ROLLBACK_PAUSED)
ROLLBACK_STATES = (UpdateStatus.ROLLBACK_STARTED, UpdateStatus.ROLLBACK_PAUSED, UpdateStatus.ROLLBACK_COMPLETED)
_FAILED = (objects_pb2.FAILED, objects_pb2.REJECTED)


def update_config(service: objects_pb2.Service, state: int | None = None) -> UpdateConfig:
    """The config that drives an update in ``state`` (default: the service's): the rollback
    config during a rollback. A spec without one gets SwarmKit's defaults."""
    state = service.update_status.state if state is None else state
    field = "rollback" if state in ROLLBACK_STATES else "update"
    return getattr(service.spec, field) if service.spec.HasField(field) else DEFAULT_UPDATE


def plan_update(service: objects_pb2.Service, slots: list[SlotView],
                nodes: dict[str, objects_pb2.Node], now: float, plan: Plan, make_task: TaskMaker,
                can_place: Callable[[SlotKey], bool] = lambda key: True) -> None:
    """Advance the rolling update of ``service`` over ``slots`` (as tended this pass), adding the
    decisions to ``plan``."""
    status = service.update_status
    _retire_replaced(service, slots, nodes, plan)
    dirty = [s for s in slots if _is_dirty_slot(service, s, nodes)]
    if status.state not in ACTIVE_STATES + PAUSED_STATES or (
            status.state in ACTIVE_STATES and not status.started_at):
        # A finished update is only taken up again for slots it could not reach (a paused
        # node now active), never for slots it already tried and saw fail.
        finished = status.state in (UpdateStatus.COMPLETED, UpdateStatus.ROLLBACK_COMPLETED)
        tried = set(status.failed_slots) if finished else set()
        startable = [s for s in dirty if can_place(s.key) and str(s.key) not in tried]
        if not startable:
            return
        edited = plan.edit_service(service).update_status
        rolling_back = status.state == UpdateStatus.ROLLBACK_STARTED
        edited.state = UpdateStatus.ROLLBACK_STARTED if rolling_back else UpdateStatus.UPDATING
        edited.started_at = now
        edited.completed_at = 0.0
        edited.message = "rollback in progress" if rolling_back else "update in progress"
        edited.running_at.clear()
        if not finished:
            del edited.failed_slots[:]
        plan.note(f"{'rollback' if rolling_back else 'update'} started: {len(startable)} slot(s) to update")
        status = edited
    if status.state in PAUSED_STATES:
        return
    config = update_config(service, status.state)
    started_at = status.started_at
    running_at = dict(status.running_at)
    failed = list(status.failed_slots)
    first_failure = None

    # What this update has done so far, slot by slot.
    in_flight = 0
    sleepers: list[float] = []
    last_done = started_at
    involved = {str(s.key) for s in dirty}
    for slot in slots:
        ours = [t for t in slot.tasks if t.meta.created_at >= started_at and not is_dirty(service, t, nodes)]
        for task in ours:
            if task.status.state == objects_pb2.RUNNING and task.id not in running_at:
                running_at[task.id] = task.status.timestamp or now
            if task.status.state in _FAILED and str(slot.key) not in failed:
                began = running_at.get(task.id)
                if began is None or task.status.timestamp - began <= config.monitor:
                    failed.append(str(slot.key))
                    first_failure = first_failure or task
        if not ours:
            continue
        involved.add(str(slot.key))
        update_task = ours[0]
        if is_runnable(update_task) and update_task.status.state < objects_pb2.RUNNING:
            in_flight += 1
            continue
        done_at = running_at.get(update_task.id) or update_task.status.timestamp or now
        last_done = max(last_done, done_at)
        if done_at + config.delay > now:
            sleepers.append(done_at + config.delay)

    _save_progress(service, plan, running_at, failed)
    if failed and len(failed) / max(len(involved), 1) > config.max_failure_ratio:
        if config.failure_action != UpdateConfig.CONTINUE:
            _on_failure(service, plan, config, first_failure, failed, now)
            return

    # Hand dirty slots to free workers.
    workers = config.parallelism or len(slots) or 1
    free = workers - in_flight - len(sleepers)
    waiting = [s for s in dirty if str(s.key) not in failed and can_place(s.key)]
    for slot in sorted(waiting, key=lambda s: _sort_key(s.key))[:max(free, 0)]:
        _update_slot(service, slot, nodes, now, plan, make_task, config)
        in_flight += 1
    # continue: a start-first slot whose new task failed still runs its old task; its new task
    # is restarted per the restart policy, as any failed task would be
    for slot in dirty:
        if str(slot.key) in failed and can_place(slot.key):
            in_flight += _retry_start_first(service, slot, nodes, now, plan, make_task)
    if len(waiting) > max(free, 0) and sleepers:
        plan.wake(min(sleepers))

    if not waiting and not in_flight:
        finish_at = last_done + config.monitor
        if now >= finish_at:
            _complete(service, plan, now)
        else:
            plan.wake(finish_at)


def _retire_replaced(service, slots: list[SlotView], nodes, plan: Plan) -> None:
    """A slot runs one task: once an up-to-date task of the slot is RUNNING (start-first, or a
    spec changed back under a running update), its outdated runnable tasks are shut down —
    whatever the update's state."""
    for slot in slots:
        runnable = slot.runnable
        if len(runnable) < 2:
            continue
        clean = [t for t in runnable if t.status.state == objects_pb2.RUNNING
                 and not is_dirty(service, t, nodes)]
        if not clean:
            continue
        for old in runnable:
            if is_dirty(service, old, nodes):
                plan.set_desired(old, objects_pb2.SHUTDOWN, f"replaced by {clean[-1].id}")
        slot.tasks = [plan.current(t) for t in slot.tasks]


def _is_dirty_slot(service: objects_pb2.Service, slot: SlotView, nodes) -> bool:
    runnable = slot.runnable
    if runnable:
        return all(is_dirty(service, t, nodes) for t in runnable)
    return slot.dead and slot.newest is not None and is_dirty(service, slot.newest, nodes)


def _sort_key(key: SlotKey):
    return (0, key, "") if isinstance(key, int) else (1, 0, str(key))


def _update_slot(service, slot: SlotView, nodes, now, plan: Plan, make_task: TaskMaker,
                 config: UpdateConfig) -> None:
    old = slot.runnable
    after = max((t.meta.created_at for t in slot.tasks), default=0.0)
    start_first = config.order == UpdateConfig.START_FIRST and not has_host_ports(service)
    if old and start_first:
        task = make_task(slot.key, objects_pb2.RUNNING, 0.0, (), after)
        plan.add(task, f"update (start-first): replaces {', '.join(t.id for t in old)} once running")
        return
    for t in old:
        plan.set_desired(t, objects_pb2.SHUTDOWN, "replaced by update (stop-first)")
    hold = any(is_alive(plan.current(t), nodes) for t in slot.tasks)
    task = make_task(slot.key, objects_pb2.READY if hold else objects_pb2.RUNNING, 0.0, (), after)
    plan.add(task, "update (stop-first)" + (": starts once the old task stopped" if hold else ""))


def _retry_start_first(service, slot: SlotView, nodes, now, plan: Plan, make_task: TaskMaker) -> int:
    clean = [t for t in slot.tasks if not is_dirty(service, t, nodes)]
    if not clean or not slot.runnable or any(is_runnable(t) for t in clean):
        return 0
    newest = clean[-1]
    decision = decide_restart(newest, now)
    if not decision.restart:
        plan.wake(decision.retry_at)
        return 0
    hold = decision.not_before > now
    after = max(t.meta.created_at for t in slot.tasks)
    task = make_task(slot.key, objects_pb2.READY if hold else objects_pb2.RUNNING,
                     decision.not_before, decision.restarts, after)
    plan.add(task, f"update (start-first) retries {newest.id}: {decision.reason}")
    if hold:
        plan.wake(decision.not_before)
    return 1


def _save_progress(service, plan: Plan, running_at: dict[str, float], failed: list[str]) -> None:
    current = plan.service.update_status if plan.service is not None else service.update_status
    if dict(current.running_at) == running_at and list(current.failed_slots) == failed:
        return
    edited = plan.edit_service(service).update_status
    edited.running_at.clear()
    edited.running_at.update(running_at)
    del edited.failed_slots[:]
    edited.failed_slots.extend(failed)


def _on_failure(service, plan: Plan, config: UpdateConfig, task, failed, now) -> None:
    edited = plan.edit_service(service)
    status = edited.update_status
    culprit = f"task {task.id}" if task is not None else f"slot {failed[-1]}"
    rolling_back = status.state == UpdateStatus.ROLLBACK_STARTED
    if config.failure_action == UpdateConfig.ROLLBACK and not rolling_back:
        if edited.HasField("previous_spec"):
            edited.spec.CopyFrom(service.previous_spec)
            edited.ClearField("previous_spec")
            edited.spec_base_version = service.meta.version   # a spec write: see Service.spec_base_version
            edited.spec_version = service.spec_version + 1
            status.state = UpdateStatus.ROLLBACK_STARTED
            status.started_at = now
            status.completed_at = 0.0
            status.message = f"update rolled back due to failure or early termination of {culprit}"
            status.running_at.clear()
            del status.failed_slots[:]
            plan.note(status.message)
            return
    if rolling_back:
        status.state = UpdateStatus.ROLLBACK_PAUSED
        status.message = f"rollback paused due to failure or early termination of {culprit}"
    else:
        status.state = UpdateStatus.PAUSED
        status.message = f"update paused due to failure or early termination of {culprit}"
    plan.note(status.message)


def _complete(service, plan: Plan, now: float) -> None:
    edited = plan.edit_service(service)
    status = edited.update_status
    rolling_back = status.state == UpdateStatus.ROLLBACK_STARTED
    status.state = UpdateStatus.ROLLBACK_COMPLETED if rolling_back else UpdateStatus.COMPLETED
    status.completed_at = now
    status.message = "rollback completed" if rolling_back else "update completed"
    status.running_at.clear()   # failed_slots stay: they say which slots kept the old spec
    plan.note(status.message)
