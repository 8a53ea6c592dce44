"""``Plan``: what one reconcile pass decided, as data. The caller applies it in one store change
(tasks to create, task copies to update, task ids to delete, the service copy to write) and calls
again no later than ``wake_at``.

Updated tasks and the service are full copies carrying the ``meta.version`` they were read at, so
applying them is a compare-and-set: if the store moved on meanwhile, the change fails and the
caller reconciles again from fresh state. Inputs are never mutated.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from proto import objects_pb2

log = logging.getLogger(__name__)


@dataclass
class Plan:
    service_id: str
    create: list[objects_pb2.Task] = field(default_factory=list)
    updated: dict[str, objects_pb2.Task] = field(default_factory=dict)
    delete: list[str] = field(default_factory=list)
    service: objects_pb2.Service | None = None
    wake_at: float | None = None
    decisions: list[str] = field(default_factory=list)

    # -- what the caller reads --------------------------------------------------------------
    @property
    def update(self) -> list[objects_pb2.Task]:
        """Copies of existing tasks with their changes (desired_state, mostly), by task id."""
        return [self.updated[k] for k in sorted(self.updated)]

    def __bool__(self) -> bool:
        """True if applying the plan would change the store."""
        return bool(self.create or self.updated or self.delete or self.service is not None)

    # -- building -----------------------------------------------------------------------------
    def note(self, message: str) -> None:
        self.decisions.append(message)
        log.debug("service %s: %s", self.service_id, message)

    def current(self, task: objects_pb2.Task) -> objects_pb2.Task:
        """The task as this plan leaves it (its updated copy if there is one)."""
        return self.updated.get(task.id, task)

    def edit(self, task: objects_pb2.Task) -> objects_pb2.Task:
        """A copy of ``task`` to modify; the same copy for every call in one plan."""
        copy = self.updated.get(task.id)
        if copy is None:
            copy = objects_pb2.Task()
            copy.CopyFrom(task)
            self.updated[task.id] = copy
        return copy

    def set_desired(self, task: objects_pb2.Task, state: int, why: str) -> objects_pb2.Task:
        """Move ``task``'s desired state forward to ``state`` (never backwards; no-op if equal)."""
        current = self.current(task)
        if state <= current.desired_state:
            return current
        copy = self.edit(task)
        copy.desired_state = state
        self.note(f"task {task.id} (slot {slot_name(task)}): desired state "
                  f"{objects_pb2.TaskState.Name(state)}: {why}")
        return copy

    def add(self, task: objects_pb2.Task, why: str) -> None:
        self.create.append(task)
        self.note(f"create task {task.id} (slot {slot_name(task)}): {why}")

    def remove(self, task: objects_pb2.Task, why: str) -> None:
        if task.id not in self.delete:
            self.delete.append(task.id)
            self.updated.pop(task.id, None)
            self.note(f"delete task {task.id} (slot {slot_name(task)}): {why}")

    def wake(self, at: float | None) -> None:
        if at is not None and (self.wake_at is None or at < self.wake_at):
            self.wake_at = at

    def edit_service(self, service: objects_pb2.Service) -> objects_pb2.Service:
        """A copy of ``service`` to modify (the same copy for every call in one plan)."""
        if self.service is None:
            self.service = objects_pb2.Service()
            self.service.CopyFrom(service)
        return self.service


def slot_name(task: objects_pb2.Task) -> str:
    return str(task.slot) if task.slot else task.node_id
