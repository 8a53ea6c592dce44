"""shoal node ls | inspect | update | promote | demote | rm."""

from __future__ import annotations

import click

from shoal.cli.formatting import FORMAT_HELP, INSPECT_FORMAT_HELP, print_objects, print_rows
from shoal.cli.output import filter_flags, print_table
from shoal.dockerjson import _AVAILABILITY, _STATUS, _manager_status, node_inspect, rfc3339  # noqa: F401

def register(cli: click.Group) -> None:
    cli.add_command(node)


@click.group()
def node() -> None:
    """Manage swarm nodes."""


def node_summary(n, self_id: str) -> dict:
    """The fields `docker node ls --format json` prints."""
    return {"Availability": _AVAILABILITY.get(n.spec.availability, "Active"),
            "EngineVersion": n.description.engine.engine_version,
            "Hostname": n.description.hostname,
            "ID": n.id,
            "ManagerStatus": _manager_status(n),
            "Self": n.id == self_id,
            "Status": _STATUS.get(n.status.state, "Unknown"),
            "TLSStatus": "Ready"}


def _self_id(client) -> str:
    from proto import control_pb2
    return client.call("Info", control_pb2.InfoRequest()).node_id


def _get(client, ref: str):
    from proto import control_pb2
    return client.call("GetNode", control_pb2.GetNodeRequest(node_id=ref)).node


NODE_FILTERS = ("id", "label", "node.label", "name", "role")


@node.command("ls")
@click.option("-f", "--filter", "filters", multiple=True, help="Filter output (id, name, role, label)")
@click.option("--format", "fmt", default="", help=FORMAT_HELP)
@click.option("-q", "--quiet", is_flag=True, help="Only display IDs")
@click.pass_obj
def node_ls(client, filters, fmt, quiet) -> None:
    """List nodes in the swarm."""
    from proto import control_pb2
    request = control_pb2.ListNodesRequest()
    for key, values in filter_flags(filters, accepted=NODE_FILTERS).items():
        # docker's node.label is the node's (swarm) labels, which shoal's `label` filter matches
        request.filters["label" if key == "node.label" else key] = values[-1]
    nodes = client.call("ListNodes", request).nodes
    if quiet:
        for n in nodes:
            click.echo(n.id)
        return
    self_id = _self_id(client)
    summaries = [node_summary(n, self_id) for n in nodes]
    print_rows(fmt, summaries, "*formatter.nodeContext", lambda: print_table(
        ["ID", "HOSTNAME", "STATUS", "AVAILABILITY", "MANAGER STATUS", "ENGINE VERSION"],
        [[s["ID"] + (" *" if s["Self"] else ""), s["Hostname"], s["Status"], s["Availability"],
          s["ManagerStatus"], s["EngineVersion"]] for s in summaries]))


@node.command("ps")
@click.option("--no-trunc", is_flag=True, help="Do not truncate output")
@click.option("-f", "--filter", "filters", multiple=True, help="Filter output (desired-state, id, name, service)")
@click.option("--format", "fmt", default="", help=FORMAT_HELP)
@click.option("-q", "--quiet", is_flag=True, help="Only display task IDs")
@click.argument("nodes", nargs=-1)
@click.pass_obj
def node_ps(client, no_trunc, filters, fmt, quiet, nodes) -> None:
    """List tasks running on one or more nodes, defaults to current node."""
    import time

    from proto import control_pb2
    from shoal.cli.service_format import PS_COLUMNS, PS_KEYS, task_rows
    from shoal.cli.services import TASK_FILTERS, _parse_filters
    base = _parse_filters(filters, tuple(k for k in TASK_FILTERS if k != "node"))
    tasks, seen = [], set()
    for ref in nodes or ("self",):
        node_id = _self_id(client) if ref == "self" else _get(client, ref).id
        for task in client.call("ListTasks", control_pb2.ListTasksRequest(filters=base | {"node": node_id})).tasks:
            if task.id not in seen:
                seen.add(task.id)
                tasks.append(task)
    if quiet:
        for t in tasks:
            click.echo(t.id)
        return
    services = {s.id: s for s in client.call("ListServices", control_pb2.ListServicesRequest()).services}
    names = {n.id: n.description.hostname for n in client.call("ListNodes", control_pb2.ListNodesRequest()).nodes}
    rows = task_rows(tasks, services, names, time.time(), trunc=not no_trunc)
    print_rows(fmt, rows, "*formatter.taskContext",
               lambda: print_table(PS_COLUMNS, [[r[k] for k in PS_KEYS] for r in rows]))


@node.command("inspect")
@click.option("-f", "--format", "fmt", default="", help=INSPECT_FORMAT_HELP)
@click.argument("nodes", nargs=-1, required=True)
@click.pass_obj
def node_inspect_cmd(client, fmt, nodes) -> None:
    """Display detailed information on one or more nodes ("self" is this node)."""
    self_id = None
    out = []
    for ref in nodes:
        if ref == "self":
            self_id = self_id or _self_id(client)
            ref = self_id
        out.append(node_inspect(_get(client, ref)))
    print_objects(fmt, out)


@node.command("update")
@click.option("--availability", type=click.Choice(["active", "pause", "drain"]), default=None)
@click.option("--label-add", multiple=True, help="Add or update a node label (key=value)")
@click.option("--label-rm", multiple=True, help="Remove a node label if exists")
@click.option("--role", type=click.Choice(["worker", "manager"]), default=None)
@click.argument("node_ref")
@click.pass_obj
def node_update(client, availability, label_add, label_rm, role, node_ref) -> None:
    """Update a node."""
    n = _get(client, node_ref)
    _update(client, n, availability=availability, label_add=label_add, label_rm=label_rm, role=role)
    click.echo(n.id)


def _update(client, n, availability=None, label_add=(), label_rm=(), role=None) -> None:
    from proto import control_pb2, objects_pb2
    spec = objects_pb2.NodeSpec()
    spec.CopyFrom(n.spec)
    if availability is not None:
        spec.availability = {"active": 0, "pause": 1, "drain": 2}[availability]
    for item in label_add:
        key, _, value = item.partition("=")
        if not key:
            raise click.BadParameter(f"invalid label {item!r}: expected key=value", param_hint="--label-add")
        spec.annotations.labels[key] = value
    for key in label_rm:
        if key not in spec.annotations.labels:
            raise click.BadParameter(f"key {key} doesn't exist in node's labels", param_hint="--label-rm")
        del spec.annotations.labels[key]
    if role is not None:
        spec.desired_role = objects_pb2.MANAGER if role == "manager" else objects_pb2.WORKER
    client.call("UpdateNode", control_pb2.UpdateNodeRequest(node_id=n.id, version=n.meta.version, spec=spec))


@node.command("promote")
@click.argument("nodes", nargs=-1, required=True)
@click.pass_obj
def node_promote(client, nodes) -> None:
    """Promote one or more nodes to manager in the swarm."""
    from proto import objects_pb2
    for ref in nodes:
        n = _get(client, ref)
        if n.spec.desired_role == objects_pb2.MANAGER:
            click.echo(f"Node {ref} is already a manager.")
            continue
        _update(client, n, role="manager")
        click.echo(f"Node {ref} promoted to a manager in the swarm.")


@node.command("demote")
@click.argument("nodes", nargs=-1, required=True)
@click.pass_obj
def node_demote(client, nodes) -> None:
    """Demote one or more nodes from manager in the swarm."""
    from proto import objects_pb2
    for ref in nodes:
        n = _get(client, ref)
        if n.spec.desired_role == objects_pb2.WORKER:
            click.echo(f"Node {ref} is already a worker.")
            continue
        _update(client, n, role="worker")
        click.echo(f"Manager {ref} demoted in the swarm.")


@node.command("rm")
@click.option("-f", "--force", is_flag=True, help="Force remove a node from the swarm")
@click.argument("nodes", nargs=-1, required=True)
@click.pass_obj
def node_rm(client, force, nodes) -> None:
    """Remove one or more nodes from the swarm."""
    from proto import control_pb2
    for ref in nodes:
        n = _get(client, ref)
        client.call("RemoveNode", control_pb2.RemoveNodeRequest(node_id=n.id, force=force))
        click.echo(ref)
