"""shoal stack deploy (up) | ls (list) | services | ps | rm (remove, down).

A stack is the set of services, networks, secrets and configs labelled
``com.docker.stack.namespace=NAME`` and named ``NAME_...``, as with ``docker stack``. What deploy
does is decided up front by shoal.stack.planner (every check runs before anything is written);
this module makes the ControlAPI calls in the plan's order: prune, secrets, configs, networks,
then services in ``depends_on`` order, creating a service only once each of its dependencies has
a task running (healthy if it has a health check) or, for a job, completed.

Unlike ``docker stack deploy``, ``--wait`` (or ``--detach=false``) shows every service's progress
until all converge and exits 1 naming those that did not within ``--timeout``; the same timeout
bounds each depends_on wait. ``ls``, ``services`` and ``ps`` take ``--format json``.
"""

from __future__ import annotations

import os
import sys
import time

import click

from shoal.cli.formatting import FORMAT_HELP, print_rows
from shoal.cli.output import flag_value, print_table

DEFAULT_TIMEOUT = "5m"
REMOVE_TIMEOUT = 60.0          # how long `stack rm` retries objects still in use by stopping tasks
POLL_INTERVAL = 0.5


def register(cli: click.Group) -> None:
    cli.add_command(stack)


@click.group()
def stack() -> None:
    """Manage stacks (Compose files deployed on the swarm)."""


# ---- ControlAPI helpers ------------------------------------------------------------------------

def _namespace_filter(name: str) -> dict[str, str]:
    from shoal.stack import NAMESPACE_LABEL
    return {"label": f"{NAMESPACE_LABEL}={name}"}


def _optional_list(client, method: str, request, field: str):
    """The objects a List call returns, or None if this cluster does not implement the call
    (secrets and configs, on a daemon without them)."""
    import grpc

    from shoal.cli.client import fail_rpc
    try:
        return list(getattr(getattr(client.stub, method)(request, timeout=client.timeout), field))
    except grpc.RpcError as err:
        if err.code() == grpc.StatusCode.UNIMPLEMENTED:
            return None
        fail_rpc(err, client.host)


def _cluster_state(client, secrets: bool, configs: bool):
    from proto import control_pb2
    from shoal.stack.planner import ClusterState
    return ClusterState(
        services=list(client.call("ListServices", control_pb2.ListServicesRequest()).services),
        networks=list(client.call("ListNetworks", control_pb2.ListNetworksRequest()).networks),
        secrets=_optional_list(client, "ListSecrets", control_pb2.ListSecretsRequest(), "secrets") if secrets else None,
        configs=_optional_list(client, "ListConfigs", control_pb2.ListConfigsRequest(), "configs") if configs else None)


def _normalizer(client):
    """The planner's view of the ControlAPI's rules: its NormalizeServiceSpec call. A refusal
    becomes a SpecError (the planner lists it with the file and line); other errors exit."""
    import grpc

    from manager.controlapi.service_spec import SpecError
    from proto import control_pb2
    from shoal.cli.client import fail_rpc

    def normalize(spec, current, without):
        request = control_pb2.NormalizeServiceSpecRequest(spec=spec, service_id=current.id,
                                                          without_services=without)
        try:
            return client.stub.NormalizeServiceSpec(request, timeout=client.timeout).spec
        except grpc.RpcError as err:
            if err.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
                              grpc.StatusCode.ABORTED):
                raise SpecError(err.details()) from None
            fail_rpc(err, client.host)
    return normalize


def _stack_services(client, name: str) -> list:
    from proto import control_pb2
    request = control_pb2.ListServicesRequest(filters=_namespace_filter(name))
    return list(client.call("ListServices", request).services)


def _parse_timeout(text: str) -> float:
    from common.syntax import parse_duration
    seconds = flag_value(parse_duration, "--timeout", text)
    if seconds < 0:
        raise click.UsageError(f'invalid argument "{text}" for "--timeout" flag: must not be negative')
    return seconds


# ---- deploy ------------------------------------------------------------------------------------

@stack.command("deploy")
@click.option("-c", "--compose-file", "files", multiple=True, required=True,
              help="Path to a Compose file (repeat to merge several, later ones override)")
@click.option("--prune", is_flag=True, help="Prune services that are no longer referenced")
@click.option("-d", "--detach/--no-detach", default=True,
              help="Exit immediately instead of waiting for the stack services to converge "
                   "(--detach=false waits)")
@click.option("--wait", is_flag=True, help="Wait for the stack services to converge (same as --detach=false)")
@click.option("--timeout", default=DEFAULT_TIMEOUT, show_default=True,
              help="How long to wait for each depends_on dependency, and with --wait for convergence")
@click.option("-q", "--quiet", is_flag=True, help="Suppress progress output")
@click.option("--resolve-image", type=click.Choice(["always", "changed", "never"]), default=None,
              help="Query the registry to resolve image digest and supported platforms (accepted: each "
                   "node pulls the tag when it starts a task)")
@click.option("--with-registry-auth", is_flag=True,
              help="Send registry authentication details to Swarm agents (accepted: nodes pull with their "
                   "own registry configuration)")
@click.argument("name", metavar="STACK")
@click.pass_obj
def stack_deploy(client, files, prune, detach, wait, timeout, quiet, resolve_image, with_registry_auth,
                 name) -> None:
    """Deploy a new stack or update an existing stack."""
    from shoal.stack import StackError, check_stack_name, load_stack
    from shoal.stack.planner import plan_deploy
    limit = _parse_timeout(timeout)
    try:
        check_stack_name(name)
        spec = load_stack(list(files), os.environ, stdin=sys.stdin.read)
        for warning in spec.warnings():       # docker's "Ignoring unsupported options: ..."
            click.echo(warning, err=True)
        cluster = _cluster_state(client, bool(spec.secrets), bool(spec.configs))
        plan = plan_deploy(spec, name, cluster, _normalizer(client), prune=prune)
    except StackError as err:
        raise click.ClickException(str(err)) from None
    for warning in plan.warnings:
        click.echo(f"warning: {warning}", err=True)
    say = (lambda text: None) if quiet else click.echo
    deployed = _apply(client, plan, limit, say)
    if not plan.changes_anything:
        say(f"Stack {name} is up to date")
    if wait or not detach:
        _wait_stack(client, deployed, limit, quiet)


def _apply(client, plan, limit: float, say) -> list:
    """Make the ControlAPI calls of `plan` in order; returns the stack's services as they are
    after it (for --wait)."""
    from proto import control_pb2
    from shoal.cli.services import try_call
    for service in plan.prune:
        say(f"Removing service {service.spec.annotations.name}")
        _, err = try_call(client, "RemoveService", control_pb2.RemoveServiceRequest(service_id=service.id))
        if err is not None and err.code().name != "NOT_FOUND":
            raise click.ClickException(f"removing service {service.spec.annotations.name}: {err.details()}")
    for spec in plan.secrets:
        say(f"Creating secret {spec.annotations.name}")
        client.call("CreateSecret", control_pb2.CreateSecretRequest(spec=spec))
    for spec in plan.configs:
        say(f"Creating config {spec.annotations.name}")
        client.call("CreateConfig", control_pb2.CreateConfigRequest(spec=spec))
    for spec in plan.networks:
        say(f"Creating network {spec.annotations.name}")
        client.call("CreateNetwork", control_pb2.CreateNetworkRequest(spec=spec))
    deployed = []
    for step in plan.services:
        _wait_dependencies(client, step, limit, say)
        if step.action == "create":
            say(f"Creating service {step.name}")
            created = client.call("CreateService", control_pb2.CreateServiceRequest(spec=step.spec)).service
            deployed.append(created)
        elif step.action == "update":
            say(f"Updating service {step.name} ({', '.join(step.changes)})")
            deployed.append(_update_service(client, step))
        else:
            deployed.append(step.current)
    return deployed


def _update_service(client, step):
    from proto import control_pb2
    from shoal.cli.services import update_service

    def change(current):
        return control_pb2.UpdateServiceRequest(service_id=current.id, version=current.meta.version, spec=step.spec)

    _, after = update_service(client, step.current.id, change)
    return after


_WANTED = {"service_completed_successfully": "completed"}


def _wait_dependencies(client, step, limit: float, say) -> None:
    """Block until each dependency of `step` is up; ClickException naming the one that is not
    (failing, or not up within `limit` seconds). Services after it are not deployed."""
    from proto import objects_pb2
    from shoal.stack.planner import dependency_state, waits_for
    verb = "creating" if step.action == "create" else "updating"
    for dependency, condition in waits_for(step):
        deadline = time.monotonic() + limit
        shown = False
        while True:
            service, tasks = _service_and_tasks(client, dependency)
            state = dependency_state(service, tasks, condition)
            if state.ready:
                break
            if service is not None and service.spec.mode in (objects_pb2.ServiceSpec.REPLICATED_JOB,
                                                             objects_pb2.ServiceSpec.GLOBAL_JOB):
                wanted = "completed"
            elif service is not None and _has_healthcheck(service):
                wanted = "healthy"
            else:
                wanted = _WANTED.get(condition, "running")
            if not shown:
                say(f"Waiting for service {dependency} to be {wanted} before {verb} service {step.name}")
                shown = True
            if state.failed:
                raise click.ClickException(f"service {step.name} was not deployed: its dependency {dependency} "
                                           f"did not come up: {state.failed}")
            if time.monotonic() >= deadline:
                raise click.ClickException(f"service {step.name} was not deployed: its dependency {dependency} "
                                           f"was not {wanted} within {limit:g}s (last: {state.detail}); "
                                           f"see `shoal service ps {dependency}`")
            time.sleep(POLL_INTERVAL)


def _has_healthcheck(service) -> bool:
    check = service.spec.task.container.healthcheck
    return service.spec.task.container.HasField("healthcheck") and bool(check.test) and check.test[0] != "NONE"


def _service_and_tasks(client, ref: str):
    """(service or None, its tasks); (None, []) while the cluster is briefly unavailable."""
    import grpc

    from proto import control_pb2
    from shoal.cli.client import fail_rpc
    try:
        service = client.stub.GetService(control_pb2.GetServiceRequest(service_id=ref), timeout=client.timeout).service
        tasks = client.stub.ListTasks(control_pb2.ListTasksRequest(filters={"service": service.id}),
                                      timeout=client.timeout).tasks
    except grpc.RpcError as err:
        if err.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            return None, []
        fail_rpc(err, client.host)
    return service, list(tasks)


def _wait_stack(client, services: list, limit: float, quiet: bool) -> None:
    """Show each service's progress until it converges (a completed job counts); exit 1 naming
    the services that did not converge within `limit` seconds in all."""
    from proto import objects_pb2
    from shoal.cli.service_progress import (ConvergeError, PlainRenderer, ProgressTracker, make_renderer,
                                            wait_for_service)
    from shoal.cli.services import snapshot, snapshot_or_empty
    deadline = time.monotonic() + limit
    failed: list[str] = []
    for service in services:
        name = service.spec.annotations.name
        if not quiet:
            click.echo(f"{name}:")
        _, tasks, _ = snapshot_or_empty(client, service.id)
        ignore = {t.id for t in tasks if t.status.state in (objects_pb2.FAILED, objects_pb2.REJECTED)}
        tracker = ProgressTracker(initial=service, ignore=ignore)
        renderer = PlainRenderer(lambda line: None) if quiet else make_renderer(click.echo)
        try:
            wait_for_service(lambda: snapshot(client, service.id), tracker, renderer,
                             timeout=max(deadline - time.monotonic(), 0.0))
        except ConvergeError as err:
            failed.append(f"{name} ({err})")
    if failed:
        raise click.ClickException(f"{len(failed)} service(s) did not converge within {limit:g}s: "
                                   + "; ".join(failed))


# ---- config ----------------------------------------------------------------------------------

@stack.command("config")
@click.option("-c", "--compose-file", "files", multiple=True, required=True,
              help="Path to a Compose file, or \"-\" to read from stdin")
@click.option("--skip-interpolation", is_flag=True, help="Skip interpolation and output only merged config")
def stack_config(files, skip_interpolation) -> None:
    """Outputs the final config file, after doing merges and interpolations."""
    import yaml

    from shoal.stack import StackError
    from shoal.stack.loader import merged_config
    sources = []
    for path in files:
        if path == "-":
            sources.append(("<stdin>", sys.stdin.read()))
            continue
        try:
            with open(path, encoding="utf-8") as handle:
                sources.append((path, handle.read()))
        except OSError as err:
            raise click.ClickException(f"{path}: {err.strerror or err}") from None
    try:
        config = merged_config(sources, os.environ, interpolate=not skip_interpolation)
    except StackError as err:
        raise click.ClickException(str(err)) from None
    click.echo(yaml.safe_dump(config, sort_keys=False, default_flow_style=False), nl=False)


# ---- ls, services, ps ----------------------------------------------------------------------------

@stack.command("ls")
@click.option("--format", "fmt", default="", help=FORMAT_HELP)
@click.pass_obj
def stack_ls(client, fmt) -> None:
    """List stacks."""
    from proto import control_pb2
    from shoal.stack import NAMESPACE_LABEL
    counts: dict[str, int] = {}
    for service in client.call("ListServices", control_pb2.ListServicesRequest()).services:
        namespace = service.spec.annotations.labels.get(NAMESPACE_LABEL)
        if namespace:
            counts[namespace] = counts.get(namespace, 0) + 1
    rows = [{"Name": name, "Namespace": "", "Orchestrator": "Swarm", "Services": str(count)}
            for name, count in sorted(counts.items())]
    print_rows(fmt, rows, "*formatter.stackContext",
               lambda: print_table(["NAME", "SERVICES"], [[r["Name"], r["Services"]] for r in rows]))


@stack.command("services")
@click.option("-f", "--filter", "filters", multiple=True, help="Filter output based on conditions provided")
@click.option("--format", "fmt", default="", help=FORMAT_HELP)
@click.option("-q", "--quiet", is_flag=True, help="Only display IDs")
@click.argument("name", metavar="STACK")
@click.pass_context
def stack_services(ctx, filters, fmt, quiet, name) -> None:
    """List the services in the stack."""
    from shoal.cli.services import service_ls
    if not _stack_services(ctx.obj, name):
        click.echo(f"Nothing found in stack: {name}", err=True)
        return
    namespace = _namespace_filter(name)["label"]
    ctx.invoke(service_ls, filters=(f"label={namespace}", *filters), fmt=fmt, quiet=quiet)


@stack.command("ps")
@click.option("--no-trunc", is_flag=True, help="Do not truncate output")
@click.option("-f", "--filter", "filters", multiple=True, help="Filter output (id, name, node, desired-state)")
@click.option("--format", "fmt", default="", help=FORMAT_HELP)
@click.option("-q", "--quiet", is_flag=True, help="Only display task IDs")
@click.argument("name", metavar="STACK")
@click.pass_context
def stack_ps(ctx, no_trunc, filters, fmt, quiet, name) -> None:
    """List the tasks in the stack."""
    from shoal.cli.services import service_ps
    services = _stack_services(ctx.obj, name)
    if not services:
        click.echo(f"nothing found in stack: {name}", err=True)
        sys.exit(1)
    ctx.invoke(service_ps, no_trunc=no_trunc, filters=filters, fmt=fmt, quiet=quiet,
               services=tuple(s.id for s in services))


# ---- rm ------------------------------------------------------------------------------------------

@stack.command("rm")
@click.option("-d", "--detach/--no-detach", default=True,
              help="Do not wait for stack removal (accepted: networks, secrets and configs are removed "
                   "once the stack's tasks have stopped, so rm always waits for that)")
@click.argument("names", metavar="STACK...", nargs=-1, required=True)
@click.pass_obj
def stack_rm(client, detach, names) -> None:
    """Remove one or more stacks: their services, then their secrets, configs and networks."""
    from proto import control_pb2
    removals: list = []
    later: list = []
    for name in names:
        labelled = _namespace_filter(name)
        services = _stack_services(client, name)
        secrets = _optional_list(client, "ListSecrets", control_pb2.ListSecretsRequest(filters=labelled),
                                 "secrets") or []
        configs = _optional_list(client, "ListConfigs", control_pb2.ListConfigsRequest(filters=labelled),
                                 "configs") or []
        networks = list(client.call("ListNetworks", control_pb2.ListNetworksRequest(filters=labelled)).networks)
        if not (services or secrets or configs or networks):
            click.echo(f"Nothing found in stack: {name}", err=True)
            continue
        removals += [("service", "RemoveService", control_pb2.RemoveServiceRequest(service_id=s.id),
                      s.spec.annotations.name) for s in sorted(services, key=lambda s: s.spec.annotations.name)]
        pending = [("secret", "RemoveSecret", control_pb2.RemoveSecretRequest(secret_id=s.id),
                     s.spec.annotations.name) for s in secrets]
        pending += [("config", "RemoveConfig", control_pb2.RemoveConfigRequest(config_id=c.id),
                     c.spec.annotations.name) for c in configs]
        pending += [("network", "RemoveNetwork", control_pb2.RemoveNetworkRequest(network_id=n.id),
                     n.spec.annotations.name) for n in networks]
        later.extend(pending)
    # every stack's services first: their tasks stop together, then the networks they used go
    if not _remove_all(client, removals + later):
        sys.exit(1)


def _remove_all(client, pending: list) -> bool:
    """Remove each object in order, retrying those still in use by stopping tasks for up to
    REMOVE_TIMEOUT seconds; print each as docker does. False if any could not be removed."""
    import grpc

    from shoal.cli.client import fail_rpc
    deadline = time.monotonic() + REMOVE_TIMEOUT
    announced: set[str] = set()
    while pending:
        waiting = []
        for kind, method, request, name in pending:
            if (kind, name) not in announced:
                click.echo(f"Removing {kind} {name}")
                announced.add((kind, name))
            try:
                getattr(client.stub, method)(request, timeout=client.timeout)
            except grpc.RpcError as err:
                if err.code() == grpc.StatusCode.NOT_FOUND:
                    continue
                if err.code() not in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.UNAVAILABLE):
                    fail_rpc(err, client.host)
                waiting.append((kind, method, request, name, err.details() or err.code().name))
        if not waiting:
            return True
        if time.monotonic() >= deadline:
            for kind, _, _, name, reason in waiting:
                click.echo(f"Failed to remove {kind} {name}: {reason}", err=True)
            return False
        pending = [entry[:4] for entry in waiting]
        time.sleep(POLL_INTERVAL)
    return True


stack.add_command(stack_deploy, "up")
stack.add_command(stack_ls, "list")
stack.add_command(stack_rm, "remove")
stack.add_command(stack_rm, "down")
