"""Promotion and demotion.

``check_demotion`` is the pure rule (never demote the last manager, never leave the
remaining managers without a reachable quorum). ``RoleReconciler`` runs on the leader
and moves each node's ``role`` toward its ``spec.desired_role``: a promoted node is
marked MANAGER (the node then renews its certificate and asks to join Raft); a demoted
manager is removed from Raft first, then marked WORKER.
"""

from __future__ import annotations

import logging

from manager.changes import ChangeSignal
from manager.state import Kind
from proto import objects_pb2

log = logging.getLogger(__name__)


class DemotionRefused(Exception):
    """Demoting or removing this manager would break the swarm."""


def _label(node: objects_pb2.Node) -> str:
    return f"{node.description.hostname or node.id} ({node.id[:12]})"


def check_demotion(nodes: list[objects_pb2.Node], target_id: str, reachable_raft_addrs: set[str]) -> None:
    """Raise DemotionRefused if taking ``target_id`` out of Raft would lose the swarm."""
    managers = [n for n in nodes if n.role == objects_pb2.MANAGER]
    target = next((n for n in managers if n.id == target_id), None)
    if target is None:
        return
    if len(managers) == 1:
        raise DemotionRefused(f"attempting to demote the last manager of the swarm: {_label(target)}; "
                              "promote another node first")
    remaining = [n for n in managers if n.id != target_id]
    reachable = sum(1 for n in remaining if n.manager_status.raft_addr in reachable_raft_addrs)
    quorum = len(remaining) // 2 + 1
    if reachable < quorum:
        raise DemotionRefused(
            f"can't demote {_label(target)}: of the {len(remaining)} managers that would remain only "
            f"{reachable} are reachable, fewer than the {quorum} a quorum needs")


class RoleReconciler:
    """Leader-only component; ``run()`` until cancelled."""

    def __init__(self, store, raft):
        self._store = store
        self._raft = raft

    async def run(self) -> None:
        changes = ChangeSignal(self._store, [Kind.NODE])
        try:
            while True:
                await self._reconcile_all()
                await changes.wait(timeout=2.0)
        finally:
            changes.close()

    async def _reconcile_all(self) -> None:
        for node in self._store.view().nodes():
            if node.spec.desired_role == node.role:
                continue
            try:
                if node.spec.desired_role == objects_pb2.MANAGER:
                    await self._promote(node)
                else:
                    await self._demote(node)
            except DemotionRefused as err:
                log.warning("demotion held back: %s", err)
            except Exception as err:
                log.warning("role change of node %s failed, will retry: %s", node.id, err)

    async def _promote(self, node: objects_pb2.Node) -> None:
        log.info("promoting node %s to manager", node.id)

        def fn(tx):
            current = tx.get(Kind.NODE, node.id)
            if current is None or current.role == objects_pb2.MANAGER:
                return
            new = objects_pb2.Node()
            new.CopyFrom(current)
            new.role = objects_pb2.MANAGER
            tx.update(new)

        await self._store.update_retry(fn)

    async def _demote(self, node: objects_pb2.Node) -> None:
        status = self._raft.status()
        reachable = {m.addr for m in status.members if m.reachable} | {status.self_addr}
        check_demotion(self._store.view().nodes(), node.id, reachable)
        addr = node.manager_status.raft_addr
        if addr and addr == status.self_addr:
            # A leader cannot remove itself: hand leadership over; the new leader demotes us.
            log.info("demoting the leader itself: transferring leadership first")
            await self._raft.transfer_leadership()
            return
        if addr and addr in [m.addr for m in status.members]:
            log.info("removing %s (node %s) from the raft cluster", addr, node.id)
            await self._raft.remove_member(addr)

        def fn(tx):
            current = tx.get(Kind.NODE, node.id)
            if current is None or current.role == objects_pb2.WORKER:
                return
            new = objects_pb2.Node()
            new.CopyFrom(current)
            new.role = objects_pb2.WORKER
            new.ClearField("manager_status")
            tx.update(new)

        await self._store.update_retry(fn)
