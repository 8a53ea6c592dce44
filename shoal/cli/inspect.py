"""``shoal inspect [--type TYPE] [-f FORMAT] NAME|ID...``: any object by name or ID, as
``docker inspect`` finds it.

Without ``--type`` each reference is looked up as docker/cli's ``inspectAll`` does, in its order:
container, image, network, volume (this node's shoal-runtimed and the swarm), then, when this node
is a manager, service, task, node, secret, config; a lookup that says "not found" (or cannot parse
the reference as an image name) moves on to the next kind, any other failure is the answer.
Each document is the one the kind's own ``inspect`` prints. References that match nothing print
``error: no such object: REF`` after the others' JSON, exit 1.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import click

from shoal.cli.formatting import INSPECT_FORMAT_HELP, print_objects

TYPES = ("config", "container", "image", "network", "node", "plugin", "secret", "service", "task", "volume")
ORDER = ("container", "image", "network", "volume", "service", "task", "node", "plugin", "secret", "config")
SWARM_TYPES = frozenset({"service", "task", "node", "secret", "config"})


def register(cli: click.Group) -> None:
    cli.add_command(inspect)


class Skip(Exception):
    """Not this kind of object: try the next."""


class Failed(Exception):
    """The lookup failed for another reason: the answer for this reference."""


def _grpc(client, method: str, request, field: str):
    import grpc
    try:
        return getattr(getattr(client.stub, method)(request, timeout=client.timeout), field)
    except grpc.RpcError as err:
        if err.code() == grpc.StatusCode.NOT_FOUND:
            raise Skip(err.details() or "not found") from None
        raise Failed(f"Error response from daemon: {err.details() or err.code().name}") from None


def _runtime(fn, ref: str):
    from agent_runtime.errors import InvalidArgument, NotFound, ShoalRuntimeError
    try:
        return fn(ref)
    except NotFound as exc:
        raise Skip(str(exc)) from None
    except InvalidArgument as exc:
        if "reference" in str(exc).lower():          # not an image name: docker's "invalid reference format"
            raise Skip(str(exc)) from None
        raise Failed(f"Error response from daemon: {exc}") from None
    except ShoalRuntimeError as exc:
        raise Failed(f"Error response from daemon: {exc}") from None


def finders(ctx: click.Context) -> dict[str, Callable[[str], dict]]:
    """Per kind: REF -> the Docker-shaped document, raising Skip or Failed."""
    from proto import control_pb2
    from shoal.cli.containers import _client as runtime_client
    from shoal.dockerjson import network_inspect, node_inspect, secret_inspect, service_inspect
    client = ctx.find_root().obj
    runtime = runtime_client(ctx)

    def container(ref):
        from agent_runtime.spec import to_json
        return to_json(_runtime(runtime.inspect, ref))

    def volume(ref):
        from agent_runtime.spec import to_json
        return to_json(_runtime(runtime.volume_inspect, ref))

    def task(ref):
        from shoal.dockerapi.convert import task_json
        found = _grpc(client, "GetTask", control_pb2.GetTaskRequest(task_id=ref), "task")
        try:
            service = _grpc(client, "GetService", control_pb2.GetServiceRequest(service_id=found.service_id),
                            "service")
        except Skip:
            service = None
        return task_json(found, service)

    def node(ref):
        if ref == "self":
            ref = client.call("Info", control_pb2.InfoRequest()).node_id
        return node_inspect(_grpc(client, "GetNode", control_pb2.GetNodeRequest(node_id=ref), "node"))

    def plugin(ref):
        raise Skip(f'plugin "{ref}" not found')     # Shoal has no plugins

    return {
        "container": container,
        "image": lambda ref: _runtime(runtime.image_inspect, ref),
        "network": lambda ref: network_inspect(
            _grpc(client, "GetNetwork", control_pb2.GetNetworkRequest(network_id=ref), "network")),
        "volume": volume,
        "service": lambda ref: service_inspect(
            _grpc(client, "GetService", control_pb2.GetServiceRequest(service_id=ref), "service")),
        "task": task,
        "node": node,
        "plugin": plugin,
        "secret": lambda ref: secret_inspect(
            _grpc(client, "GetSecret", control_pb2.GetSecretRequest(secret_id=ref), "secret"), False),
        "config": lambda ref: secret_inspect(
            _grpc(client, "GetConfig", control_pb2.GetConfigRequest(config_id=ref), "config"), True),
    }


def find(ref: str, kinds: list[str], lookups: dict[str, Callable[[str], dict]], only: str) -> dict:
    """The first kind's document for ``ref``; with a type (``only``) its own error, else docker's
    ``error: no such object``."""
    for kind in kinds:
        try:
            return lookups[kind](ref)
        except Skip as skip:
            if only:
                raise Failed(f"Error response from daemon: {skip}") from None
    raise Failed(f"error: no such object: {ref}")


@click.command()
@click.option("-f", "--format", "fmt", default="", help=INSPECT_FORMAT_HELP)
@click.option("--type", "only", default=None, help="Only inspect objects of the given type")
@click.argument("refs", metavar="NAME|ID [NAME|ID...]", nargs=-1, required=True)
@click.pass_context
def inspect(ctx, fmt, only, refs) -> None:
    """Return low-level information on Shoal objects."""
    choices = '", "'.join(TYPES)
    if only is not None and not only:
        raise click.UsageError(f'type is empty: must be one of "{choices}"')
    if only and only not in TYPES:
        click.echo(f'unknown type: "{only}": must be one of "{choices}"', err=True)
        sys.exit(1)
    kinds = [only] if only else list(ORDER)
    if not only:
        from proto import control_pb2
        if not ctx.find_root().obj.call("Info", control_pb2.InfoRequest()).control_available:
            kinds = [k for k in kinds if k not in SWARM_TYPES]
    lookups = finders(ctx)
    found, errors = [], []
    for ref in refs:
        try:
            found.append(find(ref, kinds, lookups, only or ""))
        except Failed as err:
            errors.append(str(err))
    print_objects(fmt, found)
    if errors:
        click.echo("\n".join(errors), err=True)
        sys.exit(1)
