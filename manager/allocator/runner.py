"""The allocator component (leader only): gives networks their subnets and VNIs, services
their VIPs, tasks their overlay addresses (moving them NEW → PENDING), and nodes their
per-network host gateway IPs, by watching the store and writing it.

A task that cannot get an address stays NEW with ``status.err`` saying why, so the user sees
it in ``shoal service ps``; the rest of the service carries on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

from manager.allocator.errors import AllocatorError
from manager.allocator.ingress import INGRESS_NETWORK_NAME, ingress_network
from manager.allocator.network import NetworkAllocator, task_holds_addresses
from manager.changes import ChangeSignal
from manager.ids import new_id
from manager.state import Kind, StoreError, VersionConflict
from proto import objects_pb2

log = logging.getLogger(__name__)

PENDING_MESSAGE = "pending task scheduling"
_INGRESS = objects_pb2.PortConfig.INGRESS


def _copy(obj):
    out = type(obj)()
    out.CopyFrom(obj)
    return out


class Allocator:
    def __init__(self, store, clock: Callable[[], float] = time.time):
        self._store = store
        self._clock = clock
        self._alloc: NetworkAllocator | None = None
        self._known_tasks: set[str] = set()
        self._known_services: set[str] = set()
        self._known_networks: set[str] = set()

    async def run(self) -> None:
        changes = ChangeSignal(self._store, [Kind.NETWORK, Kind.SERVICE, Kind.TASK, Kind.NODE])
        try:
            view = self._store.view()
            self._alloc = NetworkAllocator.from_cluster(view.cluster())
            report = self._alloc.restore(view.networks(), view.services(), view.tasks(), view.nodes())
            for problem in getattr(report, "problems", ()):
                log.warning("allocator restore: %s", problem)
            await self._ensure_ingress()
            while True:
                try:
                    await self._pass()
                except StoreError as err:
                    log.info("allocator pass failed, retrying: %s", err)
                await changes.wait(timeout=2.0)
                await asyncio.sleep(0.005)
        finally:
            changes.close()

    async def _ensure_ingress(self) -> None:
        if any(n.spec.ingress for n in self._store.view().networks()):
            return
        network = objects_pb2.Network(id=new_id(), spec=ingress_network(INGRESS_NETWORK_NAME))
        await self._store.update(lambda tx: tx.create(network))

    async def _write(self, objects: list, what: str) -> None:
        if not objects:
            return

        def fn(tx):
            for obj in objects:
                tx.update(obj)
        try:
            await self._store.update(fn, allow_split=True)
        except VersionConflict as err:
            log.debug("allocator %s: %s (will retry)", what, err)

    async def _pass(self) -> None:
        alloc = self._alloc
        view = self._store.view()
        now = self._clock()
        # Networks first: everything else needs them.
        networks = []
        for network in sorted(view.networks(), key=lambda n: (not n.spec.ingress, n.meta.created_at, n.id)):
            try:
                allocated = alloc.allocate_network(network)
            except AllocatorError as err:
                log.warning("network %s: %s", network.spec.annotations.name, err)
                continue
            if allocated.vni != network.vni or list(allocated.ipam) != list(network.ipam):
                networks.append(allocated)
        await self._write(networks, "networks")
        view = self._store.view()
        live_networks = {n.id for n in view.networks()}
        for network_id in self._known_networks - live_networks:
            try:
                alloc.release_network(network_id)
            except AllocatorError as err:
                log.warning("releasing network %s: %s", network_id, err)
        self._known_networks = live_networks

        # Services: VIPs and published ports.
        services = []
        service_ids = set()
        for service in view.services():
            service_ids.add(service.id)
            try:
                endpoint = alloc.allocate_service(service)
            except AllocatorError as err:
                log.warning("service %s: %s", service.spec.annotations.name, err)
                continue
            if endpoint != service.endpoint:
                new = _copy(service)
                new.endpoint.CopyFrom(endpoint)
                services.append(new)
        for gone in self._known_services - service_ids:
            alloc.release_service(gone)
        self._known_services = service_ids
        await self._write(services, "services")
        view = self._store.view()

        # Tasks: addresses, then NEW → PENDING.
        tasks = []
        task_ids = set()
        for task in view.tasks():
            task_ids.add(task.id)
            if not task_holds_addresses(task):
                alloc.release_task(task.id)
                continue
            if task.status.state != objects_pb2.NEW:
                continue
            service = view.get(Kind.SERVICE, task.service_id)
            new = _copy(task)
            try:
                attachments = alloc.allocate_task(task, service)
            except AllocatorError as err:
                if new.status.err != str(err):
                    new.status.err = str(err)
                    new.status.message = "allocation failed"
                    new.status.timestamp = now
                    tasks.append(new)
                continue
            del new.networks[:]
            new.networks.extend(attachments)
            if service is not None:
                new.endpoint.CopyFrom(service.endpoint)
            new.status.state = objects_pb2.PENDING
            new.status.message = PENDING_MESSAGE
            new.status.err = ""
            new.status.timestamp = now
            tasks.append(new)
        for gone in self._known_tasks - task_ids:
            alloc.release_task(gone)
        self._known_tasks = task_ids
        await self._write(tasks, "tasks")

        # Nodes: a host gateway IP on every network they carry a task of, and on ingress.
        view = self._store.view()
        ingress = next((n for n in view.networks() if n.spec.ingress and n.vni), None)
        publishes = any(p.publish_mode == _INGRESS for s in view.services() for p in s.spec.endpoint.ports)
        wanted: dict[str, set[str]] = {}
        for task in view.tasks():
            if task.node_id and task_holds_addresses(task):
                wanted.setdefault(task.node_id, set()).update(a.network_id for a in task.networks)
        nodes = []
        for node in view.nodes():
            need = set(wanted.get(node.id, ()))
            if ingress is not None and publishes and node.status.state == objects_pb2.NodeStatus.READY:
                need.add(ingress.id)
            have = {a.network_id: a for a in node.attachments}
            if need <= set(have):
                continue
            new = _copy(node)
            for network_id in sorted(need - set(have)):
                try:
                    address = alloc.allocate_node_ip(network_id, node.id, node.description.hostname)
                except AllocatorError as err:
                    log.warning("node %s: %s", node.description.hostname, err)
                    continue
                new.attachments.add(network_id=network_id, addresses=[address])
            if new != node:
                nodes.append(new)
        await self._write(nodes, "nodes")
