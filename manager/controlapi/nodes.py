"""Node lookups and filters (the read-time parts of a Node are in manager.quorum)."""

from __future__ import annotations

from proto import objects_pb2


class NodeLookupError(Exception):
    def __init__(self, message: str, not_found: bool = True):
        super().__init__(message)
        self.not_found = not_found


def resolve_node(nodes: list[objects_pb2.Node], ref: str) -> objects_pb2.Node:
    """Find a node by full ID, hostname or unique ID prefix, as the docker CLI does."""
    for node in nodes:
        if node.id == ref:
            return node
    by_name = [n for n in nodes if n.description.hostname == ref]
    if len(by_name) == 1:
        return by_name[0]
    by_prefix = [n for n in nodes if n.id.startswith(ref)] if ref else []
    if len(by_prefix) == 1:
        return by_prefix[0]
    if len(by_name) > 1 or len(by_prefix) > 1:
        raise NodeLookupError(f"node {ref} is ambiguous ({len(by_name) or len(by_prefix)} matches)", False)
    raise NodeLookupError(f"node {ref} not found")


def node_matches(node: objects_pb2.Node, filters: dict[str, str]) -> bool:
    """The docker CLI's node filters: id, name, role, membership, label (key or key=value)."""
    for key, value in filters.items():
        if key == "id" and not node.id.startswith(value):
            return False
        if key == "name" and value not in node.description.hostname:
            return False
        if key == "role" and value != ("manager" if node.role == objects_pb2.MANAGER else "worker"):
            return False
        if key == "label":
            k, _, v = value.partition("=")
            if k not in node.spec.annotations.labels or (v and node.spec.annotations.labels[k] != v):
                return False
    return True
