"""``shoal container prune``, ``volume prune``, ``network prune``, ``system prune`` and
``system df``, with docker's prompts, flags and output.

Containers and volumes are this node's (shoal-runtimed removes them and measures what it frees,
as dockerd does); networks are the swarm's (on a manager: every network but the ingress that the
ControlAPI lets go, i.e. that no service or container uses, as dockerd prunes cluster networks).
Declining a prompt exits 0 and changes nothing, as docker does.
"""

from __future__ import annotations

import sys
import time

import click

from shoal.cli.formatting import FORMAT_HELP, print_rows
from shoal.cli.output import DaemonError, filter_flags, invalid_filter, print_table

CONTAINERS_WARNING = "WARNING! This will remove all stopped containers.\nAre you sure you want to continue?"
NETWORKS_WARNING = ("WARNING! This will remove all custom networks not used by at least one container.\n"
                    "Are you sure you want to continue?")
VOLUMES_WARNING = ("WARNING! This will remove anonymous local volumes not used by at least one container.\n"
                   "Are you sure you want to continue?")
ALL_VOLUMES_WARNING = ("WARNING! This will remove all local volumes not used by at least one container.\n"
                       "Are you sure you want to continue?")
NETWORK_FILTERS = ("label", "label!", "until")

filter_option = click.option("--filter", "filters", multiple=True, help='Provide filter values (e.g. "until=<timestamp>")')
force_option = click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation")


def register(cli: click.Group) -> None:
    cli.commands["container"].add_command(container_prune)
    cli.commands["volume"].add_command(volume_prune)
    cli.commands["network"].add_command(network_prune)
    system = cli.commands["system"]
    system.add_command(system_prune)
    system.add_command(system_df)


# ---- docker's conventions --------------------------------------------------------------------

def confirm(message: str) -> bool:
    """docker's prompt.Confirm: MESSAGE [y/N] on stdout, yes only for "y" or "Y" (EOF is no)."""
    click.echo(f"{message} [y/N] ", nl=False)
    answer = sys.stdin.readline()
    return answer.strip().lower() == "y"


def human_size(size: float) -> str:
    """go-units HumanSize (4 significant digits, decimal units): "0B", "212B", "16.43MB"."""
    units = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"]
    i = 0
    while size >= 1000 and i < len(units) - 1:
        size /= 1000.0
        i += 1
    return f"{size:.4g}{units[i]}"


def parse_filters(values) -> dict[str, list[str]]:
    """--filter KEY=VALUE flags (no -f: that is --force); the daemon checks the keys."""
    return filter_flags(values, "--filter")


def _runtime(ctx):
    from shoal.cli.containers import _client
    return _client(ctx)


def _call(fn, *args):
    from agent_runtime.errors import ShoalRuntimeError
    try:
        return fn(*args)
    except ShoalRuntimeError as exc:
        raise DaemonError(str(exc)) from None


def _deleted(title: str, items: list[str]) -> str:
    return f"{title}:\n" + "".join(f"{i}\n" for i in items) if items else ""


# ---- the prunes (each returns (bytes reclaimed, output)) ---------------------------------------

def prune_containers(ctx, filters: dict[str, list[str]]) -> tuple[int, str]:
    client = _runtime(ctx)
    report = _call(client.container_prune, filters)   # shoald releases their network attachments
    deleted = report["ContainersDeleted"]
    return (report["SpaceReclaimed"] if deleted else 0), _deleted("Deleted Containers", deleted)


def prune_volumes(ctx, filters: dict[str, list[str]]) -> tuple[int, str]:
    report = _call(_runtime(ctx).volume_prune, filters)
    deleted = report["VolumesDeleted"]
    return (report["SpaceReclaimed"] if deleted else 0), _deleted("Deleted Volumes", deleted)


def prune_networks(ctx, filters: dict[str, list[str]]) -> tuple[int, str]:
    """dockerd's clusterNetworksPrune: try to remove every network but the ingress; one in use is
    left quietly, another failure is a warning."""
    import grpc

    from common import syntax
    from proto import control_pb2
    for key in filters:
        if key not in NETWORK_FILTERS:
            raise invalid_filter(key)
    until = filters.get("until", [])
    if len(until) > 1:
        raise DaemonError("more than one until filter specified")
    try:
        before = syntax.parse_since(until[0], time.time()) if until else None
    except ValueError as exc:
        raise DaemonError(str(exc)) from None
    client = ctx.find_root().obj
    if not client.call("Info", control_pb2.InfoRequest()).control_available:
        return 0, ""                          # not a manager: no swarm networks to prune here
    from agent_runtime.prune import labels_match
    deleted = []
    for net in client.call("ListNetworks", control_pb2.ListNetworksRequest()).networks:
        spec = net.spec
        if spec.ingress or (before is not None and net.meta.created_at >= before):
            continue
        if not labels_match(dict(spec.annotations.labels), filters):
            continue
        try:
            client.stub.RemoveNetwork(control_pb2.RemoveNetworkRequest(network_id=net.id), timeout=client.timeout)
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.FAILED_PRECONDITION:
                click.echo(f"WARNING: could not remove network {spec.annotations.name}: {err.details()}", err=True)
            continue
        deleted.append(spec.annotations.name)
    return 0, _deleted("Deleted Networks", deleted)


def prune_images(ctx, prune_all: bool) -> tuple[int, str]:
    report = _call(_runtime(ctx).image_prune, prune_all)
    lines = [f"{key.lower()}: {value}" for item in report["ImagesDeleted"] for key, value in item.items()]
    if not lines:
        return 0, ""
    return report["SpaceReclaimed"], "Deleted Images:\n" + "".join(f"{line}\n" for line in lines)


def _finish(reclaimed: int, output: str, total: bool = True) -> None:
    if output:
        click.echo(output)
    if total:
        click.echo(f"Total reclaimed space: {human_size(reclaimed)}")


# ---- commands --------------------------------------------------------------------------------

@click.command("prune")
@filter_option
@force_option
@click.pass_context
def container_prune(ctx, filters, force) -> None:
    """Remove all stopped containers."""
    wanted = parse_filters(filters)
    if not force and not confirm(CONTAINERS_WARNING):
        return
    _finish(*prune_containers(ctx, wanted))


@click.command("prune")
@click.option("-a", "--all", "all_", is_flag=True, help="Remove all unused volumes, not just anonymous ones")
@filter_option
@force_option
@click.pass_context
def volume_prune(ctx, all_, filters, force) -> None:
    """Remove unused local volumes."""
    wanted = parse_filters(filters)
    if all_:
        if "all" in wanted:
            raise click.UsageError("conflicting options: cannot specify both --all and --filter all=1")
        wanted["all"] = ["true"]
    if not force and not confirm(ALL_VOLUMES_WARNING if all_ else VOLUMES_WARNING):
        return
    _finish(*prune_volumes(ctx, wanted))


@click.command("prune")
@filter_option
@force_option
@click.pass_context
def network_prune(ctx, filters, force) -> None:
    """Remove all unused networks."""
    wanted = parse_filters(filters)
    if not force and not confirm(NETWORKS_WARNING):
        return
    _finish(*prune_networks(ctx, wanted), total=False)


def system_warning(prune_all: bool, volumes: bool, filters: dict[str, list[str]]) -> str:
    """docker system prune's confirmation message."""
    warnings = ["all stopped containers", "all networks not used by at least one container"]
    if volumes:
        warnings.append("all anonymous volumes not used by at least one container")
    warnings.append("all images without at least one container associated to them" if prune_all
                    else "all dangling images")
    text = "WARNING! This will remove:" + "".join(f"\n  - {w}" for w in warnings) + "\n"
    shown = sorted(f"{k}={v}" for k in ("label", "label!", "until") for v in filters.get(k, ()))
    if shown:
        text += "\n  Items to be pruned will be filtered with:" + "".join(f"\n  - {f}" for f in shown) + "\n"
    return text + "\nAre you sure you want to continue?"


@click.command("prune")
@click.option("-a", "--all", "all_", is_flag=True, help="Remove all unused images not just dangling ones")
@click.option("--volumes", is_flag=True, help="Prune anonymous volumes")
@filter_option
@force_option
@click.pass_context
def system_prune(ctx, all_, volumes, filters, force) -> None:
    """Remove unused data: stopped containers, unused networks, dangling (or, with -a, unused)
    images and, with --volumes, anonymous volumes."""
    wanted = parse_filters(filters)
    if volumes and "until" in wanted:
        raise DaemonError('ERROR: The "until" filter is not supported with "--volumes"')
    if wanted:
        raise DaemonError("--filter is not supported by system prune: shoal-runtimed's image prune takes no "
                          "filters; use container prune, network prune and volume prune with --filter")
    if not force and not confirm(system_warning(all_, volumes, wanted)):
        return
    total = 0
    steps = [lambda: prune_containers(ctx, wanted), lambda: prune_networks(ctx, wanted)]
    if volumes:
        steps.append(lambda: prune_volumes(ctx, wanted))
    steps.append(lambda: prune_images(ctx, all_))
    for step in steps:
        reclaimed, output = step()
        total += reclaimed
        if output:
            click.echo(output)
    click.echo(f"Total reclaimed space: {human_size(total)}")


def _percent(part: int, whole: int) -> str:
    return f"{human_size(part)} ({part * 100 // whole}%)" if whole > 0 else human_size(part)


def df_rows(usage: dict) -> list[dict]:
    """`docker system df`'s four rows (docker/cli's diskUsage contexts) from GET /system/df."""
    images, containers, volumes = usage["Images"], usage["Containers"], usage["Volumes"]
    layers = usage.get("LayersSize", 0)
    used = sum(i["Size"] - i.get("SharedSize", 0) for i in images if i.get("Containers"))
    running = [c for c in containers if c["State"]["Status"] == "running"]
    container_size = sum(c.get("SizeRw", 0) for c in containers)
    idle_size = sum(c.get("SizeRw", 0) for c in containers if c not in running)
    volume_size = sum(v["UsageData"]["Size"] for v in volumes)
    idle_volumes = sum(v["UsageData"]["Size"] for v in volumes if not v["UsageData"]["RefCount"])
    return [
        {"Type": "Images", "TotalCount": str(len(images)),
         "Active": str(sum(1 for i in images if i.get("Containers"))), "Size": human_size(layers),
         "Reclaimable": _percent(layers - used, layers)},
        {"Type": "Containers", "TotalCount": str(len(containers)), "Active": str(len(running)),
         "Size": human_size(container_size), "Reclaimable": _percent(idle_size, container_size)},
        {"Type": "Local Volumes", "TotalCount": str(len(volumes)),
         "Active": str(sum(1 for v in volumes if v["UsageData"]["RefCount"])), "Size": human_size(volume_size),
         "Reclaimable": _percent(idle_volumes, volume_size)},
        {"Type": "Build Cache", "TotalCount": "0", "Active": "0", "Size": "0B", "Reclaimable": "0B"},
    ]


@click.command("df")
@click.option("--format", "fmt", default="", help=FORMAT_HELP)
@click.pass_context
def system_df(ctx, fmt) -> None:
    """Show this node's disk usage: images, containers, volumes (Shoal builds nothing: no build cache)."""
    rows = df_rows(_call(_runtime(ctx).system_df))
    print_rows(fmt, rows, "*formatter.diskUsageContext", lambda: print_table(
        ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"],
        [[r["Type"], r["TotalCount"], r["Active"], r["Size"], r["Reclaimable"]] for r in rows]))
