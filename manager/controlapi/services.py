"""The ControlAPI's services and tasks: create, read, update, roll back and remove services;
list and read tasks.

Methods take the request message and return the response message, or raise ``ControlError``
(see api.py) with a message naming the service and what is wrong. Reads come from this
manager's store view; writes are compare-and-set transactions proposed through the store.

What happens to tasks is the orchestrator's business: this module writes services only. A
created service gets its tasks from the orchestrator; an updated one is rolled out by it; a
removed one has its tasks shut down and deleted by it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from common.syntax import with_file_defaults
from manager.controlapi.api import ControlError, name_conflict_message, write
from manager.controlapi.service_spec import (MODE_NAMES, SpecError, changes_tasks, port_key,
                                             service_label, validate_spec)
from manager.ids import new_id
from manager.state import Kind, copy_of
from proto import control_pb2, objects_pb2

log = logging.getLogger(__name__)

ServiceSpec = objects_pb2.ServiceSpec
UpdateStatus = objects_pb2.UpdateStatus
PortConfig = objects_pb2.PortConfig

DYNAMIC_PORTS = range(30000, 32768)     # where ingress ports published without a number land
_JOBS = (ServiceSpec.REPLICATED_JOB, ServiceSpec.GLOBAL_JOB)
_DESIRED_STATE_FILTERS = {
    "running": (objects_pb2.READY, objects_pb2.RUNNING),
    "shutdown": (objects_pb2.SHUTDOWN, objects_pb2.REMOVE, objects_pb2.COMPLETE),
    "accepted": (objects_pb2.ACCEPTED,),
    "ready": (objects_pb2.READY,),
    "complete": (objects_pb2.COMPLETE,),
    "remove": (objects_pb2.REMOVE,),
}


def resolve(objects: list, ref: str, what: str, name_of: Callable) -> object:
    """The object ``ref`` names: full ID, then exact name, then unique ID prefix (the docker CLI's
    order). ControlError not_found if none, invalid if ambiguous."""
    for obj in objects:
        if obj.id == ref:
            return obj
    by_name = [o for o in objects if name_of(o) == ref]
    if len(by_name) == 1:
        return by_name[0]
    by_prefix = [o for o in objects if ref and o.id.startswith(ref)]
    if len(by_prefix) == 1 and not by_name:
        return by_prefix[0]
    if len(by_name) > 1 or len(by_prefix) > 1:
        raise ControlError("invalid", f"{what} {ref} is ambiguous ({len(by_name) or len(by_prefix)} matches found)")
    raise ControlError("not_found", f"{what} {ref} not found")


def task_name(task: objects_pb2.Task, service: objects_pb2.Service | None) -> str:
    """``SERVICE.SLOT`` (replicated) or ``SERVICE.NODEID`` (global), as the docker CLI names tasks."""
    if task.annotations.name:
        return task.annotations.name
    base = service.spec.annotations.name if service is not None else task.service_id
    return f"{base}.{task.slot}" if task.slot else f"{base}.{task.node_id}"


def service_status(service: objects_pb2.Service, tasks: list[objects_pb2.Task],
                   nodes: dict[str, objects_pb2.Node]) -> control_pb2.ServiceStatus:
    """Running, desired and completed task counts as ``service ls`` shows them. Pure.

    running: tasks RUNNING that are meant to run, on nodes not down. desired: replicas (replicated); the nodes with a
    task meant to run that is not down (global); for jobs, the slots of the current run still to
    complete. completed: for jobs, the slots (or nodes) of the current run that completed.
    """
    mine = [t for t in tasks if t.service_id == service.id]
    status = control_pb2.ServiceStatus(service_id=service.id)
    status.running_tasks = sum(1 for t in mine if t.status.state == objects_pb2.RUNNING
                               and t.desired_state == objects_pb2.RUNNING and _node_up(nodes, t.node_id))
    mode = service.spec.mode
    if mode in _JOBS:
        run = [t for t in mine if t.spec_version == service.spec_version]
        key = (lambda t: t.slot) if mode == ServiceSpec.REPLICATED_JOB else (lambda t: t.node_id)
        done = {key(t) for t in run if t.status.state == objects_pb2.COMPLETE}
        status.completed_tasks = len(done)
        if mode == ServiceSpec.REPLICATED_JOB:
            status.desired_tasks = max(service.spec.replicas - len(done), 0)
        else:
            status.desired_tasks = len({t.node_id for t in run if t.desired_state <= objects_pb2.RUNNING
                                        and t.node_id not in done and _node_up(nodes, t.node_id)})
    elif mode == ServiceSpec.GLOBAL:
        status.desired_tasks = len({t.node_id for t in mine if t.desired_state <= objects_pb2.RUNNING
                                    and t.node_id and _node_up(nodes, t.node_id)})
    else:
        status.desired_tasks = service.spec.replicas
    return status


def _node_up(nodes: dict[str, objects_pb2.Node], node_id: str) -> bool:
    node = nodes.get(node_id)
    return node is not None and node.status.state != objects_pb2.NodeStatus.DOWN


def filter_options(value: str) -> list[str]:
    """The alternatives of one `ls` filter value ("a,b" → ["a", "b"]; "" → [""])."""
    return [v for v in value.split(",") if v] or [""]


def labels_match(labels, options: list[str]) -> bool:
    """Docker's `label` filter: every option, `key` or `key=value`, holds for `labels`."""
    for option in options:
        k, sep, v = option.partition("=")
        if k not in labels or (sep and labels[k] != v):
            return False
    return True


def _task_labels(task: objects_pb2.Task, services: dict[str, objects_pb2.Service]):
    """The labels a task's `label` filter reads: its service's (the task's own once the service is gone)."""
    service = services.get(task.service_id)
    return service.spec.annotations.labels if service is not None else task.annotations.labels


def service_matches(service: objects_pb2.Service, filters: dict[str, str]) -> bool:
    """The docker CLI's `service ls` filters: id (prefix), name (prefix), label (key or
    key=value), mode. A value may list alternatives separated by commas."""
    for key, value in filters.items():
        options = filter_options(value)
        if key == "id" and not any(service.id.startswith(v) for v in options):
            return False
        if key == "name" and not any(service.spec.annotations.name.startswith(v) for v in options):
            return False
        if key == "mode" and MODE_NAMES.get(service.spec.mode) not in options:
            return False
        if key == "label" and not labels_match(service.spec.annotations.labels, options):
            return False
    return True


class ServiceControl:
    """Services and tasks of the ControlAPI. All methods run on the manager's asyncio loop."""

    def __init__(self, store):
        self._store = store

    # -- helpers -------------------------------------------------------------------------------
    def _service(self, ref: str) -> objects_pb2.Service:
        if not ref:
            raise ControlError("invalid", "a service name or ID is required")
        return resolve(self._store.view().services(), ref, "service", lambda s: s.spec.annotations.name)

    def _checked(self, tx, spec: objects_pb2.ServiceSpec, service_id: str,
                 without: frozenset[str] = frozenset()) -> objects_pb2.ServiceSpec:
        """A copy of ``spec`` validated against the spec rules and the store as ``tx`` (or a read
        view) sees it: a unique name, ingress ports free, networks and secrets resolved to IDs,
        ingress ports published without a number keeping the number the service ``service_id``
        has for the same target and protocol, else given one from 30000-32767. Services in
        ``without`` are treated as removed."""
        try:
            validate_spec(spec)
        except SpecError as err:
            raise ControlError("invalid", str(err)) from None
        spec = copy_of(spec)
        label = service_label(spec)
        services = tx.list(Kind.SERVICE)
        others = [s for s in services if s.id != service_id and s.id not in without]
        current = next((s for s in services if s.id == service_id), None)
        given = {} if current is None else {
            (p.target_port, p.protocol): p.published_port for p in current.spec.endpoint.ports
            if p.publish_mode == PortConfig.INGRESS and p.published_port}
        for other in others:
            if other.spec.annotations.name.lower() == spec.annotations.name.lower():
                raise ControlError("conflict", name_conflict_message("service", spec.annotations.name, other.id))
        taken = {}
        for other in others:
            for port in other.spec.endpoint.ports:
                if port.publish_mode == PortConfig.INGRESS and port.published_port:
                    taken[port_key(port)] = other
        for port in spec.endpoint.ports:
            if port.publish_mode != PortConfig.INGRESS:
                continue
            if not port.published_port:
                port.published_port = (given.get((port.target_port, port.protocol))
                                       or self._free_port(spec, port.protocol, taken))
            owner = taken.get(port_key(port))
            if owner is not None:
                raise ControlError("invalid", f"{label}: port {port_key(port)} is already in use by service "
                                              f"{owner.spec.annotations.name} ({owner.id}) as an ingress port")
        self._resolve_references(tx, spec, label)
        return spec

    @staticmethod
    def _free_port(spec, protocol: int, taken: dict) -> int:
        mine = {port_key(p) for p in spec.endpoint.ports if p.publish_mode == PortConfig.INGRESS}
        for number in DYNAMIC_PORTS:
            key = port_key(PortConfig(published_port=number, protocol=protocol))
            if key not in taken and key not in mine:
                return number
        raise ControlError("unavailable", f"{service_label(spec)}: no free port left in "
                                          f"{DYNAMIC_PORTS.start}-{DYNAMIC_PORTS.stop - 1} to publish on")

    @staticmethod
    def _resolve_references(tx, spec: objects_pb2.ServiceSpec, label: str) -> None:
        networks = tx.list(Kind.NETWORK)
        for attachment in spec.task.networks:
            network = _lookup(networks, attachment.target, "network", label)
            if network.spec.ingress:
                raise ControlError("invalid", f"{label}: network {attachment.target} is the ingress network; "
                                              "it carries published ports and can't be attached explicitly")
            attachment.target = network.id
        for kind, refs in ((Kind.SECRET, spec.task.container.secrets), (Kind.CONFIG, spec.task.container.configs)):
            objects = tx.list(kind)
            for ref in refs:
                field = kind.field
                found = _lookup(objects, getattr(ref, f"{field}_name") or getattr(ref, f"{field}_id"), field, label)
                setattr(ref, f"{field}_id", found.id)
                setattr(ref, f"{field}_name", found.spec.annotations.name)
                with_file_defaults(ref.file, found.spec.annotations.name)

    # -- services ------------------------------------------------------------------------------
    async def create_service(self, request: control_pb2.CreateServiceRequest) -> control_pb2.CreateServiceResponse:
        """Validate ``request.spec`` and write a new Service (spec_version 1); its tasks come from
        the orchestrator."""
        service_id = new_id()

        def fn(tx):
            spec = self._checked(tx, request.spec, service_id)
            service = objects_pb2.Service(id=service_id, spec=spec, spec_version=1, spec_base_version=0)
            tx.create(service)

        await write(self._store, fn, f"create {service_label(request.spec)}")
        service = self._store.view().get(Kind.SERVICE, service_id)
        log.info("service %s (%s) created: %s, image %s", service.spec.annotations.name, service_id,
                 MODE_NAMES[service.spec.mode], service.spec.task.container.image)
        return control_pb2.CreateServiceResponse(service=service)

    async def normalize_service_spec(self, request: control_pb2.NormalizeServiceSpecRequest,
                                     ) -> control_pb2.NormalizeServiceSpecResponse:
        return control_pb2.NormalizeServiceSpecResponse(
            spec=self.normalized(request.spec, request.service_id, request.without_services))

    def normalized(self, spec: objects_pb2.ServiceSpec, service_ref: str = "",
                   without: Iterable[str] = ()) -> objects_pb2.ServiceSpec:
        """The spec create_service (no ``service_ref``) or update_service would store, refused as
        they would refuse it; nothing is written. ``stack deploy`` plans with it."""
        service_id = ""
        if service_ref:
            current = self._service(service_ref)
            _check_immutable(current.spec, spec)
            service_id = current.id
        return self._checked(self._store.view(), spec, service_id, frozenset(without))

    async def get_service(self, request: control_pb2.GetServiceRequest) -> control_pb2.GetServiceResponse:
        return control_pb2.GetServiceResponse(service=self._service(request.service_id))

    async def update_service(self, request: control_pb2.UpdateServiceRequest) -> control_pb2.UpdateServiceResponse:
        """Replace the spec (or, with ``rollback``, swap spec and previous_spec), compare-and-set on
        ``request.version``. spec_version grows only when what tasks run changes; the orchestrator
        rolls the change out. A spec equal to the current one writes nothing."""
        found = self._service(request.service_id)
        name = found.spec.annotations.name
        what = f"update service {name}"

        def fn(tx):
            current = tx.get(Kind.SERVICE, found.id)
            if current is None:
                raise ControlError("not_found", f"service {request.service_id} not found")
            if request.version and not _spec_seen(current, request.version):
                raise ControlError("conflict", f"{what}: update out of sequence (version {request.version}, "
                                               f"current {current.meta.version}); read it again and retry")
            service = copy_of(current)
            if request.rollback:
                _roll_back(service, self._store.clock())
                # The previous spec was valid when it was written; ports or networks may have
                # been taken or removed since.
                service.spec.CopyFrom(self._checked(tx, service.spec, service.id))
            else:
                if not request.HasField("spec"):
                    raise ControlError("invalid", f"{what}: a spec is required")
                _check_immutable(current.spec, request.spec)
                spec = self._checked(tx, request.spec, service.id)
                if spec == current.spec:
                    return current
                _apply_spec(service, spec)
            service.spec_base_version = current.meta.version
            tx.update(service)
            return service

        written = await write(self._store, fn, what)
        service = self._store.view().get(Kind.SERVICE, found.id) or written
        log.info("service %s (%s) %s: spec version %d", name, found.id,
                 "rolled back" if request.rollback else "updated", service.spec_version)
        return control_pb2.UpdateServiceResponse(service=service)

    async def remove_service(self, request: control_pb2.RemoveServiceRequest) -> control_pb2.RemoveServiceResponse:
        """Delete the service. Its tasks are left to the orchestrator, which shuts them down and
        deletes them once they have stopped (deleting them here would orphan running containers)."""
        service = self._service(request.service_id)

        def fn(tx):
            current = tx.get(Kind.SERVICE, service.id)
            if current is not None:
                tx.delete(current)

        # Docker's service rm takes no version: the orchestrator writing the service's update status
        # meanwhile (right after a rolling update) must not make it fail "out of sequence".
        await write(self._store, fn, f"remove service {service.spec.annotations.name}", retry=True)
        log.info("service %s (%s) removed", service.spec.annotations.name, service.id)
        return control_pb2.RemoveServiceResponse()

    async def list_services(self, request: control_pb2.ListServicesRequest) -> control_pb2.ListServicesResponse:
        view = self._store.view()
        filters = dict(request.filters)
        services = sorted((s for s in view.services() if service_matches(s, filters)),
                          key=lambda s: (s.spec.annotations.name, s.id))
        nodes = {n.id: n for n in view.nodes()}
        by_service: dict[str, list[objects_pb2.Task]] = {}
        for task in view.tasks():
            by_service.setdefault(task.service_id, []).append(task)
        statuses = [service_status(s, by_service.get(s.id, []), nodes) for s in services]
        return control_pb2.ListServicesResponse(services=services, statuses=statuses)

    # -- tasks ---------------------------------------------------------------------------------
    async def list_tasks(self, request: control_pb2.ListTasksRequest) -> control_pb2.ListTasksResponse:
        """Tasks matching the filters of `docker service ps`: service (name, ID or prefix), node
        (hostname, ID or prefix), desired-state (running, shutdown, accepted, or a state name),
        id (prefix), name (prefix of SERVICE.SLOT). A value may list alternatives separated by
        commas. Sorted by service name, slot or node, newest first."""
        view = self._store.view()
        services = {s.id: s for s in view.services()}
        tasks = view.tasks()
        for key, value in request.filters.items():
            options = [v for v in value.split(",") if v]
            if not options:
                continue
            if key == "service":
                ids = {resolve(list(services.values()), v, "service", lambda s: s.spec.annotations.name).id
                       for v in options}
                tasks = [t for t in tasks if t.service_id in ids]
            elif key == "node":
                nodes = view.nodes()
                ids = {resolve(nodes, v, "node", lambda n: n.description.hostname).id for v in options}
                tasks = [t for t in tasks if t.node_id in ids]
            elif key == "desired-state":
                wanted = set()
                for v in options:
                    if v.lower() not in _DESIRED_STATE_FILTERS:
                        raise ControlError("invalid", f"invalid filter desired-state={v}: expected "
                                                      "running, shutdown or accepted")
                    wanted.update(_DESIRED_STATE_FILTERS[v.lower()])
                tasks = [t for t in tasks if t.desired_state in wanted]
            elif key == "id":
                tasks = [t for t in tasks if any(t.id.startswith(v) for v in options)]
            elif key == "name":
                tasks = [t for t in tasks if any(task_name(t, services.get(t.service_id)).startswith(v)
                                                 for v in options)]
            elif key == "label":   # the service's labels, as swarmkit's ServiceAnnotations (docker stack ps)
                tasks = [t for t in tasks if labels_match(_task_labels(t, services), options)]
            else:
                raise ControlError("invalid", f"invalid filter '{key}'")  # the docker daemon's words

        def order(t):
            service = services.get(t.service_id)
            return (service.spec.annotations.name if service else t.service_id, t.slot, t.node_id,
                    -t.meta.created_at, t.id)

        return control_pb2.ListTasksResponse(tasks=sorted(tasks, key=order))

    async def get_task(self, request: control_pb2.GetTaskRequest) -> control_pb2.GetTaskResponse:
        if not request.task_id:
            raise ControlError("invalid", "a task ID is required")
        view = self._store.view()
        services = {s.id: s for s in view.services()}
        task = resolve(view.tasks(), request.task_id, "task", lambda t: task_name(t, services.get(t.service_id)))
        return control_pb2.GetTaskResponse(task=task)


# ---- update rules ------------------------------------------------------------------------------

def _lookup(objects: list, ref: str, what: str, label: str):
    try:
        return resolve(objects, ref, what, lambda o: o.spec.annotations.name)
    except ControlError as err:
        raise ControlError(err.code, f"{label}: {err}") from None


def _check_immutable(old: objects_pb2.ServiceSpec, new: objects_pb2.ServiceSpec) -> None:
    label = service_label(old)
    if new.annotations.name != old.annotations.name:
        raise ControlError("invalid", f"{label}: renaming a service is not supported "
                                      f"(asked to rename it to {new.annotations.name})")
    if new.mode != old.mode:
        raise ControlError("invalid", f"{label}: changing the mode from {MODE_NAMES.get(old.mode)} to "
                                      f"{MODE_NAMES.get(new.mode, new.mode)} is not supported; remove the "
                                      "service and create it again")


def _apply_spec(service: objects_pb2.Service, spec: objects_pb2.ServiceSpec) -> None:
    """Make ``spec`` the service's spec, keeping the old one as previous_spec.

    A change to what tasks run bumps spec_version and clears update_status (the orchestrator
    starts a new rolling update). Other changes (replicas, labels, update config) keep both,
    except that a paused update or rollback is cleared so the orchestrator resumes, as Docker
    does on any `service update`.
    """
    old = service.spec
    service.previous_spec.CopyFrom(old)
    tasks_change = changes_tasks(old, spec)
    service.spec.CopyFrom(spec)
    if tasks_change:
        service.spec_version += 1
    if tasks_change or service.update_status.state in (UpdateStatus.PAUSED, UpdateStatus.ROLLBACK_PAUSED):
        service.ClearField("update_status")


def _spec_seen(current: objects_pb2.Service, version: int) -> bool:
    """Whether a client that read the service at ``version`` saw its current spec: the version is
    the current one, or later than the one the last spec write read (the writes since were the
    system's: endpoint allocation, update status). Two clients that read the same version and both
    write a spec: the second is out of sequence."""
    if version == current.meta.version:
        return True
    return current.HasField("spec_base_version") and current.spec_base_version < version <= current.meta.version


def _roll_back(service: objects_pb2.Service, now: float) -> None:
    """Swap spec and previous_spec. A rollback that changes what tasks run bumps spec_version and
    sets update_status ROLLBACK_STARTED (started_at left 0: the orchestrator stamps it when it
    begins); one that does not (a scale, say) is complete at once."""
    label = service_label(service.spec)
    if not service.HasField("previous_spec"):
        raise ControlError("precondition", f"{label} does not have a previous spec")
    current = copy_of(service.spec)
    previous = copy_of(service.previous_spec)
    tasks_change = changes_tasks(current, previous)
    service.spec.CopyFrom(previous)
    service.previous_spec.CopyFrom(current)
    service.ClearField("update_status")
    if tasks_change:
        service.spec_version += 1
        service.update_status.state = UpdateStatus.ROLLBACK_STARTED
    else:
        service.update_status.state = UpdateStatus.ROLLBACK_COMPLETED
        service.update_status.started_at = now
        service.update_status.completed_at = now
    service.update_status.message = "manually requested rollback"
