"""What a node is told to run: pure functions over the store view.

A task is assigned to a node once the scheduler has put it there (status ASSIGNED or
later) and stays assigned until the task object is deleted (history pruning or service
removal), so the worker keeps a stopped task's container as long as the task is listed,
as Docker does. Secrets and configs are sent only to nodes with a task that uses them and is
meant to run (desired state RUNNING or before); once no such task is left there, they are
removed from the node. Secret data is sealed in the store: ``open_secret`` gives the copy that
is sent (plaintext, over the mutual-TLS stream only).
"""

from __future__ import annotations

from typing import Callable

from manager.state import Kind
from proto import cluster_pb2, objects_pb2

Versions = dict[tuple[str, str], int]  # (kind, id) -> meta.version last sent
OpenSecret = Callable[[objects_pb2.Secret], "objects_pb2.Secret | None"]


def assigned_set(view, node_id: str, open_secret: OpenSecret | None = None
                 ) -> dict[tuple[str, str], cluster_pb2.Assignment]:
    """Everything ``node_id`` should know about now, keyed by (kind, id).

    ``open_secret`` turns a stored (sealed) secret into the one to send, or None when it cannot
    be opened (the secret is then left out; the task fails on the node for want of it). Without
    it secrets are sent as stored (tests).
    """
    out: dict[tuple[str, str], cluster_pb2.Assignment] = {}
    secret_ids: set[str] = set()
    config_ids: set[str] = set()
    for task in view.tasks(node_id=node_id):
        if task.status.state < objects_pb2.ASSIGNED:
            continue
        out[("task", task.id)] = cluster_pb2.Assignment(task=task)
        if task.desired_state <= objects_pb2.RUNNING:
            secret_ids.update(ref.secret_id for ref in task.spec.container.secrets)
            config_ids.update(ref.config_id for ref in task.spec.container.configs)
    for secret_id in secret_ids:
        secret = view.get(Kind.SECRET, secret_id)
        if secret is not None and open_secret is not None:
            secret = open_secret(secret)
        if secret is not None:
            out[("secret", secret_id)] = cluster_pb2.Assignment(secret=secret)
    for config_id in config_ids:
        config = view.get(Kind.CONFIG, config_id)
        if config is not None:
            out[("config", config_id)] = cluster_pb2.Assignment(config=config)
    return out


def _version(assignment: cluster_pb2.Assignment) -> int:
    return getattr(assignment, assignment.WhichOneof("item")).meta.version


def diff(sent: Versions, current: dict[tuple[str, str], cluster_pb2.Assignment]
         ) -> tuple[list[cluster_pb2.AssignmentChange], Versions]:
    """Changes that take a node from what it was sent to ``current``, and the new sent map."""
    changes = []
    for key, assignment in sorted(current.items()):
        if sent.get(key) != _version(assignment):
            changes.append(cluster_pb2.AssignmentChange(action=cluster_pb2.AssignmentChange.UPDATE,
                                                        assignment=assignment))
    for key in sorted(set(sent) - set(current)):
        kind, object_id = key
        stub = cluster_pb2.Assignment(**{kind: {"id": object_id}})
        changes.append(cluster_pb2.AssignmentChange(action=cluster_pb2.AssignmentChange.REMOVE,
                                                    assignment=stub))
    return changes, {key: _version(a) for key, a in current.items()}


def status_update_allowed(task: objects_pb2.Task, node_id: str, status: objects_pb2.TaskStatus) -> str | None:
    """Why a reported status must be ignored, or None. Task state only moves forward."""
    if task.node_id != node_id:
        return f"task {task.id} is not assigned to node {node_id}"
    if status.state < task.status.state:
        return f"task {task.id}: state {status.state} is behind {task.status.state}"
    return None
