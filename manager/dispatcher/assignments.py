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

Key = tuple[str, str]                   # ("task" | "secret" | "config", id)
Sent = dict[Key, object]                # key -> the object last sent (or passed over, see diff)
OpenSecret = Callable[[objects_pb2.Secret], "objects_pb2.Secret | None"]

_UNSTABLE = frozenset({"meta", "status"})


def assigned_objects(view, node_id: str, open_secret: OpenSecret | None = None) -> dict[Key, object]:
    """Everything ``node_id`` should know about now, keyed by (kind, id): the store's own objects
    (not copies; never modified), except secrets, given as ``open_secret`` returns them.

    ``open_secret`` turns a stored (sealed) secret into the one to send, or None when it cannot
    be opened (the secret is then left out; the task fails on the node for want of it). Without
    it secrets are sent as stored (tests).
    """
    out: dict[Key, object] = {}
    secret_ids: set[str] = set()
    config_ids: set[str] = set()
    assigned = objects_pb2.ASSIGNED
    running = objects_pb2.RUNNING
    for task in view.tasks(node_id=node_id):
        if task.status.state < assigned:
            continue
        out[("task", task.id)] = task
        if task.desired_state <= running:
            container = task.spec.container
            if container.secrets:
                secret_ids.update(ref.secret_id for ref in container.secrets)
            if container.configs:
                config_ids.update(ref.config_id for ref in container.configs)
    for secret_id in secret_ids:
        secret = view.get(Kind.SECRET, secret_id)
        if secret is not None and open_secret is not None:
            secret = open_secret(secret)
        if secret is not None:
            out[("secret", secret_id)] = secret
    for config_id in config_ids:
        config = view.get(Kind.CONFIG, config_id)
        if config is not None:
            out[("config", config_id)] = config
    return out


def assigned_set(view, node_id: str, open_secret: OpenSecret | None = None
                 ) -> dict[Key, cluster_pb2.Assignment]:
    """``assigned_objects`` as the Assignment messages that carry them."""
    return {key: cluster_pb2.Assignment(**{key[0]: obj})
            for key, obj in assigned_objects(view, node_id, open_secret).items()}


def only_status_moved(before: objects_pb2.Task, after: objects_pb2.Task) -> bool:
    """Whether ``after`` differs from ``before`` in its status (and meta) only, and is past
    ASSIGNED: what the node itself reported, which it need not be told back (SwarmKit's
    dispatcher skips the same updates: ``TasksEqualStable`` and a state past ASSIGNED)."""
    if after.status.state <= objects_pb2.ASSIGNED:
        return False
    return ([(f.number, v) for f, v in before.ListFields() if f.name not in _UNSTABLE]
            == [(f.number, v) for f, v in after.ListFields() if f.name not in _UNSTABLE])


def diff(sent: Sent, current: dict[Key, object]) -> tuple[list[cluster_pb2.AssignmentChange], Sent]:
    """Changes that take a node from what it was sent to ``current`` (``assigned_objects``), and
    the new sent map.

    A task whose status is all that moved (its node's own reports, echoed by the store) is not
    sent again: every report of every task came back to its node as an UPDATE carrying the whole
    task, as much traffic again as the reports, and work for the worker. Such a task is recorded
    as sent at its new version, so the next change is compared with it (equal in all but status
    to what the node holds)."""
    changed: list[Key] = []
    for key, obj in current.items():
        before = sent.get(key)
        if before is None:
            changed.append(key)
        elif before is not obj and before.meta.version != obj.meta.version:
            if key[0] != "task" or not only_status_moved(before, obj):
                changed.append(key)
    changes = [cluster_pb2.AssignmentChange(action=cluster_pb2.AssignmentChange.UPDATE,
                                            assignment=cluster_pb2.Assignment(**{key[0]: current[key]}))
               for key in sorted(changed)]
    for key in sorted(set(sent) - set(current)):
        kind, object_id = key
        stub = cluster_pb2.Assignment(**{kind: {"id": object_id}})
        changes.append(cluster_pb2.AssignmentChange(action=cluster_pb2.AssignmentChange.REMOVE,
                                                    assignment=stub))
    return changes, current


def status_update_allowed(task: objects_pb2.Task, node_id: str, status: objects_pb2.TaskStatus) -> str | None:
    """Why a reported status must be ignored, or None. Task state only moves forward."""
    if task.node_id != node_id:
        return f"task {task.id} is not assigned to node {node_id}"
    if status.state < task.status.state:
        return f"task {task.id}: state {status.state} is behind {task.status.state}"
    return None
