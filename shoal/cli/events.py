"""shoal events: the cluster's events (on a manager) and this node's container events, live or replayed.

Docker's command: `docker events [--since T] [--until T] [--filter K=V]... [--format F]`. Each line is
`TIME TYPE ACTION ID (k=v, ...)` with RFC 3339 nanosecond UTC times and attributes sorted by key;
`--format json` prints Docker's JSON, one event per line; any other format is a Go template over
Docker's field names (`{{.Type}}`, `{{.Action}}`, `{{.Actor.ID}}`, `{{.Actor.Attributes.name}}`,
`{{.Scope}}`, `{{.Time}}`, `{{.TimeNano}}`). Without --until it follows until interrupted.
"""
from __future__ import annotations

import json
import sys
import time

import click

from common.syntax import parse_since
from shoal.cli.output import flag_value


def register(cli: click.Group) -> None:
    cli.add_command(events)
    system = cli.commands.get("system")
    if isinstance(system, click.Group):
        system.add_command(events)


def format_line(ev: dict) -> str:
    """Docker's default line for one event."""
    ns = int(ev.get("timeNano") or int(ev.get("time", 0)) * 10**9)
    secs, frac = divmod(ns, 10**9)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"
    actor = ev.get("Actor", {})
    attrs = actor.get("Attributes") or {}
    line = f"{stamp} {ev.get('Type', '')} {ev.get('Action', '')} {actor.get('ID', '')}"
    if attrs:
        line += " (" + ", ".join(f"{k}={attrs[k]}" for k in sorted(attrs)) + ")"
    return line


def template_data(ev: dict) -> dict:
    """The event as Go's events.Message: JSON names plus the Go field names templates use."""
    return {**ev, "Scope": ev.get("scope", ""), "Time": ev.get("time", 0), "TimeNano": ev.get("timeNano", 0)}


def _nanos(flag: str, text: str | None) -> int:
    if not text:
        return 0
    return int(flag_value(lambda t: parse_since(t, time.time()), flag, text) * 1e9)


@click.command("events")
@click.option("--since", default=None, help="Show all events created since timestamp")
@click.option("--until", default=None, help="Stream events until this timestamp")
@click.option("-f", "--filter", "filters", multiple=True, help="Filter output based on conditions provided")
@click.option("--format", "fmt", default=None,
              help="Format output using a custom template: 'json', or a Go template such as '{{.Type}} {{.Action}}'")
@click.pass_obj
def events(client, since, until, filters, fmt) -> None:
    """Get real time events from the server."""
    import grpc

    from proto import control_pb2
    from shoal.cli.client import fail_rpc
    from common.gotemplate import Template, TemplateError

    template = None
    if fmt and fmt.strip() != "json":
        try:
            template = Template(fmt.replace("\\t", "\t").replace("\\n", "\n"))
        except TemplateError as err:
            click.echo(f"template parsing error: {err}", err=True)
            sys.exit(1)
    since_ns, until_ns = _nanos("--since", since), _nanos("--until", until)
    if since_ns and until_ns and until_ns < since_ns:
        raise click.UsageError("--until must be later than --since")
    request = control_pb2.EventsRequest(since_ns=since_ns, until_ns=until_ns, filters=list(filters))
    try:
        for message in client.stub.Events(request, timeout=None):
            ev = json.loads(message.json)
            if template is not None:
                try:
                    click.echo(template.execute(template_data(ev)))
                except TemplateError as err:
                    click.echo(f"template parsing error: {err}", err=True)
                    sys.exit(1)
            elif fmt:
                click.echo(json.dumps(ev, separators=(",", ":")))
            else:
                click.echo(format_line(ev))
            sys.stdout.flush()
    except grpc.RpcError as err:
        fail_rpc(err, client.host)
    except KeyboardInterrupt:
        pass
