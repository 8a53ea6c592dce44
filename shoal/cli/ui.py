"""shoal ui: open the cluster's web page in a local browser (shoal.ui.bridge, docs/web-ui.md)."""
from __future__ import annotations

from pathlib import Path

import click

from shoal.cli.client import socket_path


def register(cli: click.Group) -> None:
    cli.add_command(ui)


def default_ui_socket(host: str | None) -> Path:
    """shoald's default: ui.sock next to its API socket (-H/SHOAL_HOST)."""
    return Path(socket_path(host)).parent / "ui.sock"


@click.command("ui")
@click.option("--listen", default="127.0.0.1:8080", show_default=True,
              help="Address to serve the page on (IP:PORT; port 0 picks one)")
@click.option("--ui-socket", default=None, type=click.Path(path_type=Path),
              help="shoald's web page socket (default: ui.sock next to the daemon socket)")
@click.option("--allow-non-loopback", is_flag=True,
              help="Serve on a non-loopback address: anyone reaching it sees the cluster")
@click.pass_obj
def ui(client, listen: str, ui_socket: Path | None, allow_non_loopback: bool) -> None:
    """Serve the cluster's live web page to a local browser."""
    import asyncio

    from shoal.ui.bridge import BridgeError, check_socket, parse_listen, serve   # aiohttp: only for `shoal ui`
    path = ui_socket or default_ui_socket(client.host)
    try:
        host, port = parse_listen(listen, allow_non_loopback)
        check_socket(path)
    except BridgeError as err:
        raise click.ClickException(str(err)) from None

    def ready(url: str) -> None:
        click.echo(f"Serving the cluster's web page on {url} (Ctrl-C to stop)", nl=True)

    try:
        asyncio.run(serve(path, host, port, ready, allow_any_host=allow_non_loopback))
    except BridgeError as err:
        raise click.ClickException(str(err)) from None
    except KeyboardInterrupt:
        pass
