"""shoal network create | ls | inspect | rm: the swarm's overlay networks.

Flags, output and exit codes follow the docker CLI. ``create`` prints the new network's ID once the
manager has allocated it; ``ls`` prints a table (or one JSON object per line with ``--format
json``, string values as docker prints them); ``inspect`` prints a JSON array in the shape of
`docker network inspect`; ``rm`` prints each name it removed. The pure rendering functions
(``network_summary``, ``ls_row``, ``network_inspect``) are what tests/unit/test_cli_networks.py checks.
"""

from __future__ import annotations

import sys

import click

from shoal.cli.client import fail_rpc
from shoal.cli.formatting import FORMAT_HELP, INSPECT_FORMAT_HELP, print_objects, print_rows
from shoal.cli.output import filter_flags, print_table
from shoal.dockerjson import SCOPE, VXLANID_OPTION, network_inspect, rfc3339  # noqa: F401

LS_COLUMNS = ["NETWORK ID", "NAME", "DRIVER", "SCOPE"]
NETWORK_FILTERS = ("driver", "id", "label", "name", "scope", "type")
def register(cli: click.Group) -> None:
    cli.add_command(network)


@click.group()
def network() -> None:
    """Manage networks."""


# ---- rendering (pure) ------------------------------------------------------------------------

def _bool(value: bool) -> str:
    return "true" if value else "false"


def _labels_text(labels) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def network_summary(net, trunc: bool = True) -> dict:
    """The fields of `network ls --format json`, with docker's string values."""
    spec = net.spec
    return {"ID": net.id[:12] if trunc else net.id,
            "Name": spec.annotations.name,
            "Driver": spec.driver or "overlay",
            "Scope": SCOPE,
            "IPv6": "false",
            "Internal": _bool(spec.internal),
            "Attachable": _bool(spec.attachable),
            "Ingress": _bool(spec.ingress),
            "Labels": _labels_text(spec.annotations.labels),
            "CreatedAt": rfc3339(net.meta.created_at)}


def ls_row(summary: dict) -> list[str]:
    return [summary["ID"], summary["Name"], summary["Driver"], summary["Scope"]]


# ---- flags ---------------------------------------------------------------------------------

def parse_pairs(values, flag: str) -> dict[str, str]:
    """KEY=VALUE flags (KEY alone means an empty value); a repeated key takes the last value, as
    docker's ConvertKVStringsToMap does."""
    out: dict[str, str] = {}
    for text in values:
        key, sep, value = text.partition("=")
        if not key:
            raise click.BadParameter(f"bad format {text!r} (expected key=value)", param_hint=flag)
        out[key] = value
    return out


def _get(client, ref: str):
    """The network ``ref`` names, or None when the daemon says there is none; other errors exit."""
    import grpc

    from proto import control_pb2
    try:
        return client.stub.GetNetwork(control_pb2.GetNetworkRequest(network_id=ref),
                                      timeout=client.timeout).network
    except grpc.RpcError as err:
        if err.code() == grpc.StatusCode.NOT_FOUND:
            return None
        fail_rpc(err, client.host)


# ---- commands ------------------------------------------------------------------------------

@network.command("create")
@click.option("-d", "--driver", default="overlay", show_default=True, help="Driver to manage the Network")
@click.option("--subnet", multiple=True, help="Subnet in CIDR format that represents a network segment")
@click.option("--gateway", multiple=True, help="IPv4 Gateway for the master subnet")
@click.option("--attachable", is_flag=True, help="Enable manual container attachment")
@click.option("--internal", is_flag=True, help="Restrict external access to the network")
@click.option("--ingress", is_flag=True, help="Create swarm routing-mesh network")
@click.option("-o", "--opt", multiple=True, help="Set driver specific options (encrypted)")
@click.option("--label", multiple=True, help="Set metadata on a network")
@click.argument("name")
@click.pass_obj
def network_create(client, driver, subnet, gateway, attachable, internal, ingress, opt, label, name) -> None:
    """Create a network."""
    from proto import control_pb2, objects_pb2
    if len(gateway) > len(subnet):
        raise click.UsageError("every --gateway needs a --subnet it belongs to")
    spec = objects_pb2.NetworkSpec(driver=driver, attachable=attachable, internal=internal, ingress=ingress)
    spec.annotations.name = name
    for key, value in parse_pairs(label, "--label").items():
        spec.annotations.labels[key] = value
    for key, value in parse_pairs(opt, "--opt").items():
        spec.driver_opts[key] = value
    for i, cidr in enumerate(subnet):
        spec.ipam.add(subnet=cidr, gateway=gateway[i] if i < len(gateway) else "")
    response = client.call("CreateNetwork", control_pb2.CreateNetworkRequest(spec=spec))
    click.echo(response.network.id)


@network.command("ls")
@click.option("-f", "--filter", "filters", multiple=True,
              help="Provide filter values (e.g. 'driver=overlay', 'name=back', 'label=k')")
@click.option("--format", "fmt", default="", help=FORMAT_HELP)
@click.option("--no-trunc", is_flag=True, help="Do not truncate the output")
@click.option("-q", "--quiet", is_flag=True, help="Only display network IDs")
@click.pass_obj
def network_ls(client, filters, fmt, no_trunc, quiet) -> None:
    """List networks."""
    from proto import control_pb2
    request = control_pb2.ListNetworksRequest()
    for key, values in filter_flags(filters, accepted=NETWORK_FILTERS).items():
        request.filters[key] = ",".join(values)
    networks = client.call("ListNetworks", request).networks
    summaries = [network_summary(n, trunc=not no_trunc) for n in networks]
    if quiet:
        for summary in summaries:
            click.echo(summary["ID"])
    else:
        print_rows(fmt, summaries, "*formatter.networkContext",
                   lambda: print_table(LS_COLUMNS, [ls_row(s) for s in summaries]))


@network.command("inspect")
@click.option("-f", "--format", "fmt", default="", help=INSPECT_FORMAT_HELP)
@click.argument("networks", nargs=-1, required=True)
@click.pass_obj
def network_inspect_cmd(client, fmt, networks) -> None:
    """Display detailed information on one or more networks."""
    found, missing = [], []
    for ref in networks:
        net = _get(client, ref)
        (found if net is not None else missing).append(net if net is not None else ref)
    print_objects(fmt, [network_inspect(n) for n in found])
    for ref in missing:
        click.echo(f"Error: No such network: {ref}", err=True)
    if missing:
        sys.exit(1)


@network.command("rm")
@click.argument("networks", nargs=-1, required=True)
@click.pass_obj
def network_rm(client, networks) -> None:
    """Remove one or more networks."""
    import grpc

    from proto import control_pb2
    failed = False
    for ref in networks:
        try:
            client.stub.RemoveNetwork(control_pb2.RemoveNetworkRequest(network_id=ref), timeout=client.timeout)
        except grpc.RpcError as err:
            if err.code() == grpc.StatusCode.UNAVAILABLE:
                fail_rpc(err, client.host)
            click.echo(f"Error response from daemon: {err.details() or f'No such network: {ref}'}", err=True)
            failed = True
            continue
        click.echo(ref)
    if failed:
        sys.exit(1)


@network.command("connect")
@click.option("--alias", multiple=True, help="Add network-scoped alias for the container")
@click.option("--ip", default="", help="IPv4 address (e.g., \"172.30.100.104\")")
@click.option("--ip6", default="", help="IPv6 address (e.g., \"2001:db8::33\")")
@click.option("--link", multiple=True, help="Add link to another container")
@click.option("--link-local-ip", multiple=True, help="Add a link-local address for the container")
@click.option("--driver-opt", multiple=True, help="driver options for the network")
@click.argument("network_ref", metavar="NETWORK")
@click.argument("container")
@click.pass_obj
def network_connect(client, alias, ip, ip6, link, link_local_ip, driver_opt, network_ref, container) -> None:
    """Connect a container on this node to an attachable swarm network.

    shoald allocates the container's address on the network (the cluster's IPAM) and gives the
    container a new interface (the lowest free ethN) at once, running or not; its other interfaces
    keep their names. The container must be on a swarm network already (shoal run --network NET)."""
    from proto import control_pb2
    refused = [flag for flag, value in (("--ip6", ip6), ("--link", link), ("--link-local-ip", link_local_ip),
                                        ("--driver-opt", driver_opt)) if value]
    if refused:
        raise click.UsageError(f"{refused[0]} is not supported on swarm overlay networks (IPv4 only, no links, "
                               "no driver options)")
    request = control_pb2.AttachNetworkRequest(network_id=network_ref, connect_container=container,
                                               aliases=list(alias), address=ip)
    client.call("AttachNetwork", request, timeout=max(client.timeout or 0, 60))


@network.command("disconnect")
@click.option("-f", "--force", is_flag=True, help="Force the container to disconnect from a network")
@click.argument("network_ref", metavar="NETWORK")
@click.argument("container")
@click.pass_obj
def network_disconnect(client, force, network_ref, container) -> None:
    """Disconnect a container on this node from a swarm network (its address is released)."""
    from proto import control_pb2
    request = control_pb2.DetachNetworkRequest(container=container, network_id=network_ref, force=force)
    client.call("DetachNetwork", request, timeout=max(client.timeout or 0, 60))
