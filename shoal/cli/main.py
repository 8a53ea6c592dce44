"""The ``shoal`` command: Docker-shaped commands for a Shoal swarm and its nodes."""

from __future__ import annotations

import importlib

import click

from shoal import __version__
from shoal.cli.client import Client

# Each module exposes register(cli); optional areas are skipped if not installed.
_MODULES = ["swarm", "nodes", "images", "containers", "services", "service_logs", "networks", "stacks", "secrets", "system"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-H", "--host", default=None, envvar="SHOAL_HOST",
              help="Daemon socket to connect to (default unix:///run/shoal/shoal.sock)")
@click.version_option(__version__, "-v", "--version", prog_name="shoal")
@click.pass_context
def cli(ctx: click.Context, host: str | None) -> None:
    """A Swarm-style container orchestrator."""
    ctx.obj = Client(host)


for _name in _MODULES:
    try:
        _module = importlib.import_module(f"shoal.cli.{_name}")
    except ModuleNotFoundError as _err:
        if _err.name != f"shoal.cli.{_name}":
            raise
        continue
    _module.register(cli)


def main() -> None:
    cli(prog_name="shoal")


if __name__ == "__main__":
    main()
