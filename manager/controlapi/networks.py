"""The ControlAPI's networks: create, read, list and remove cluster overlay networks.

Methods take the request message and return the response message, or raise ``ControlError``
(see api.py) naming the network and what is wrong. Reads come from this manager's store view;
writes are transactions proposed through the store.

Subnets and VNIs are the allocator component's to give (manager/allocator/component.py): this module
writes the Network with its spec only. To refuse at create time what the allocator would refuse
later (a malformed or overlapping subnet, a gateway outside it, exhausted default pools, a taken
VXLAN id), ``create_network`` dry-runs the pure IPAM (`NetworkAllocator`) over the networks in the
store, in the order the allocator takes them. It then waits (up to ``allocation_timeout``) for the
allocator to fill in vni and ipam, so that `shoal network create` returns the allocated network
as Docker does.

One-off containers (`shoal run --network NET`) join attachable networks through
``attach_network``: it records an *attachment task* (``spec.attachment`` set, ``node_id`` the
calling node, no service, desired RUNNING) and waits for the allocator to give it its address.
The scheduler assigns it to its node as it is, the node runs nothing for it (it reports it
RUNNING), and the dispatcher's network state makes every node know its address and DNS names.
``detach_network`` deletes the task, which frees the address. A network is not removable while an
attachment holds an address on it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging

from manager.ipam import AllocatorError, NetworkAllocator, is_attachment, task_holds_addresses
from manager.ipam.network import OVERLAY_DRIVER, network_label
from manager.ipam.vni import VXLANID_OPTION
from manager.changes import ChangeSignal
from manager.controlapi.api import ControlError, write
from manager.controlapi.limits import MAX_NETWORK_NAME_LENGTH, LimitError, check_labels, quoted
from manager.controlapi.services import filter_options, labels_match, resolve, task_name
from manager.ids import new_id
from manager.state import Kind, copy_of
from proto import control_pb2, objects_pb2

log = logging.getLogger(__name__)

ALLOCATION_TIMEOUT = 5.0             # how long create waits for the allocator
ENCRYPTED_OPTION = "encrypted"
ALLOWED_OPTIONS = (ENCRYPTED_OPTION, VXLANID_OPTION)
_INGRESS = objects_pb2.PortConfig.INGRESS
_FILTERS = ("id", "name", "driver", "label", "scope", "type")


def network_name(network: objects_pb2.Network) -> str:
    return network.spec.annotations.name


def network_subnets(network: objects_pb2.Network) -> list[objects_pb2.IPAMConfig]:
    """The subnets a network holds or will hold: the allocated ones, else those its spec asks for."""
    return list(network.ipam) or [c for c in network.spec.ipam if c.subnet]


def network_matches(network: objects_pb2.Network, filters: dict[str, str]) -> bool:
    """The docker CLI's `network ls` filters: id (prefix), name (substring), driver, label (key or
    key=value), scope (swarm; local and global match nothing), type (builtin: the ingress network,
    custom: the others). A value may list alternatives separated by commas."""
    for key, value in filters.items():
        options = filter_options(value)
        if key == "id" and not any(network.id.startswith(v) for v in options):
            return False
        if key == "name" and not any(v in network_name(network) for v in options):
            return False
        if key == "driver" and (network.spec.driver or OVERLAY_DRIVER) not in options:
            return False
        if key == "scope" and "swarm" not in options:
            return False
        if key == "type" and ("builtin" if network.spec.ingress else "custom") not in options:
            return False
        if key == "label" and not labels_match(network.spec.annotations.labels, options):
            return False
    return True


def check_spec(spec: objects_pb2.NetworkSpec) -> objects_pb2.NetworkSpec:
    """A normalized copy of ``spec`` (driver defaulted to overlay), or ControlError invalid naming
    what is wrong. Checks what needs no store: name, driver, options, label keys, and that each
    IPAM entry is an IPv4 CIDR with its gateway inside; overlaps are checked against the store."""
    name = spec.annotations.name
    if not name:
        raise ControlError("invalid", "create network: a name is required")
    if len(name) > MAX_NETWORK_NAME_LENGTH:
        raise ControlError("invalid", f"create network {quoted(name)}: name must be "
                                      f"{MAX_NETWORK_NAME_LENGTH} characters or fewer")
    if any(c.isspace() for c in name) or "/" in name:
        raise ControlError("invalid", f"create network {name!r}: invalid name (no spaces or slashes)")
    spec = copy_of(spec)
    spec.driver = spec.driver or OVERLAY_DRIVER
    if spec.driver != OVERLAY_DRIVER:
        raise ControlError("invalid", f"create network {name}: driver {spec.driver!r} is not supported; "
                                      "swarm networks use the overlay driver (-d overlay)")
    for option in spec.driver_opts:
        if option not in ALLOWED_OPTIONS:
            raise ControlError("invalid", f"create network {name}: unknown option {option!r} "
                                          f"(supported: {', '.join(ALLOWED_OPTIONS)})")
    try:
        check_labels(spec.annotations.labels)
    except LimitError as err:
        raise ControlError("invalid", f"create network {name}: {err}") from None
    if spec.ingress and (spec.attachable or spec.internal):
        raise ControlError("invalid", f"create network {name}: the ingress network can't be "
                                      f"{'attachable' if spec.attachable else 'internal'}")
    return spec


def _dry_run(networks: list[objects_pb2.Network], cluster, candidate: objects_pb2.Network) -> None:
    """Allocate ``candidate`` on a throwaway NetworkAllocator holding what the allocator component
    holds or will hold (allocated networks, then pending ones in its order); ControlError invalid
    with the allocator's message (which names both networks on an overlap) if it would fail."""
    try:
        allocator = NetworkAllocator.from_cluster(cluster.spec if cluster is not None
                                                  else objects_pb2.ClusterSpec())
    except AllocatorError as err:
        raise ControlError("unavailable", f"create network {network_name(candidate)}: {err}") from err
    allocator.restore(networks, [], [], [])
    pending = [n for n in networks if not allocator.is_network_allocated(n.id)]
    for network in sorted(pending, key=lambda n: (not n.spec.ingress, n.meta.created_at, n.id)):
        try:
            allocator.allocate_network(network)
        except AllocatorError:
            pass        # the allocator will refuse it too; it holds nothing meanwhile
    try:
        allocator.allocate_network(candidate)
    except AllocatorError as err:
        # The candidate's ID was never stored: name it by its name alone.
        label, message = network_label(candidate.id, network_name(candidate)), str(err)
        message = message.removeprefix(f"{label}: ").replace(label, f'network "{network_name(candidate)}"')
        raise ControlError("invalid", f"create network {network_name(candidate)}: {message}") from None


def _check_overlaps(networks: list[objects_pb2.Network], candidate: objects_pb2.Network) -> None:
    """ControlError invalid naming both networks when a subnet ``candidate`` asks for overlaps one
    another network holds or asks for (pending networks included, whatever the allocator made of
    them)."""
    for config in candidate.spec.ipam:
        if not config.subnet:
            continue
        mine = ipaddress.ip_network(config.subnet, strict=False)    # parsed by the dry run already
        for other in networks:
            for theirs in network_subnets(other):
                try:
                    held = ipaddress.ip_network(theirs.subnet, strict=False)
                except ValueError:
                    continue
                if held.version == mine.version and held.overlaps(mine):
                    raise ControlError("invalid", f"create network {network_name(candidate)}: subnet {mine} "
                                                  f"overlaps subnet {held} of network {network_name(other)} "
                                                  f"({other.id})")


def network_users(view, network: objects_pb2.Network) -> list[str]:
    """What keeps ``network`` from being removed, as "service web" / "task web.1" / "container c"
    phrases: services
    whose spec attaches to it, tasks holding an address on it, and for the ingress network
    services publishing ports in ingress mode. Pure over the view."""
    services = {s.id: s for s in view.services()}
    users, named = [], set()
    for service in sorted(services.values(), key=lambda s: s.spec.annotations.name):
        attached = any(a.target in (network.id, network_name(network)) for a in service.spec.task.networks)
        publishes = network.spec.ingress and any(p.publish_mode == _INGRESS for p in service.spec.endpoint.ports)
        if attached or publishes:
            users.append(f"service {service.spec.annotations.name}")
            named.add(service.id)
    for task in sorted(view.tasks(), key=lambda t: (t.service_id, t.slot, t.id)):
        if task.service_id in named or not task_holds_addresses(task):
            continue
        if any(a.network_id == network.id for a in task.networks):
            if is_attachment(task):
                users.append(f"container {task.spec.attachment.container_id}")
            else:
                users.append(f"task {task_name(task, services.get(task.service_id))}")
    return users


class NetworkControl:
    """Networks of the ControlAPI. All methods run on the manager's asyncio loop."""

    def __init__(self, store, allocation_timeout: float = ALLOCATION_TIMEOUT):
        self._store = store
        self._allocation_timeout = allocation_timeout

    def _network(self, ref: str) -> objects_pb2.Network:
        if not ref:
            raise ControlError("invalid", "a network name or ID is required")
        return resolve(self._store.view().networks(), ref, "network", network_name)

    async def create_network(self, request: control_pb2.CreateNetworkRequest) -> control_pb2.CreateNetworkResponse:
        """Validate ``request.spec`` and write a new Network; wait up to allocation_timeout for the
        allocator to give it a VNI and subnets, and return it as the store then holds it (still
        without vni when the allocator did not get to it in time)."""
        spec = check_spec(request.spec)
        name = spec.annotations.name
        network_id = new_id()

        def fn(tx):
            networks = tx.list(Kind.NETWORK)
            for other in networks:
                if network_name(other).lower() == name.lower():
                    raise ControlError("conflict", f"network with name {name} already exists")
            candidate = objects_pb2.Network(id=network_id, spec=spec)
            _dry_run(networks, tx.view.cluster(), candidate)
            _check_overlaps(networks, candidate)
            tx.create(objects_pb2.Network(id=network_id, spec=spec))

        await write(self._store, fn, f"create network {name}")
        log.info("network %s (%s) created: %s", name, network_id,
                 ", ".join(c.subnet for c in spec.ipam) or "subnet from the default pools")
        network = await self._allocated(network_id)
        return control_pb2.CreateNetworkResponse(network=network)

    async def _allocated(self, network_id: str) -> objects_pb2.Network:
        """The network once it has a VNI, or as it is after allocation_timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._allocation_timeout
        changes = ChangeSignal(self._store, [Kind.NETWORK])
        try:
            while True:
                network = self._store.view().get(Kind.NETWORK, network_id)
                if network is None:
                    raise ControlError("not_found", f"network {network_id} was removed while being created")
                left = deadline - loop.time()
                if network.vni or left <= 0:
                    if not network.vni:
                        log.warning("network %s (%s): no VNI allocated within %.1fs; the allocator will "
                                    "fill it in", network_name(network), network_id, self._allocation_timeout)
                    return network
                await changes.wait(timeout=min(left, 0.5))
        finally:
            changes.close()

    async def attach_network(self, request: control_pb2.AttachNetworkRequest
                             ) -> control_pb2.AttachNetworkResponse:
        """Record an attachment task for ``request.container_id`` on ``request.node_id`` joining
        the attachable network ``request.network_id`` (id, name or prefix), and wait up to
        allocation_timeout for its address. ControlError precondition when the network is not
        attachable (Docker's "not manually attachable"), invalid for a missing field or unknown
        node, unavailable when no address came in time or the allocator refused (the task is
        then deleted again, so nothing is left behind; the allocator's message is passed on)."""
        container = request.container_id
        if not container or not request.node_id:
            raise ControlError("invalid", "attach network: container_id and node_id are required")
        network = self._network(request.network_id)
        name = network_name(network)
        what = f"attach container {container} to network {name}"
        if not network.spec.attachable or network.spec.ingress:
            raise ControlError("precondition", f"Could not attach to network {name}: "
                                               f"network {name} not manually attachable")
        if self._store.view().get(Kind.NODE, request.node_id) is None:
            raise ControlError("invalid", f"{what}: node {request.node_id} is not in the cluster")
        task = objects_pb2.Task(id=new_id(), node_id=request.node_id, desired_state=objects_pb2.RUNNING)
        task.annotations.name = container
        task.spec.attachment.container_id = container
        task.spec.networks.add(target=network.id, aliases=list(request.aliases),
                               addresses=[request.address] if request.address else [])
        task.status.state = objects_pb2.NEW
        task.status.message = "created"

        def fn(tx):
            if tx.get(Kind.NETWORK, network.id) is None:
                raise ControlError("not_found", f"{what}: the network was removed")
            tx.create(task)

        await write(self._store, fn, what)
        attachment, problem = await self._task_allocated(task.id)
        if attachment is None:
            try:
                await self._delete_attachment(task.id, what)
            except ControlError as err:
                log.warning("%s: could not delete the unallocated attachment task %s: %s", what, task.id, err)
            raise ControlError("unavailable", f"{what}: {problem}")
        log.info("%s: attachment %s on node %s, address %s", what, task.id, request.node_id,
                 ", ".join(attachment.addresses))
        return control_pb2.AttachNetworkResponse(attachment_id=task.id, attachment=attachment)

    async def detach_network(self, request: control_pb2.DetachNetworkRequest,
                             node_id: str | None = None) -> control_pb2.DetachNetworkResponse:
        """Delete the attachment task ``request.attachment_id`` (its address is freed by the
        allocator). ``node_id``, when given, must be the attachment's node (a node detaches only
        its own containers). Detaching an attachment that is already gone succeeds."""
        attachment_id = request.attachment_id
        if not attachment_id:
            raise ControlError("invalid", "detach network: an attachment ID is required")
        task = self._store.view().get(Kind.TASK, attachment_id)
        if task is None:
            return control_pb2.DetachNetworkResponse()
        if not is_attachment(task):
            raise ControlError("invalid", f"detach network: task {attachment_id} is not a network attachment")
        if node_id is not None and task.node_id != node_id:
            raise ControlError("precondition", f"detach network: attachment {attachment_id} belongs to node "
                                               f"{task.node_id}, not {node_id}")
        await self._delete_attachment(attachment_id, f"detach container {task.spec.attachment.container_id}")
        log.info("attachment %s of container %s removed", attachment_id, task.spec.attachment.container_id)
        return control_pb2.DetachNetworkResponse()

    async def _delete_attachment(self, task_id: str, what: str) -> None:
        def fn(tx):
            current = tx.get(Kind.TASK, task_id)
            if current is not None:
                tx.delete(current)
        await write(self._store, fn, what)

    async def _task_allocated(self, task_id: str) -> tuple[objects_pb2.NetworkAttachment | None, str]:
        """(the task's network attachment, "") once the allocator gave it an address, or (None,
        why) when it reported a problem, the task vanished, or allocation_timeout passed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._allocation_timeout
        changes = ChangeSignal(self._store, [Kind.TASK])
        try:
            while True:
                task = self._store.view().get(Kind.TASK, task_id)
                if task is None:
                    return None, "the attachment was removed while being allocated"
                if task.networks and task.networks[0].addresses:
                    return task.networks[0], ""
                if task.status.err:
                    return None, task.status.err
                left = deadline - loop.time()
                if left <= 0:
                    return None, f"no address was allocated within {self._allocation_timeout:.0f}s"
                await changes.wait(timeout=min(left, 0.5))
        finally:
            changes.close()

    async def get_network(self, request: control_pb2.GetNetworkRequest) -> control_pb2.GetNetworkResponse:
        return control_pb2.GetNetworkResponse(network=self._network(request.network_id))

    async def list_networks(self, request: control_pb2.ListNetworksRequest) -> control_pb2.ListNetworksResponse:
        filters = dict(request.filters)
        for key in filters:
            if key not in _FILTERS:
                raise ControlError("invalid", f"invalid filter '{key}'")      # the docker daemon's words
        networks = sorted((n for n in self._store.view().networks() if network_matches(n, filters)),
                          key=lambda n: (network_name(n), n.id))
        return control_pb2.ListNetworksResponse(networks=networks)

    async def remove_network(self, request: control_pb2.RemoveNetworkRequest) -> control_pb2.RemoveNetworkResponse:
        """Delete the network unless a service or a live task uses it (checked in the same
        transaction as the delete); the allocator then frees its subnets and VNI."""
        found = self._network(request.network_id)
        name = network_name(found)

        def fn(tx):
            current = tx.get(Kind.NETWORK, found.id)
            if current is None:
                raise ControlError("not_found", f"network {request.network_id} not found")
            users = network_users(tx.view, current)
            if users:
                shown = ", ".join(users[:3]) + (f" and {len(users) - 3} more" if len(users) > 3 else "")
                raise ControlError("precondition", f"network {name} is in use by {shown}")
            tx.delete(current)

        await write(self._store, fn, f"remove network {name}", retry=True)  # the allocator writes it too
        log.info("network %s (%s) removed", name, found.id)
        return control_pb2.RemoveNetworkResponse()
