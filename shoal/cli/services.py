"""shoal service create | ls | ps | inspect | scale | update | rollback | rm.

Flags, output and exit codes follow the docker CLI. Without ``--detach``, create, update, scale
and rollback wait until the service converges, showing per-slot progress (service_progress.py),
and exit 1 with the reason if it cannot. Flag parsing is in service_flags.py, rendering in
service_format.py. `service logs` lives in service_logs.py, which adds itself to this group.
"""

from __future__ import annotations

import random
import sys
import time

import click

from common.limits import MAX_REPLICAS
from shoal.cli.client import fail_rpc
from shoal.cli.formatting import FORMAT_HELP, INSPECT_FORMAT_HELP, print_objects, print_rows
from shoal.cli.output import filter_flags, print_table

# service_flags, service_format and service_progress import protobuf: they are imported by the
# commands that use them, so that `shoal --help` and other commands do not pay for it.

UPDATE_ATTEMPTS = 3
clock = time.time       # "Running 5 seconds ago" is measured from this (tests pin it)
_ADJECTIVES = ("brave", "calm", "eager", "fervent", "gentle", "happy", "jolly", "keen", "lucid", "merry",
               "nifty", "proud", "quirky", "serene", "sharp", "tender", "upbeat", "vivid", "wise", "zen")
_NAMES = ("archimedes", "babbage", "curie", "darwin", "euclid", "faraday", "gauss", "hopper", "lovelace",
          "meitner", "noether", "pascal", "ritchie", "shannon", "thompson", "turing", "wozniak", "yalow")


def register(cli: click.Group) -> None:
    cli.add_command(service)


@click.group()
def service() -> None:
    """Manage swarm services."""


def random_name() -> str:
    """A docker-style generated name ("jolly_hopper") for a service created without --name."""
    return f"{random.choice(_ADJECTIVES)}_{random.choice(_NAMES)}"


# ---- options shared by create and update -------------------------------------------------------

def _apply(decorators):
    def wrap(fn):
        for decorator in reversed(decorators):
            fn = decorator(fn)
        return fn
    return wrap


def _config_options(prefix: str) -> list:
    word = prefix.capitalize()
    done = "updated" if prefix == "update" else "rolled back"
    actions = "pause|continue|rollback" if prefix == "update" else "pause|continue"
    return [
        click.option(f"--{prefix}-parallelism", type=int, default=None,
                     help=f"Maximum number of tasks {done} simultaneously (0 for all at once)"),
        click.option(f"--{prefix}-delay", default=None, help=f"Delay between {prefix}s (ns|us|ms|s|m|h)"),
        click.option(f"--{prefix}-failure-action", default=None, help=f"Action on {prefix} failure ({actions})"),
        click.option(f"--{prefix}-monitor", default=None,
                     help=f"Duration after each task {prefix} to monitor for failure (ns|us|ms|s|m|h)"),
        click.option(f"--{prefix}-max-failure-ratio", type=float, default=None,
                     help=f"Failure rate to tolerate during a{'n' if prefix == 'update' else ''} {prefix}"),
        click.option(f"--{prefix}-order", default=None,
                     help=f"{word} order (start-first|stop-first)"),
    ]


COMMON_OPTIONS = [
    click.option("--replicas", type=int, default=None, help="Number of tasks"),
    click.option("--replicas-max-per-node", "max_replicas", type=int, default=None,
                 help="Maximum number of tasks per node (default 0 = unlimited)"),
    click.option("--max-replicas", "max_replicas_alias", type=int, default=None, hidden=True,
                 help="Shoal's earlier name of --replicas-max-per-node"),
    click.option("--limit-cpu", default=None, help="Limit CPUs"),
    click.option("--limit-memory", default=None, help="Limit Memory"),
    click.option("--reserve-cpu", default=None, help="Reserve CPUs"),
    click.option("--reserve-memory", default=None, help="Reserve Memory"),
    click.option("--limit-pids", type=int, default=None, help="Limit maximum number of processes (0 = unlimited)"),
    click.option("--endpoint-mode", default=None, help="Endpoint mode (vip or dnsrr)"),
    click.option("--restart-condition", default=None, help='Restart when condition is met ("none", "on-failure", "any")'),
    click.option("--restart-delay", default=None, help="Delay between restart attempts (ns|us|ms|s|m|h)"),
    click.option("--restart-max-attempts", type=int, default=None, help="Maximum number of restarts before giving up"),
    click.option("--restart-window", default=None, help="Window used to evaluate the restart policy (ns|us|ms|s|m|h)"),
    *_config_options("update"),
    *_config_options("rollback"),
    click.option("--health-cmd", default=None, help="Command to run to check health"),
    click.option("--health-interval", default=None, help="Time between running the check (ms|s|m|h)"),
    click.option("--health-timeout", default=None, help="Maximum time to allow one check to run (ms|s|m|h)"),
    click.option("--health-retries", type=int, default=None, help="Consecutive failures needed to report unhealthy"),
    click.option("--health-start-period", default=None,
                 help="Start period for the container to initialize before counting retries (ms|s|m|h)"),
    click.option("--health-start-interval", default=None,
                 help="Time between running the check during the start period (ms|s|m|h)"),
    click.option("--no-healthcheck", is_flag=True, default=None, help="Disable any container-specified HEALTHCHECK"),
    click.option("--stop-grace-period", default=None, help="Time to wait before force killing a container (ns|us|ms|s|m|h)"),
    click.option("--stop-signal", default=None, help="Signal to stop the container"),
    click.option("--hostname", default=None, help="Container hostname"),
    click.option("-u", "--user", default=None, help="Username or UID (format: <name|uid>[:<group|gid>])"),
    click.option("-w", "--workdir", default=None, help="Working directory inside the container"),
    click.option("--entrypoint", default=None, help="Overwrite the default ENTRYPOINT of the image"),
    click.option("--init/--no-init", default=None, help="Use an init inside each service container"),
    click.option("--security-opt", multiple=True,
                 help="Security options: seccomp=unconfined|builtin|PROFILE.json, no-new-privileges"),
    click.option("--read-only/--no-read-only", default=None, help="Mount the container's root filesystem as read only (--read-only=false: writable)"),
    click.option("--oom-score-adj", type=int, default=None, help="Tune host's OOM preferences (-1000 to 1000)"),
    click.option("-t", "--tty/--no-tty", default=None, help="Allocate a pseudo-TTY"),
    click.option("--log-driver", default=None, help="Logging driver for service (json-file)"),
    click.option("--log-opt", multiple=True, help="Logging driver options (max-size, max-file)"),
    click.option("--max-concurrent", type=int, default=None,
                 help="Number of job tasks to run concurrently (default equal to --replicas)"),
    click.option("-d", "--detach", is_flag=True, help="Exit immediately instead of waiting for the service to converge"),
    click.option("-q", "--quiet", is_flag=True, help="Suppress progress output"),
    click.option("--no-resolve-image", is_flag=True, hidden=True, help="Accepted for docker compatibility"),
    click.option("--resolve-image", type=click.Choice(["always", "changed", "never"]), default=None,
                 help="Query the registry to resolve image digest and supported platforms (accepted: each "
                      "node pulls the tag when it starts a task)"),
    click.option("--with-registry-auth", is_flag=True,
                 help="Send registry authentication details to swarm agents (accepted: nodes pull with "
                      "their own registry configuration)"),
]


def _flag_error(err) -> click.UsageError:
    return click.UsageError(str(err))


# ---- ControlAPI helpers --------------------------------------------------------------------------

def _get(client, ref: str):
    from proto import control_pb2
    return client.call("GetService", control_pb2.GetServiceRequest(service_id=ref)).service


def try_call(client, method: str, request):
    """Call and return (response, None), or (None, grpc error) for NOT_FOUND/ABORTED; other
    errors print and exit as Client.call does."""
    import grpc
    try:
        return getattr(client.stub, method)(request, timeout=client.timeout), None
    except grpc.RpcError as err:
        if err.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.ABORTED):
            return None, err
        fail_rpc(err, client.host)


def update_service(client, ref: str, change):
    """Read the service, build the UpdateServiceRequest with ``change(service)``, send it; re-read
    and retry when the service changed in between (the orchestrator writes update progress).
    Returns (service before, service after)."""
    import grpc
    for attempt in range(1, UPDATE_ATTEMPTS + 1):
        before = _get(client, ref)
        response, err = try_call(client, "UpdateService", change(before))
        if err is None:
            return before, response.service
        if err.code() != grpc.StatusCode.ABORTED or attempt == UPDATE_ATTEMPTS:
            fail_rpc(err, client.host)
    raise AssertionError("unreachable")


def snapshot(client, service_id: str):
    """(service or None, tasks, nodes) for the progress display; Unavailable on a transient error."""
    import grpc

    from proto import control_pb2
    from shoal.cli.service_progress import Unavailable
    try:
        service = client.stub.GetService(control_pb2.GetServiceRequest(service_id=service_id), timeout=client.timeout).service
        tasks = client.stub.ListTasks(control_pb2.ListTasksRequest(filters={"service": service_id}),
                                      timeout=client.timeout).tasks
        nodes = client.stub.ListNodes(control_pb2.ListNodesRequest(), timeout=client.timeout).nodes
    except grpc.RpcError as err:
        if err.code() == grpc.StatusCode.NOT_FOUND:
            return None, [], []
        if err.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            raise Unavailable(err.details() or err.code().name) from err
        fail_rpc(err, client.host)
    return service, list(tasks), list(nodes)


def _wait(client, service, quiet: bool, rollback: bool = False) -> None:
    """Show progress until ``service`` converges; exit 1 with the reason if it cannot."""
    from proto import objects_pb2
    from shoal.cli.service_progress import (ConvergeError, PlainRenderer, ProgressTracker, make_renderer,
                                            wait_for_service)
    _, tasks, _ = snapshot_or_empty(client, service.id)
    failed = {t.id for t in tasks if t.status.state in (objects_pb2.FAILED, objects_pb2.REJECTED)}
    tracker = ProgressTracker(initial=service, rollback=rollback, ignore=failed)
    renderer = PlainRenderer(lambda line: None) if quiet else make_renderer(click.echo)
    if rollback and not quiet:
        renderer.note("rollback", service.update_status.message or "manually requested rollback")
    try:
        wait_for_service(lambda: snapshot(client, service.id), tracker, renderer)
    except ConvergeError as err:
        raise click.ClickException(str(err)) from None


def snapshot_or_empty(client, service_id: str):
    from shoal.cli.service_progress import Unavailable
    try:
        return snapshot(client, service_id)
    except Unavailable:
        return None, [], []


# ---- commands ------------------------------------------------------------------------------------

@service.command("create", context_settings={"allow_interspersed_args": False})
@click.option("--name", default=None, help="Service name")
@click.option("--mode", default=None, help="Service mode (replicated, global, replicated-job, global-job)")
@click.option("-e", "--env", multiple=True, help="Set environment variables")
@click.option("--env-file", multiple=True, help="Read in a file of environment variables")
@click.option("-l", "--label", multiple=True, help="Service labels")
@click.option("--container-label", multiple=True, help="Container labels")
@click.option("--constraint", multiple=True, help="Placement constraints")
@click.option("--placement-pref", multiple=True, help="Add a placement preference (spread=node.labels.<name>)")
@click.option("--mount", multiple=True, help="Attach a filesystem mount to the service")
@click.option("-p", "--publish", multiple=True, help="Publish a port as a node port: PUBLISHED:TARGET[/udp] or published=P,target=T[,protocol=udp][,mode=host][,traffic_policy=local]")
@click.option("--network", multiple=True, help="Network attachments")
@click.option("--cap-add", multiple=True, help="Add Linux capabilities")
@click.option("--cap-drop", multiple=True, help="Drop Linux capabilities")
@click.option("--secret", multiple=True, help="Specify secrets to expose to the service")
@click.option("--config", multiple=True, help="Specify configurations to expose to the service")
@click.option("--dns", multiple=True, help="Set custom DNS servers")
@click.option("--dns-option", multiple=True, help="Set DNS options")
@click.option("--dns-search", multiple=True, help="Set custom DNS search domains")
@click.option("--host", multiple=True, help="Set one or more custom host-to-IP mappings (host:ip)")
@click.option("--sysctl", multiple=True, help="Sysctl options")
@click.option("--ulimit", multiple=True, help="Ulimit options (name=soft[:hard])")
@click.option("--group", multiple=True, help="Set one or more supplementary user groups for the container")
@click.option("--generic-resource", multiple=True, help="User defined resources")
@_apply(COMMON_OPTIONS)
@click.argument("image")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def service_create(client, image, args, detach, quiet, no_resolve_image, **opts) -> None:
    """Create a new service: IMAGE [COMMAND] [ARG...]."""
    from proto import control_pb2
    from shoal.cli.service_flags import MODES, FlagError, build_spec
    if opts.get("mode") is not None and opts["mode"] not in MODES:
        raise click.UsageError(f'invalid argument "{opts["mode"]}" for "--mode" flag: '
                               f'expected one of {", ".join(MODES)}')
    try:
        spec = build_spec(image, args, opts)
    except FlagError as err:
        raise _flag_error(err) from None
    if not spec.annotations.name:
        spec.annotations.name = random_name()
    created = client.call("CreateService", control_pb2.CreateServiceRequest(spec=spec)).service
    click.echo(created.id)
    if not detach:
        _wait(client, created, quiet)


@service.command("ls")
@click.option("-f", "--filter", "filters", multiple=True, help="Filter output based on conditions provided")
@click.option("--format", "fmt", default="", help=FORMAT_HELP)
@click.option("-q", "--quiet", is_flag=True, help="Only display IDs")
@click.pass_obj
def service_ls(client, filters, fmt, quiet) -> None:
    """List services."""
    from proto import control_pb2
    from shoal.cli.service_format import ls_row, service_summary
    request = control_pb2.ListServicesRequest()
    for key, value in _parse_filters(filters, SERVICE_FILTERS).items():
        request.filters[key] = value
    response = client.call("ListServices", request)
    if quiet:
        for s in response.services:
            click.echo(s.id)
        return
    statuses = {st.service_id: st for st in response.statuses}
    summaries = [(s, service_summary(s, statuses.get(s.id, control_pb2.ServiceStatus()))) for s in response.services]
    print_rows(fmt, [summary for _, summary in summaries], "*formatter.serviceContext",
               lambda: print_table(["ID", "NAME", "MODE", "REPLICAS", "IMAGE", "PORTS"],
                                   [ls_row(s, summary) for s, summary in summaries]))


SERVICE_FILTERS = ("id", "label", "mode", "name")
TASK_FILTERS = ("desired-state", "id", "label", "name", "node", "service")


def _parse_filters(filters, allowed: tuple[str, ...] | None = None) -> dict[str, str]:
    """-f key=value flags; repeated keys become comma-separated alternatives. A key not in
    `allowed` is refused with the docker daemon's words."""
    return {k: ",".join(v) for k, v in filter_flags(filters, accepted=allowed).items()}


@service.command("ps")
@click.option("--no-trunc", is_flag=True, help="Do not truncate output")
@click.option("-f", "--filter", "filters", multiple=True, help="Filter output (id, name, node, desired-state)")
@click.option("--format", "fmt", default="", help=FORMAT_HELP)
@click.option("-q", "--quiet", is_flag=True, help="Only display task IDs")
@click.argument("services", nargs=-1, required=True)
@click.pass_obj
def service_ps(client, no_trunc, filters, fmt, quiet, services) -> None:
    """List the tasks of one or more services."""
    from proto import control_pb2
    from shoal.cli.service_format import PS_COLUMNS, PS_KEYS, task_rows
    base = _parse_filters(filters, TASK_FILTERS)
    if base.get("node"):
        base["node"] = ",".join(_self_id(client) if n == "self" else n for n in base["node"].split(","))
    found, tasks, missing = {}, [], []
    for ref in services:
        response, err = try_call(client, "GetService", control_pb2.GetServiceRequest(service_id=ref))
        if err is not None:
            missing.append(ref)
            continue
        found[response.service.id] = response.service
        request = control_pb2.ListTasksRequest(filters=base | {"service": response.service.id})
        tasks.extend(client.call("ListTasks", request).tasks)
    if quiet:
        for t in tasks:
            click.echo(t.id)
    elif found:
        names = {n.id: n.description.hostname for n in client.call("ListNodes", control_pb2.ListNodesRequest()).nodes}
        rows = task_rows(tasks, found, names, clock(), trunc=not no_trunc)
        print_rows(fmt, rows, "*formatter.taskContext",
                   lambda: print_table(PS_COLUMNS, [[r[k] for k in PS_KEYS] for r in rows]))
    if missing:
        for ref in missing:
            click.echo(f"no such service: {ref}", err=True)
        sys.exit(1)


def _self_id(client) -> str:
    from proto import control_pb2
    return client.call("Info", control_pb2.InfoRequest()).node_id


@service.command("inspect")
@click.option("--pretty", "pretty_", is_flag=True, help="Print the information in a human friendly format")
@click.option("-f", "--format", "fmt", default="", help=INSPECT_FORMAT_HELP)
@click.argument("services", nargs=-1, required=True)
@click.pass_obj
def service_inspect_cmd(client, pretty_, fmt, services) -> None:
    """Display detailed information on one or more services."""
    from proto import control_pb2
    from shoal.cli.service_format import pretty, service_inspect
    found, missing = [], []
    for ref in services:
        response, err = try_call(client, "GetService", control_pb2.GetServiceRequest(service_id=ref))
        if err is None:
            found.append(response.service)
        else:
            missing.append(ref)
    if fmt == "pretty":                      # docker's --format=pretty is --pretty
        pretty_, fmt = True, ""
    if pretty_ and fmt:
        raise click.UsageError("--format is incompatible with human friendly format")
    if pretty_:
        click.echo("\n\n".join(pretty(s) for s in found))
    else:
        print_objects(fmt, [service_inspect(s) for s in found])
    if missing:
        for ref in missing:
            click.echo(f"Error: no such service: {ref}", err=True)
        sys.exit(1)


@service.command("scale")
@click.option("-d", "--detach", is_flag=True, help="Exit immediately instead of waiting for the service to converge")
@click.argument("pairs", nargs=-1, required=True)
@click.pass_obj
def service_scale(client, detach, pairs) -> None:
    """Scale one or multiple replicated services: SERVICE=REPLICAS..."""
    from proto import control_pb2, objects_pb2
    wanted = []
    for pair in pairs:
        ref, sep, count = pair.partition("=")
        if not sep or not ref or not count.isdigit():
            raise click.UsageError(f"invalid scale specifier '{pair}': expected SERVICE=REPLICAS")
        if int(count) > MAX_REPLICAS:
            raise click.UsageError(f"invalid replicas value {count}: at most {MAX_REPLICAS} replicas per service")
        wanted.append((ref, int(count)))
    scaled, failed = [], False
    for ref, count in wanted:
        current = _get(client, ref)
        if current.spec.mode not in (objects_pb2.ServiceSpec.REPLICATED, objects_pb2.ServiceSpec.REPLICATED_JOB):
            click.echo(f"{ref}: scale can only be used with replicated or replicated-job mode", err=True)
            failed = True
            continue

        def change(svc, count=count):
            spec = objects_pb2.ServiceSpec()
            spec.CopyFrom(svc.spec)
            spec.replicas = count
            return control_pb2.UpdateServiceRequest(service_id=svc.id, version=svc.meta.version, spec=spec)

        _, after = update_service(client, ref, change)
        click.echo(f"{ref} scaled to {count}")
        scaled.append(after)
    if not detach:
        for svc in scaled:
            _wait(client, svc, quiet=False)
    if failed:
        sys.exit(1)


UPDATE_OPTIONS = [
    click.option("--image", default=None, help="Service image tag"),
    click.option("--args", default=None, help="Service command args"),
    click.option("--env-add", multiple=True, help="Add or update an environment variable"),
    click.option("--env-rm", multiple=True, help="Remove an environment variable"),
    click.option("--label-add", multiple=True, help="Add or update a service label"),
    click.option("--label-rm", multiple=True, help="Remove a label by its key"),
    click.option("--container-label-add", multiple=True, help="Add or update a container label"),
    click.option("--container-label-rm", multiple=True, help="Remove a container label by its key"),
    click.option("--constraint-add", multiple=True, help="Add or update a placement constraint"),
    click.option("--constraint-rm", multiple=True, help="Remove a constraint"),
    click.option("--placement-pref-add", multiple=True, help="Add a placement preference"),
    click.option("--placement-pref-rm", multiple=True, help="Remove a placement preference"),
    click.option("--mount-add", multiple=True, help="Add or update a mount on a service"),
    click.option("--mount-rm", multiple=True, help="Remove a mount by its target path"),
    click.option("--publish-add", multiple=True, help="Add or update a published port"),
    click.option("--publish-rm", multiple=True, help="Remove a published port by its target port"),
    click.option("--network-add", multiple=True, help="Add a network"),
    click.option("--network-rm", multiple=True, help="Remove a network (by ID)"),
    click.option("--secret-add", multiple=True, help="Add or update a secret on a service"),
    click.option("--secret-rm", multiple=True, help="Remove a secret"),
    click.option("--config-add", multiple=True, help="Add or update a config file on a service"),
    click.option("--config-rm", multiple=True, help="Remove a configuration file"),
    click.option("--cap-add", multiple=True, help="Add Linux capabilities"),
    click.option("--cap-drop", multiple=True, help="Drop Linux capabilities"),
    click.option("--dns-add", multiple=True, help="Add or update a custom DNS server"),
    click.option("--dns-rm", multiple=True, help="Remove a custom DNS server"),
    click.option("--dns-option-add", multiple=True, help="Add or update a DNS option"),
    click.option("--dns-option-rm", multiple=True, help="Remove a DNS option"),
    click.option("--dns-search-add", multiple=True, help="Add or update a custom DNS search domain"),
    click.option("--dns-search-rm", multiple=True, help="Remove a DNS search domain"),
    click.option("--host-add", multiple=True, help="Add a custom host-to-IP mapping (host:ip)"),
    click.option("--host-rm", multiple=True, help="Remove a custom host-to-IP mapping (host:ip)"),
    click.option("--sysctl-add", multiple=True, help="Add or update a Sysctl option"),
    click.option("--sysctl-rm", multiple=True, help="Remove a Sysctl option"),
    click.option("--ulimit-add", multiple=True, help="Add or update a ulimit option"),
    click.option("--ulimit-rm", multiple=True, help="Remove a ulimit option"),
    click.option("--group-add", multiple=True, help="Add an additional supplementary user group to the container"),
    click.option("--group-rm", multiple=True,
                 help="Remove a previously added supplementary user group from the container"),
    click.option("--generic-resource-add", multiple=True, help="Add a Generic resource"),
    click.option("--generic-resource-rm", multiple=True, help="Remove a Generic resource"),
    click.option("--force", is_flag=True, help="Force update even if no changes require it"),
    click.option("--rollback", is_flag=True, help="Rollback to previous specification"),
]


@service.command("update")
@_apply(UPDATE_OPTIONS)
@_apply(COMMON_OPTIONS)
@click.argument("ref", metavar="SERVICE")
@click.pass_obj
def service_update(client, ref, detach, quiet, no_resolve_image, rollback, **opts) -> None:
    """Update a service."""
    from proto import control_pb2
    from shoal.cli.service_flags import FlagError, update_spec

    def change(svc):
        if rollback:
            return control_pb2.UpdateServiceRequest(service_id=svc.id, version=svc.meta.version, rollback=True)
        try:
            spec = update_spec(svc.spec, opts)
        except FlagError as err:
            raise _flag_error(err) from None
        return control_pb2.UpdateServiceRequest(service_id=svc.id, version=svc.meta.version, spec=spec)

    _, after = update_service(client, ref, change)
    click.echo(ref)
    if not detach:
        _wait(client, after, quiet, rollback=rollback)


@service.command("rollback")
@click.option("-d", "--detach", is_flag=True, help="Exit immediately instead of waiting for the service to converge")
@click.option("-q", "--quiet", is_flag=True, help="Suppress progress output")
@click.argument("ref", metavar="SERVICE")
@click.pass_obj
def service_rollback(client, detach, quiet, ref) -> None:
    """Revert changes to a service's configuration."""
    from proto import control_pb2
    _, after = update_service(client, ref, lambda svc: control_pb2.UpdateServiceRequest(
        service_id=svc.id, version=svc.meta.version, rollback=True))
    click.echo(ref)
    if not detach:
        _wait(client, after, quiet, rollback=True)


@service.command("rm")
@click.argument("services", nargs=-1, required=True)
@click.pass_obj
def service_rm(client, services) -> None:
    """Remove one or more services."""
    from proto import control_pb2
    failed = False
    for ref in services:
        _, err = try_call(client, "RemoveService", control_pb2.RemoveServiceRequest(service_id=ref))
        if err is None:
            click.echo(ref)
        else:
            click.echo(f"Error: {err.details() or f'no such service: {ref}'}", err=True)
            failed = True
    if failed:
        sys.exit(1)
