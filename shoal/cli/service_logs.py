"""shoal service logs: the merged logs of a service's tasks from every node."""

from __future__ import annotations

import sys

import click

from common.syntax import parse_since
from shoal.cli.output import flag_value


def register(cli: click.Group) -> None:
    group = cli.commands.get("service")
    if isinstance(group, click.Group):
        group.add_command(service_logs)


def _since(text: str | None) -> float:
    if not text:
        return 0.0
    import time
    return flag_value(lambda t: parse_since(t, time.time()), "--since", text)


def task_label(task_name: str, no_task_ids: bool = False, no_trunc: bool = False) -> str:
    """docker's prefix: SERVICE.SLOT.TASKID with the task ID cut to 12 characters (all of it with
    --no-trunc, none with --no-task-ids)."""
    base, _, task_id = task_name.rpartition(".")
    if not base:
        return task_name
    if no_task_ids:
        return base
    return f"{base}.{task_id if no_trunc else task_id[:12]}"


@click.command("logs")
@click.option("-f", "--follow", is_flag=True, help="Follow log output")
@click.option("-n", "--tail", default="all", help="Number of lines to show from the end of the logs")
@click.option("--since", default=None, help="Show logs since timestamp or relative (e.g. 42m)")
@click.option("-t", "--timestamps", is_flag=True, help="Show timestamps")
@click.option("--no-task-ids", is_flag=True, help="Do not include task IDs in output")
@click.option("--raw", is_flag=True, help="Do not neatly format logs")
@click.option("--no-trunc", is_flag=True, help="Do not truncate output (full task IDs)")
@click.argument("service")
@click.pass_obj
def service_logs(client, follow, tail, since, timestamps, no_task_ids, raw, no_trunc, service) -> None:
    """Fetch the logs of a service or task, merged from every node."""
    import grpc

    from proto import control_pb2
    from shoal.cli.client import fail_rpc
    try:
        lines = -1 if tail == "all" else int(tail)
    except ValueError:
        raise click.BadParameter(f"invalid --tail {tail!r}: a number or 'all'") from None
    request = control_pb2.ServiceLogsRequest(service_id=service, follow=follow, tail=lines, since=_since(since))
    try:
        for message in client.stub.ServiceLogs(request, timeout=None if follow else 60):
            if message.warning:
                click.echo(f"warning: {message.warning}", err=True)
                continue
            data = message.data.decode(errors="replace")
            if not data.endswith("\n"):
                data += "\n"
            prefix = ""
            if not raw:
                name = task_label(message.task_name, no_task_ids, no_trunc)
                prefix = f"{name}@{message.node_name}    | "
            if timestamps:
                prefix = f"{message.time} {prefix}"
            out = sys.stderr if message.stream == "stderr" else sys.stdout
            out.write(prefix + data)
            out.flush()
    except grpc.RpcError as err:
        fail_rpc(err, client.host)
    except KeyboardInterrupt:
        pass
