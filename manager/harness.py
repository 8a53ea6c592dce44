"""A Nomad-style harness for orchestrator tests and benchmarks: an in-memory cluster that applies
plans, records them, and simulates the allocator, the scheduler and the workers step by step on a
fake clock. It lives outside manager/orchestrator because it drives the scheduler too. No asyncio, no store: every step is explicit, so tests read like a timeline.

    h = Harness([make_node("n1"), make_node("n2")], clock=100.0)
    svc = h.add_service(make_service("web", replicas=3))
    h.converge("web")                 # reconcile / schedule / run until nothing changes
    assert h.running("web") == 3
"""

from __future__ import annotations

import itertools
from typing import Callable, Iterable

from manager.orchestrator.plan import Plan
from manager.orchestrator.reconcile import reconcile, reconcile_removed
from manager.scheduler import planned_task_changes, schedule
from proto import objects_pb2

TaskState = objects_pb2.TaskState


class Harness:
    def __init__(self, nodes: Iterable[objects_pb2.Node] = (), *, clock: float = 1000.0,
                 retention: int = 5) -> None:
        self.now = clock
        self.retention = retention
        self.nodes: dict[str, objects_pb2.Node] = {n.id: n for n in nodes}
        self.services: dict[str, objects_pb2.Service] = {}
        self.tasks: dict[str, objects_pb2.Task] = {}
        self.plans: list[Plan] = []
        self._ids = (f"t{i:04d}" for i in itertools.count(1))
        # worker behaviour: image -> "reject" | "fail" (exits non-zero once running) | "exit0"
        self.behaviour: dict[str, str] = {}

    # -- state -----------------------------------------------------------------------------
    def ids(self) -> str:
        return next(self._ids)

    def add_service(self, service: objects_pb2.Service) -> objects_pb2.Service:
        self.services[service.id] = service
        return service

    def update_service(self, service_id: str, edit: Callable[[objects_pb2.Service], None]) -> objects_pb2.Service:
        """What the ControlAPI does on ``service update``: keep the previous spec, bump the spec
        version, reset update_status, then apply ``edit`` to the spec."""
        old = self.services[service_id]
        new = objects_pb2.Service()
        new.CopyFrom(old)
        new.previous_spec.CopyFrom(old.spec)
        new.spec_version = old.spec_version + 1
        new.ClearField("update_status")
        edit(new.spec)
        new.meta.version += 1
        self.services[service_id] = new
        return new

    def tasks_of(self, service_id: str) -> list[objects_pb2.Task]:
        return sorted((t for t in self.tasks.values() if t.service_id == service_id),
                      key=lambda t: (t.slot, t.node_id, t.meta.created_at, t.id))

    def running(self, service_id: str) -> int:
        return sum(1 for t in self.tasks_of(service_id)
                   if t.status.state == objects_pb2.RUNNING and t.desired_state == objects_pb2.RUNNING)

    def running_by_node(self, service_id: str) -> dict[str, int]:
        counts: dict[str, int] = {}
        for t in self.tasks_of(service_id):
            if t.status.state == objects_pb2.RUNNING and t.desired_state == objects_pb2.RUNNING:
                counts[t.node_id] = counts.get(t.node_id, 0) + 1
        return counts

    def set_node(self, node_id: str, *, state: str | None = None, availability: str | None = None,
                 labels: dict[str, str] | None = None) -> None:
        node = self.nodes[node_id]
        if state is not None:
            node.status.state = objects_pb2.NodeStatus.State.Value(state.upper())
        if availability is not None:
            node.spec.availability = objects_pb2.NodeSpec.Availability.Value(availability.upper())
        if labels is not None:
            node.spec.annotations.labels.clear()
            node.spec.annotations.labels.update(labels)

    # -- the orchestrator -------------------------------------------------------------------
    def reconcile(self, service_id: str) -> Plan:
        service = self.services.get(service_id)
        tasks = list(self.tasks.values())
        if service is None:
            plan = reconcile_removed(service_id, tasks, list(self.nodes.values()), self.now)
        else:
            plan = reconcile(service, tasks, list(self.nodes.values()), self.now, ids=self.ids,
                             retention=self.retention)
        self.apply(plan)
        return plan

    def apply(self, plan: Plan) -> None:
        self.plans.append(plan)
        for task in plan.create:
            assert task.id not in self.tasks, f"task id {task.id} reused"
            self.tasks[task.id] = task
        for task in plan.update:
            old = self.tasks[task.id]
            assert task.desired_state >= old.desired_state, "desired state moved backwards"
            assert old.meta.version == task.meta.version, "plan built from a stale task"
            task.meta.version += 1
            self.tasks[task.id] = task
        for task_id in plan.delete:
            del self.tasks[task_id]
        if plan.service is not None:
            plan.service.meta.version += 1
            self.services[plan.service_id] = plan.service

    # -- the rest of the cluster, simulated ---------------------------------------------------
    def allocate(self) -> None:
        """The allocator's part: NEW -> PENDING."""
        for task in self.tasks.values():
            if task.status.state == objects_pb2.NEW:
                self._set(task, objects_pb2.PENDING, "pending task scheduling")

    def schedule(self):
        pending = [t for t in self.tasks.values() if t.status.state == objects_pb2.PENDING]
        plan = schedule(self.nodes.values(), self.tasks.values(), pending, self.now)
        for task in planned_task_changes(plan, self.tasks, self.now):
            task.meta.version += 1
            self.tasks[task.id] = task
        return plan

    def work(self) -> None:
        """Each worker drives its tasks one step, as exec.Do would (nodes that are not READY do
        nothing)."""
        for task in list(self.tasks.values()):
            node = self.nodes.get(task.node_id)
            if node is None or node.status.state != objects_pb2.NodeStatus.READY:
                continue
            state, desired = task.status.state, task.desired_state
            if not (objects_pb2.ASSIGNED <= state <= objects_pb2.RUNNING):
                continue
            behaviour = self.behaviour.get(task.spec.container.image)
            if desired > objects_pb2.RUNNING:
                self._set(task, objects_pb2.SHUTDOWN, "shutdown")
            elif behaviour == "reject" and state < objects_pb2.RUNNING:
                self._set(task, objects_pb2.REJECTED, "rejected", err="image not found")
            elif state < objects_pb2.READY:
                self._set(task, objects_pb2.READY, "prepared")
            elif state < objects_pb2.RUNNING and desired == objects_pb2.RUNNING:
                self._set(task, objects_pb2.RUNNING, "started")
            elif state == objects_pb2.RUNNING and behaviour == "fail":
                self._set(task, objects_pb2.FAILED, "exit 1", err="task: non-zero exit (1)", exit_code=1)
            elif state == objects_pb2.RUNNING and behaviour == "exit0":
                self._set(task, objects_pb2.COMPLETE, "finished")

    def finish(self, task_id: str, state: str = "failed", exit_code: int = 1) -> None:
        self._set(self.tasks[task_id], TaskState.Value(state.upper()), state, exit_code=exit_code)

    def step(self, service_ids: Iterable[str] | None = None) -> list[Plan]:
        plans = [self.reconcile(s) for s in (service_ids or list(self.services))]
        self.allocate()
        self.schedule()
        self.work()
        return plans

    def converge(self, service_ids: Iterable[str] | str | None = None, *, max_steps: int = 200,
                 until: float | None = None) -> int:
        """Step until a whole step changes nothing and no service wants waking before ``until``
        (default: never advance the clock); advance the fake clock to the next wake-up when idle.
        Returns the number of steps."""
        ids = [service_ids] if isinstance(service_ids, str) else service_ids
        for count in range(1, max_steps + 1):
            before = self._fingerprint()
            plans = self.step(ids)
            if self._fingerprint() != before:
                continue
            wakes = [p.wake_at for p in plans if p.wake_at is not None]
            if until is not None and wakes and min(wakes) <= until:
                self.now = max(self.now, min(wakes))
                continue
            return count
        raise AssertionError(f"no convergence within {max_steps} steps")

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def _fingerprint(self):
        return (tuple(sorted((t.id, t.meta.version) for t in self.tasks.values())),
                tuple(sorted((s.id, s.meta.version) for s in self.services.values())))

    def _set(self, task: objects_pb2.Task, state: int, message: str, *, err: str = "",
             exit_code: int = 0) -> None:
        updated = objects_pb2.Task()
        updated.CopyFrom(task)
        updated.status.state = state
        updated.status.message = message
        updated.status.err = err
        updated.status.exit_code = exit_code
        updated.status.timestamp = self.now
        updated.meta.version += 1
        self.tasks[task.id] = updated
