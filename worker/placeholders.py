"""Swarm's service templates ("placeholders"), expanded per task on the worker as SwarmKit does.

    expand_container(task, node_hostname) -> ContainerSpec   a copy of the task's container spec

`{{.Service.ID}}`, `{{.Service.Name}}`, `{{.Node.ID}}`, `{{.Node.Hostname}}`,
`{{.Node.Platform.Architecture}}`, `{{.Node.Platform.OS}}`, `{{.Task.ID}}`, `{{.Task.Name}}` and
`{{.Task.Slot}}` (the node ID for a global service's task) are Go templates in exactly the fields
Docker expands: the hostname, the value of each environment variable, and each mount's source and
target. Anything else is left as written (container labels included, as in Docker). A template
that does not parse or names an unknown field raises ValueError naming the field, and the task
fails with that message instead of running with the text as written.

`.Service.Labels` is not offered: the worker does not get the service's labels with the task.
"""

from __future__ import annotations

import platform

from common.gotemplate import Fields, Template, TemplateError
from proto import objects_pb2


def _slot(task: objects_pb2.Task) -> str:
    return str(task.slot) if task.slot else task.node_id


def context(task: objects_pb2.Task, node_hostname: str) -> Fields:
    """SwarmKit's template.Context for `task` on this node."""
    name = task.annotations.name or task.service_id
    suffix = f".{_slot(task)}"
    service = name[: -len(suffix)] if name.endswith(suffix) else name
    return Fields("template.Context", {
        "Service": Fields("template.Service", {"ID": task.service_id, "Name": service}),
        "Node": Fields("template.Node", {
            "ID": task.node_id, "Hostname": node_hostname,
            "Platform": Fields("template.Platform", {"Architecture": platform.machine(), "OS": "linux"})}),
        "Task": Fields("template.Task", {"ID": task.id, "Name": f"{service}.{_slot(task)}.{task.id}",
                                         "Slot": _slot(task)}),
    })


def _expand(text: str, ctx: Fields, what: str) -> str:
    if "{{" not in text:
        return text
    try:
        return Template(text, "expansion").execute(ctx)
    except TemplateError as err:
        raise ValueError(f"expanding {what} failed: {err}") from None


def expand_container(task: objects_pb2.Task, node_hostname: str) -> objects_pb2.ContainerSpec:
    """A copy of the task's container spec with its placeholders expanded (see the module)."""
    container = objects_pb2.ContainerSpec()
    container.CopyFrom(task.spec.container)
    ctx = context(task, node_hostname)
    env = []
    for entry in container.env:
        key, sep, value = entry.partition("=")
        env.append(f"{key}={_expand(value, ctx, f'env {entry!r}')}" if sep else entry)
    del container.env[:]
    container.env.extend(env)
    for mount in container.mounts:
        mount.source = _expand(mount.source, ctx, f"mount source {mount.source!r}")
        mount.target = _expand(mount.target, ctx, f"mount target {mount.target!r}")
    container.hostname = _expand(container.hostname, ctx, "hostname")
    return container
