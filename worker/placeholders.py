"""Swarm's service templates ("placeholders"), expanded per task on the worker as SwarmKit does.

    expand_container(task, node_hostname) -> ContainerSpec   a copy of the task's container spec

`{{.Service.ID}}`, `{{.Service.Name}}`, `{{.Service.Labels}}` (`{{index .Service.Labels "k"}}`; the
labels the service had when the task was made), `{{.Node.ID}}`, `{{.Node.Hostname}}`,
`{{.Node.Platform.Architecture}}`, `{{.Node.Platform.OS}}`, `{{.Task.ID}}`, `{{.Task.Name}}` and
`{{.Task.Slot}}` (the node ID for a global service's task) are Go templates in exactly the fields
Docker expands: the hostname, the value of each environment variable, and each mount's source,
target and volume label values. Anything else is left as written (container labels included, as
in Docker). A template that does not parse or names an unknown field raises ValueError naming the field, and the task
fails with that message instead of running with the text as written.

``expand_config(task, hostname, data, secrets, configs)`` expands a config made with
``--template-driver golang`` the same way, with SwarmKit's payload functions: ``{{secret "T"}}`` and
``{{config "T"}}`` give the data of the task's secret or config whose target is T, ``{{env "K"}}``
the value of the container's environment variable K (after its own expansion).
"""

from __future__ import annotations

import platform

from collections.abc import Mapping

from common.gotemplate import Fields, FuncError, StringMap, Template, TemplateError
from proto import objects_pb2


def _slot(task: objects_pb2.Task) -> str:
    return str(task.slot) if task.slot else task.node_id


def context(task: objects_pb2.Task, node_hostname: str) -> Fields:
    """SwarmKit's template.Context for `task` on this node."""
    name = task.annotations.name or task.service_id
    suffix = f".{_slot(task)}"
    service = name[: -len(suffix)] if name.endswith(suffix) else name
    return Fields("template.Context", {
        "Service": Fields("template.Service", {"ID": task.service_id, "Name": service,
                                               "Labels": StringMap(task.service_annotations.labels)}),
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
        for key, value in list(mount.volume_labels.items()):     # SwarmKit's expandMounts does too
            mount.volume_labels[key] = _expand(value, ctx, f"volume label {key!r}")
    container.hostname = _expand(container.hostname, ctx, "hostname")
    return container


def _target(kind: str, ref) -> str:
    name = ref.file.name or (ref.secret_name if kind == "secret" else ref.config_name)
    return name


def expand_config(task: objects_pb2.Task, node_hostname: str, data: bytes,
                  secrets: Mapping[str, objects_pb2.Secret], configs: Mapping[str, objects_pb2.Config]) -> bytes:
    """A templated config's data for ``task`` (see the module); ValueError naming what failed."""
    container = expand_container(task, node_hostname)

    def lookup(kind: str, known: Mapping, refs):
        def get(target: str) -> str:
            for ref in refs:
                if _target(kind, ref) == target:
                    obj = known.get(getattr(ref, f"{kind}_id"))
                    if obj is None:
                        raise FuncError(f"{kind} {target} was not sent to this node")
                    return obj.spec.data.decode("utf-8", "replace")
            raise FuncError(f"{kind} target {target} not found")
        return get

    def env(key: str) -> str:
        for entry in container.env:
            name, sep, value = entry.partition("=")
            if name == key and sep:
                return value
        return ""

    funcs = {"secret": lookup("secret", secrets, container.secrets),
             "config": lookup("config", configs, container.configs), "env": env}
    try:
        text = data.decode("utf-8")
        return Template(text, "expansion", funcs).execute(context(task, node_hostname)).encode()
    except (TemplateError, UnicodeDecodeError) as err:
        raise ValueError(f"expanding the config template failed: {err}") from None
