"""Which nodes missed their heartbeats: a pure decision over sessions and time."""

from __future__ import annotations

from dataclasses import dataclass

from proto import objects_pb2


@dataclass(frozen=True)
class Expired:
    node_id: str
    reason: str


def expired_nodes(nodes: list[objects_pb2.Node], last_seen: dict[str, float], leader_since: float,
                  grace: float, now: float) -> list[Expired]:
    """Nodes the store calls READY whose last heartbeat is older than ``grace``.

    A node with no heartbeat since this manager became leader is measured from
    ``leader_since``, so a new leader gives every node one full grace period to
    reconnect before declaring it down.
    """
    out = []
    for node in nodes:
        if node.status.state != objects_pb2.NodeStatus.READY:
            continue
        seen = max(last_seen.get(node.id, leader_since), leader_since)
        if now - seen > grace:
            out.append(Expired(node.id, f"heartbeat failure: none for {now - seen:.1f}s (grace {grace:.1f}s)"))
    return out
