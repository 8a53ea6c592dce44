"""Which nodes missed their heartbeats: a pure decision over sessions and time."""

from __future__ import annotations

import time
from dataclasses import dataclass

from proto import objects_pb2


@dataclass(frozen=True)
class Expired:
    node_id: str
    reason: str


class HeartbeatLag:
    """How late this manager handles heartbeats: the longest a heartbeat waited (between its
    arrival and its handler) among those handled in the last ``window`` seconds.

    A manager whose loop is saturated or starved of CPU (a long pass, a machine shared with other
    work) handles every heartbeat late; the node that sent one is not silent for that time, the
    manager is. Its liveness check adds this lag to every node's grace, so nodes are not marked
    Down for the manager's own lateness (which replaced their tasks, loading it more: the
    collapse bench/scale.py showed). A node that really stopped is still Down once the grace and
    the lag of the heartbeats the others still get through have passed.
    """

    def __init__(self, window: float) -> None:
        self.window = window
        self._seen: list[tuple[float, float]] = []    # (handled at, waited), waits over TOLERANCE

    TOLERANCE = 0.05

    def note(self, now: float, waited: float) -> None:
        if waited > self.TOLERANCE:
            self._seen.append((now, waited))
            if len(self._seen) > 64:
                self._prune(now)

    def _prune(self, now: float) -> None:
        cutoff = now - self.window
        self._seen = [(at, w) for at, w in self._seen if at >= cutoff]
        if len(self._seen) > 64:      # keep the largest: the lag is their maximum
            self._seen = sorted(self._seen, key=lambda e: e[1])[-32:]

    def current(self, now: float) -> float:
        self._prune(now)
        return max((w for _, w in self._seen), default=0.0)


def expired_nodes(nodes: list[objects_pb2.Node], last_seen: dict[str, float], leader_since: float,
                  grace: float, now: float, promised: dict[str, float] | None = None,
                  lag: float = 0.0) -> list[Expired]:
    """Nodes the store calls READY whose last heartbeat is older than their grace.

    A node's grace is ``grace`` (for the period in force now), or longer if its last heartbeat
    was answered with a longer period (``promised[node_id]``, the grace for that period): a node
    told "next heartbeat in 5 s" is not declared down 3 s later because the period was just
    shortened to 1 s; it learns the new period with its next heartbeat.

    ``lag``: how late this manager handles heartbeats now (``HeartbeatLag``), added to every
    grace: a heartbeat may be waiting for it that long.

    A node with no heartbeat since this manager became leader is measured from
    ``leader_since``, so a new leader gives every node one full grace period to
    reconnect before declaring it down.
    """
    promised = promised or {}
    out = []
    for node in nodes:
        if node.status.state != objects_pb2.NodeStatus.READY:
            continue
        seen = max(last_seen.get(node.id, leader_since), leader_since)
        node_grace = max(grace, promised.get(node.id, 0.0)) + lag
        if now - seen > node_grace:
            not_after = node.description.tls_info.cert_not_after
            if not_after and now > not_after:
                # its certificate ran out: the TLS handshakes fail, say so rather than "heartbeat"
                when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(not_after))
                out.append(Expired(node.id, f"certificate expired at {when}: the node can no longer "
                                            "connect; remove it and join it again"))
            else:
                out.append(Expired(node.id, f"heartbeat failure: none for {now - seen:.1f}s "
                                            f"(grace {node_grace:.1f}s)"))
    return out
