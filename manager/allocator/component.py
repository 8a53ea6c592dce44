"""The allocator component (leader only): runs ``NetworkAllocator`` against the store.

What it does, in each pass, in this order (everything later needs what comes before):

1. networks: gives every network without a VNI or subnets its allocation (the ingress network
   first); frees the subnets and VNI of deleted networks once nothing holds addresses on them;
2. services: allocates each created or changed service's endpoint (one VIP per attached network,
   the ingress network included when a port is published in ingress mode; ports copied into
   ``endpoint.ports``) and writes it when it differs from the stored one;
3. tasks: gives each NEW task an address on each of its networks (``task.networks``), the VIPs of
   its service (``task.endpoint``), and moves it to PENDING. A task of a service without networks
   just moves to PENDING; a NEW task that is no longer wanted (desired state past RUNNING) moves
   to PENDING without addresses, for the scheduler to shut down. An attachment task (a one-off
   container joining an attachable network, ``spec.attachment`` set, no service) gets an
   address on its one network and moves to PENDING on the node it names;
4. nodes: gives each node a host gateway IP (``node.attachments``) on every network one of its
   tasks has an address on, and on the ingress network while the node is READY and some service
   publishes a port in ingress mode.

Addresses are released when their holder goes: a deleted service or node, a deleted task, or a
task whose desired and observed states are both past RUNNING.

A task that cannot be allocated (a full subnet, an unknown network, its service's endpoint
invalid or unallocatable) stays NEW with ``status.err`` saying why, e.g. "cannot allocate an IP
address for task web.7 (...) on network ...": ``shoal service ps`` shows it, the rest of the
service carries on, and the task is retried whenever an address, network or endpoint is freed
or allocated. The service says so too: its ``allocation_error`` holds the endpoint's problem,
else its first blocked task's (and how many more), and is cleared once everything is allocated
(``shoal service ls`` and ``inspect`` show it).

On start (a new leader) the allocation state is rebuilt from the store (``restore``) with the
cluster's address pools, the default ``ingress`` network is created if the cluster has none,
and everything is looked at once. Then it works from store events, coalesced over
``BATCH_WINDOW``; writes are compare-and-set on what the pass read, batched (split into several
changes of at most 200 actions when needed), and an object that moved on meanwhile is simply
looked at again on the next pass (allocation is idempotent: what an owner holds it keeps).

Runs on the store's loop; ``run()`` until cancelled, closing its watch in ``finally``.
"""

from __future__ import annotations

import logging
import time
from typing import Callable, Iterable

from manager.ids import new_id
from manager.state import Kind, ObjectCreated, ObjectDeleted, ObjectUpdated, ReadView, StoreError, copy_of
from manager.storeloop import StoreLoop
from proto import objects_pb2

from manager.ipam.errors import AllocatorError, NetworkInUse
from manager.ipam.ingress import INGRESS_NETWORK_NAME, ingress_network
from manager.ipam.network import NetworkAllocator, is_attachment, task_holds_addresses

log = logging.getLogger(__name__)

BATCH_WINDOW = 0.02
WATCHED = (Kind.NETWORK, Kind.SERVICE, Kind.TASK, Kind.NODE, Kind.CLUSTER)
PENDING_MESSAGE = "pending task scheduling"
FAILED_MESSAGE = "network allocation failed"
_INGRESS = objects_pb2.PortConfig.INGRESS
_READY = objects_pb2.NodeStatus.READY


def publishes_ingress(service: objects_pb2.Service | None) -> bool:
    """Whether a service publishes a port through the routing mesh."""
    return service is not None and any(p.publish_mode == _INGRESS for p in service.spec.endpoint.ports)


def is_allocated(network: objects_pb2.Network) -> bool:
    return bool(network.vni and network.ipam)


class Allocator(StoreLoop):
    """IPAM against the store. See the module docstring."""

    name = "allocator"
    watched = WATCHED
    window = BATCH_WINDOW

    def __init__(self, store, clock: Callable[[], float] = time.time) -> None:
        super().__init__(store, clock)
        self._alloc: NetworkAllocator | None = None
        self._dirty: dict[Kind, set[str]] = {k: set() for k in (Kind.NETWORK, Kind.SERVICE, Kind.TASK, Kind.NODE)}
        self._blocked: dict[Kind, set[str]] = {k: set() for k in self._dirty}
        self._releasing: set[str] = set()           # deleted networks still holding addresses
        self._service_errors: dict[str, str] = {}   # service id -> why its endpoint is not allocated
        self._task_errors: dict[str, dict[str, str]] = {}  # service id -> task id -> why it is not allocated
        self._errors_dirty: set[str] = set()        # services whose allocation_error may be stale
        self._all_nodes = False
        self._unblock = False

    # -- running -------------------------------------------------------------------------------
    async def _start(self, view: ReadView, watch) -> None:
        while view.cluster() is None:       # before `swarm init` wrote it: nothing to do
            await watch.get()
            view = self._store.view()
        self._restore(view)
        await self._ensure_ingress(view)

    def _resync(self, view: ReadView) -> None:
        self._reset()
        self._restore(view)

    def _restore(self, view: ReadView) -> None:
        cluster = view.cluster()
        self._alloc = NetworkAllocator.from_cluster(cluster)
        report = self._alloc.restore(view.networks(), view.services(), view.tasks(), view.nodes())
        for problem in report.problems:
            log.warning("allocator restore: %s", problem)
        for task_id in report.tasks_to_allocate:
            task = view.get(Kind.TASK, task_id)
            if task is not None and task.status.state != objects_pb2.NEW:
                log.warning("task %s keeps addresses the allocator could not take over", task_id)
        self._mark_all(view)
        log.info("allocator started: pools %s, /%d subnets", ", ".join(self._alloc.default_addr_pools),
                 self._alloc.subnet_size)

    def _mark_all(self, view: ReadView) -> None:
        self._dirty[Kind.NETWORK].update(n.id for n in view.networks() if not is_allocated(n)
                                         or not self._alloc.is_network_allocated(n.id))
        self._dirty[Kind.SERVICE].update(view.ids(Kind.SERVICE))
        self._dirty[Kind.TASK].update(t.id for t in view.tasks() if t.status.state == objects_pb2.NEW)
        self._all_nodes = True

    async def _ensure_ingress(self, view: ReadView) -> None:
        """Create the cluster's default ingress network if it has none (as Docker's swarm init)."""
        if any(n.spec.ingress for n in view.networks()):
            return
        network = objects_pb2.Network(id=new_id(), spec=ingress_network(INGRESS_NETWORK_NAME))

        def fn(tx):
            if not any(n.spec.ingress for n in tx.list(Kind.NETWORK)):
                tx.create(network)
        try:
            await self._store.update(fn)
            log.info("created the default ingress network (%s)", network.id)
        except StoreError as err:
            log.warning("could not create the default ingress network: %s", err)

    def _reset(self) -> None:
        for table in (*self._dirty.values(), *self._blocked.values()):
            table.clear()
        self._releasing.clear()
        self._service_errors.clear()
        self._task_errors.clear()
        self._errors_dirty.clear()

    def _has_work(self) -> bool:
        return any(self._dirty.values()) or self._all_nodes or self._unblock

    # -- what events mean ---------------------------------------------------------------------
    def _note(self, event) -> None:
        kind, obj = event.kind, event.obj
        alloc = self._alloc
        created, deleted = isinstance(event, ObjectCreated), isinstance(event, ObjectDeleted)
        old = event.old if isinstance(event, ObjectUpdated) else None
        if kind is Kind.NETWORK:
            if deleted:
                self._releasing.add(obj.id)
                self._dirty[Kind.NETWORK].discard(obj.id)
                self._all_nodes = True
            elif not is_allocated(obj) or not alloc.is_network_allocated(obj.id):
                self._dirty[Kind.NETWORK].add(obj.id)
        elif kind is Kind.SERVICE:
            if deleted:
                alloc.release_service(obj.id)
                self._service_errors.pop(obj.id, None)
                self._task_errors.pop(obj.id, None)
                self._blocked[Kind.SERVICE].discard(obj.id)
                self._dirty[Kind.SERVICE].discard(obj.id)
                self._unblock = True
            elif created or obj.spec != old.spec:
                self._dirty[Kind.SERVICE].add(obj.id)
            if publishes_ingress(obj) != publishes_ingress(old):
                self._all_nodes = True
        elif kind is Kind.TASK:
            if deleted:
                alloc.release_task(obj.id)
                self._forget_task_error(obj)
                self._blocked[Kind.TASK].discard(obj.id)
                self._dirty[Kind.TASK].discard(obj.id)
                self._unblock = True
                return
            if old is not None and task_holds_addresses(old) and not task_holds_addresses(obj):
                alloc.release_task(obj.id)
                self._unblock = True
            if obj.status.state == objects_pb2.NEW and (
                    old is None or old.status.state != objects_pb2.NEW
                    or old.desired_state != obj.desired_state or old.spec != obj.spec):
                self._dirty[Kind.TASK].add(obj.id)
            if obj.node_id and obj.networks and task_holds_addresses(obj) and (
                    old is None or old.node_id != obj.node_id or not old.networks):
                self._dirty[Kind.NODE].add(obj.node_id)
        elif kind is Kind.NODE:
            if deleted:
                alloc.release_node(obj.id)
                self._dirty[Kind.NODE].discard(obj.id)
                self._blocked[Kind.NODE].discard(obj.id)
                self._unblock = True
            elif created or obj.status.state != old.status.state:
                self._dirty[Kind.NODE].add(obj.id)

    # -- one pass --------------------------------------------------------------------------------
    def _take(self, kind: Kind) -> set[str]:
        if self._unblock:
            for k, blocked in self._blocked.items():
                self._dirty[k].update(blocked)
                blocked.clear()
            self._unblock = False
        taken, self._dirty[kind] = self._dirty[kind], set()
        return taken

    async def _pass(self) -> None:
        view = self._store.view()
        now = self._clock()
        self._release_networks()
        await self._allocate_networks(view)
        endpoints = await self._allocate_services(view)
        await self._allocate_tasks(view, endpoints, now)
        await self._allocate_nodes(view)
        await self._report_service_errors()

    def _release_networks(self) -> None:
        for network_id in sorted(self._releasing):
            try:
                self._alloc.release_network(network_id)
            except NetworkInUse as err:
                log.debug("deleted network not released yet: %s", err)
                continue
            self._releasing.discard(network_id)
            self._unblock = True

    async def _allocate_networks(self, view: ReadView) -> None:
        ids = self._take(Kind.NETWORK)
        networks = [n for n in (view.get(Kind.NETWORK, i) for i in ids) if n is not None]
        writes = []
        for network in sorted(networks, key=lambda n: (not n.spec.ingress, n.meta.created_at, n.id)):
            try:
                allocated = self._alloc.allocate_network(network)
            except AllocatorError as err:
                log.warning("cannot allocate network %s: %s", network.spec.annotations.name, err)
                self._blocked[Kind.NETWORK].add(network.id)
                continue
            self._unblock = True
            if allocated.vni != network.vni or list(allocated.ipam) != list(network.ipam):
                writes.append(allocated)
        await self._write(Kind.NETWORK, writes)

    async def _allocate_services(self, view: ReadView) -> dict[str, objects_pb2.Endpoint]:
        """Allocate changed services; returns the endpoints allocated in this pass."""
        endpoints: dict[str, objects_pb2.Endpoint] = {}
        writes = []
        for service_id in sorted(self._take(Kind.SERVICE)):
            service = view.get(Kind.SERVICE, service_id)
            if service is None:
                continue
            name = service.spec.annotations.name
            try:
                endpoint = self._alloc.allocate_service(service)
            except AllocatorError as err:
                if self._service_errors.get(service_id) != str(err):
                    log.warning("cannot allocate the endpoint of service %s: %s", name, err)
                self._service_errors[service_id] = str(err)
                self._blocked[Kind.SERVICE].add(service_id)
                self._errors_dirty.add(service_id)
                continue
            self._errors_dirty.add(service_id)
            if self._service_errors.pop(service_id, None) is not None:
                log.info("service %s: endpoint allocated", name)
                self._unblock = True
            endpoints[service_id] = endpoint
            if endpoint != service.endpoint:
                updated = copy_of(service)
                updated.endpoint.CopyFrom(endpoint)
                writes.append(updated)
        await self._write(Kind.SERVICE, writes)
        return endpoints

    async def _allocate_tasks(self, view: ReadView, endpoints: dict[str, objects_pb2.Endpoint],
                              now: float) -> None:
        writes = []
        for task_id in sorted(self._take(Kind.TASK)):
            task = view.get(Kind.TASK, task_id)
            if task is None or task.status.state != objects_pb2.NEW:
                continue
            updated = copy_of(task)
            if task.desired_state <= objects_pb2.RUNNING:
                if is_attachment(task):
                    problem = self._allocate_attachment(updated)
                else:
                    service = view.get(Kind.SERVICE, task.service_id)
                    if service is None:
                        continue        # the orchestrator deletes the tasks of a removed service
                    problem = self._allocate_task(updated, service, endpoints.get(service.id))
                self._note_task_error(task, problem)
                if problem is not None:
                    self._blocked[Kind.TASK].add(task_id)
                    if task.status.err != problem:
                        updated.status.err = problem
                        updated.status.message = FAILED_MESSAGE
                        updated.status.timestamp = now
                        writes.append(updated)
                        log.warning("task %s: %s", task.annotations.name or task_id, problem)
                    continue
            else:
                self._note_task_error(task, None)
            updated.status.state = objects_pb2.PENDING
            updated.status.message = PENDING_MESSAGE
            updated.status.err = ""
            updated.status.timestamp = now
            writes.append(updated)
        await self._write(Kind.TASK, writes)

    def _allocate_task(self, task: objects_pb2.Task, service: objects_pb2.Service,
                       endpoint: objects_pb2.Endpoint | None) -> str | None:
        """Fill ``task``'s networks and VIPs in place; the problem, if it cannot be done."""
        if service.id in self._service_errors:
            label = task.annotations.name or task.id
            return f"cannot allocate task {label}: {self._service_errors[service.id]}"
        try:
            attachments = self._alloc.allocate_task(task, service)
        except AllocatorError as err:
            return str(err)
        del task.networks[:]
        task.networks.extend(attachments)
        if endpoint is None:
            endpoint = service.endpoint
        if task.spec_version == service.spec_version:
            # the VIPs and ports, not the spec: the task's endpoint spec says what it was made for
            del task.endpoint.ports[:]
            task.endpoint.ports.extend(endpoint.ports)
            del task.endpoint.virtual_ips[:]
            task.endpoint.virtual_ips.extend(endpoint.virtual_ips)
        return None

    def _note_task_error(self, task: objects_pb2.Task, problem: str | None) -> None:
        """Remember (or forget) why a service's task has no addresses, for the service's
        ``allocation_error``."""
        if not task.service_id:
            return
        errors = self._task_errors.setdefault(task.service_id, {})
        if errors.get(task.id) != problem:
            self._errors_dirty.add(task.service_id)
        if problem is None:
            errors.pop(task.id, None)
        else:
            errors[task.id] = problem
        if not errors:
            del self._task_errors[task.service_id]

    def _forget_task_error(self, task: objects_pb2.Task) -> None:
        errors = self._task_errors.get(task.service_id)
        if errors is not None and errors.pop(task.id, None) is not None:
            self._errors_dirty.add(task.service_id)
            if not errors:
                del self._task_errors[task.service_id]

    def service_problem(self, service_id: str) -> str:
        """What the service's ``allocation_error`` should say: its endpoint's problem, else the
        first of its tasks' problems (by task id) and how many more there are; "" when none."""
        if service_id in self._service_errors:
            return self._service_errors[service_id]
        errors = self._task_errors.get(service_id)
        if not errors:
            return ""
        first = errors[min(errors)]
        more = len(errors) - 1
        return first + (f" (and {more} more task{'s' if more > 1 else ''})" if more else "")

    async def _report_service_errors(self) -> None:
        """Write ``allocation_error`` on the services whose problems changed, from a fresh view
        (this pass may have written them already). A write that loses a race re-dirties the
        service, whose next allocation marks it here again."""
        ids, self._errors_dirty = self._errors_dirty, set()
        if not ids:
            return
        view = self._store.view()
        writes = []
        for service_id in sorted(ids):
            service = view.get(Kind.SERVICE, service_id)
            if service is None:
                continue
            message = self.service_problem(service_id)
            if service.allocation_error != message:
                updated = copy_of(service)
                updated.allocation_error = message
                writes.append(updated)
                if message:
                    log.warning("service %s: %s", service.spec.annotations.name, message)
                else:
                    log.info("service %s: every address allocated", service.spec.annotations.name)
        await self._write(Kind.SERVICE, writes)

    def _allocate_attachment(self, task: objects_pb2.Task) -> str | None:
        """Fill an attachment task's network address in place; the problem, if it cannot be."""
        try:
            attachments = self._alloc.allocate_task(task)
        except AllocatorError as err:
            return str(err)
        del task.networks[:]
        task.networks.extend(attachments)
        return None

    async def _allocate_nodes(self, view: ReadView) -> None:
        if self._all_nodes:
            ids = set(view.ids(Kind.NODE))
            self._take(Kind.NODE)
            self._all_nodes = False
        else:
            ids = self._take(Kind.NODE)
        if not ids:
            return
        on_node: dict[str, set[str]] = {}
        for task in view.tasks():
            if task.node_id in ids and task.networks and task_holds_addresses(task):
                on_node.setdefault(task.node_id, set()).update(a.network_id for a in task.networks)
        ingress_id = self._alloc.ingress_network_id()
        mesh = ingress_id is not None and any(publishes_ingress(s) for s in view.services())
        writes = []
        for node_id in sorted(ids):
            node = view.get(Kind.NODE, node_id)
            if node is None:
                continue
            need = set(on_node.get(node_id, ()))
            if mesh and node.status.state == _READY:
                need.add(ingress_id)
            attachments = self._node_attachments(node, need)
            if [(a.network_id, list(a.addresses)) for a in attachments] != \
                    [(a.network_id, list(a.addresses)) for a in node.attachments]:
                updated = copy_of(node)
                del updated.attachments[:]
                updated.attachments.extend(attachments)
                writes.append(updated)
        await self._write(Kind.NODE, writes)

    def _node_attachments(self, node: objects_pb2.Node, need: set[str]) -> list[objects_pb2.NetworkAttachment]:
        """The node's attachments: those it has on networks that still exist (kept, in order),
        then one on each needed network it lacks. Addresses come from the allocator (idempotent),
        so one the store holds but restore could not keep is replaced."""
        wanted = [a.network_id for a in node.attachments if self._alloc.is_network_allocated(a.network_id)]
        wanted += sorted(need - set(wanted))
        out = []
        for network_id in wanted:
            try:
                address = self._alloc.allocate_node_ip(network_id, node.id, node.description.hostname)
            except AllocatorError as err:
                log.warning("node %s: %s", node.description.hostname or node.id, err)
                self._blocked[Kind.NODE].add(node.id)
                continue
            out.append(objects_pb2.NetworkAttachment(network_id=network_id, addresses=[address]))
        return out

    # -- writing ---------------------------------------------------------------------------------
    async def _write(self, kind: Kind, objects: Iterable) -> None:
        """Compare-and-set ``objects`` (copies carrying the version read) in batched changes;
        those that moved on, or whose change failed, are looked at again next pass."""
        objects = list(objects)
        if not objects:
            return

        def fn(tx):
            stale = []
            for obj in objects:
                current = tx.get(kind, obj.id)
                if current is None or current.meta.version != obj.meta.version:
                    stale.append(obj.id)
                else:
                    tx.update(obj)
            return stale

        written, stale = await self._propose(fn, f"{len(objects)} {kind.field}(s)")
        self._dirty[kind].update(stale if written else (o.id for o in objects))
