"""The `shoal-lab` command: build, inspect, disturb and remove lab clusters on this machine."""
from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any, Callable

import click
from rich.console import Console
from rich.table import Table

from shoal.lab.errors import LabError
from shoal.lab.lab import READY_TIMEOUT, Lab


class _LabGroup(click.Group):
    """Turns LabError into a one-line `Error: ...` and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LabError as exc:
            raise click.ClickException(str(exc)) from exc


def _progress(message: str) -> None:
    click.echo(f"shoal-lab: {message}", err=True)


def _lab(name: str) -> Lab:
    if os.geteuid() != 0:
        raise click.ClickException("shoal-lab needs root (it creates network namespaces and cgroups)")
    return Lab(name, progress=_progress)


def name_option(fn: Callable) -> Callable:
    return click.option("--name", "name", default="lab", show_default=True, envvar="SHOAL_LAB_NAME",
                        help="Which lab (several can run side by side).")(fn)


@click.group(cls=_LabGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--log-level", default="warning", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]), help="shoal-lab's own logging.")
def cli(log_level: str) -> None:
    """One-machine Shoal clusters: every host is a network namespace on a shared bridge."""
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")


@cli.command()
@name_option
@click.option("--managers", default=3, show_default=True, type=click.IntRange(min=1))
@click.option("--workers", default=2, show_default=True, type=click.IntRange(min=0))
@click.option("--no-cluster", is_flag=True,
              help="Start no shoald and form no swarm: hosts, registry and runtimeds only (for debugging).")
@click.option("--no-runtime", is_flag=True, help="Start no shoal-runtimed.")
@click.option("--daemon-log-level", default=None, help="--log-level passed to shoald and shoal-runtimed.")
@click.option("--timeout", default=READY_TIMEOUT, show_default=True, type=float,
              help="Seconds to wait for every node to be Ready.")
def up(name: str, managers: int, workers: int, no_cluster: bool, no_runtime: bool,
       daemon_log_level: str | None, timeout: float) -> None:
    """Build a lab and form its swarm."""
    lab = _lab(name).up(managers, workers, cluster=not no_cluster, runtime=not no_runtime,
                        log_level=daemon_log_level, timeout=timeout)
    status = lab.status()
    _print_status(status)
    flag = "" if name == "lab" else f" --name {name}"
    click.echo(f"\nLab {name} is up: {managers} managers, {workers} workers in {status['network']}, "
               f"registry {status['registry']}. Try:")
    if not no_cluster:
        click.echo(f"  shoal-lab exec{flag} manager1 -- shoal node ls")
        click.echo(f"  shoal-lab kill{flag} manager1; shoal-lab start{flag} manager1")
    click.echo(f"  shoal-lab exec{flag} worker1 -- busybox wget -qO- http://{status['registry']}/v2/_catalog"
               if workers else f"  shoal-lab exec{flag} manager1 -- ip addr")
    click.echo(f"  shoal-lab down{flag}")


@cli.command()
@name_option
def down(name: str) -> None:
    """Stop every process of the lab and remove its namespaces, mounts, cgroups and files."""
    _lab(name).down()


@cli.command()
@name_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def status(name: str, as_json: bool) -> None:
    """Show the lab's registry and hosts."""
    state = _lab(name).status()
    if as_json:
        click.echo(json.dumps(state, indent=2))
    else:
        _print_status(state)


@cli.command("ls")
def list_labs() -> None:
    """List the labs that are up."""
    for name in Lab.names():
        click.echo(name)


def _print_status(state: dict) -> None:
    registry_state = "running" if state["registry_running"] else "NOT running"
    table = Table(title=f"lab {state['name']} · {state['network']} · registry {state['registry']} "
                        f"({registry_state})")
    for column in ("HOST", "ROLE", "ADDRESS", "SHOALD", "RUNTIMED", "LINK"):
        table.add_column(column)
    for host in state["hosts"]:
        table.add_row(
            host["name"], host["role"], host["address"],
            _process_cell(host["pid"], host["running"]),
            _process_cell(host["runtime_pid"], host["runtime_running"]),
            "cut" if host["partitioned"] else "up",
        )
    Console().print(table)


def _process_cell(pid: int | None, running: bool) -> str:
    if pid is None:
        return "-"
    return f"{pid}" if running else f"{pid} (exited)"


@cli.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@name_option
@click.argument("host")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def exec(name: str, host: str, command: tuple[str, ...]) -> None:
    """Run COMMAND in HOST's network namespace with SHOAL_HOST set to its shoald
    (shoal-lab exec manager1 -- shoal node ls). Exits with COMMAND's status."""
    lab = _lab(name)
    if command and command[0] == "--":  # click keeps the separator when options are not interspersed
        command = command[1:]
    if not command:
        raise click.UsageError("no COMMAND given")
    argv = lab.exec_argv(host, command)
    env = lab.host_env(host)
    sys.stdout.flush()
    os.execvpe(argv[0], argv, env)


def _host_command(verb: str, doc: str) -> None:
    @cli.command(verb, help=doc)
    @name_option
    @click.argument("host")
    def command(name: str, host: str) -> None:
        getattr(_lab(name), verb)(host)


_host_command("kill", "SIGKILL HOST's shoald (its runtimed and containers stay).")
_host_command("stop", "Stop HOST's shoald and shoal-runtimed (SIGTERM, SIGKILL after a grace).")
_host_command("start", "Start HOST's shoal-runtimed and shoald again from their state.")
_host_command("partition", "Cut HOST off the lab network (its processes keep running).")
_host_command("heal", "Reconnect a partitioned HOST.")


def main(argv: list[str] | None = None) -> None:
    """Console entry point `shoal-lab`."""
    cli.main(args=argv, prog_name="shoal-lab")
