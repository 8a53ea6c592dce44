"""shoald's command line: arguments, logging, and the exit status systemd acts on."""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import sys
from pathlib import Path
from typing import Callable

from agent_runtime import daemonconfig, logformat
from common import gctune, genericresource
from shoal import dockerapi
from shoal.daemon import remote, remotecert
from shoal.daemon.config import DaemonError, parse_addr
from shoal.daemon.roles import Daemon
from shoal.metrics import serve_metrics
from shoal.ui import server as ui_server


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The arguments, with logging configured from them (an invalid level exits 2 naming it)."""
    parser = argparse.ArgumentParser(prog="shoald", description="The Shoal node daemon.")
    daemonconfig.add_arguments(parser)
    parser.add_argument("--state-dir", default=None, type=Path,
                        help="default: <data-root>/state, data-root from the configuration file or /var/lib/shoal")
    parser.add_argument("--socket", default="/run/shoal/shoal.sock", type=Path)
    parser.add_argument("--runtime-socket", default=None, type=Path)
    parser.add_argument("--docker-socket", default=None,
                        help="unix socket for the Docker Engine API (default: docker.sock beside --socket, "
                             "/run/shoal/docker.sock); empty: not served")
    parser.add_argument("--ui-socket", default=None,
                        help="root-only unix socket of the web page (`shoal ui`); default: ui.sock next to --socket; "
                             "off if empty")
    parser.add_argument("-H", "--host", action="append", default=[], dest="hosts",
                        help="tcp://IP:PORT to serve the Docker API and the ControlAPI with mutual TLS "
                             "(client certificates from `shoal swarm client-cert`; docs/remote-access.md), "
                             "or unix:///path for the Docker API socket; repeatable")
    parser.add_argument("--hostname", default=socket.gethostname())
    parser.add_argument("--metrics-addr", default=None, help="IP:PORT for /metrics (Prometheus); off if empty")
    parser.add_argument("--insecure-registry", action="append", default=[],
                        help="registry (HOST:PORT or CIDR) to reach over plain HTTP; repeatable")
    parser.add_argument("--node-generic-resource", action="append", default=[],
                        help="advertise a generic resource: KIND=COUNT (gpu=2) or KIND=NAME (SSD=ssd1); repeatable")
    args = parser.parse_args(argv)
    try:
        args.config_path, config = daemonconfig.load(args.config_file)
    except daemonconfig.ConfigError as exc:
        parser.exit(1, f"shoald: {exc}\n")
    args.config = config
    args.from_flags = {key for key, value in (("log-level", args.log_level), ("log-format", args.log_format),
                                              ("insecure-registries", args.insecure_registry)) if value}
    data_root = Path(config.get("data-root", daemonconfig.DEFAULT_DATA_ROOT))
    args.state_dir = args.state_dir or data_root / "state"
    if args.ui_socket is None:
        args.ui_socket = args.socket.parent / "ui.sock"
    args.ui_socket = Path(args.ui_socket) if args.ui_socket else None
    args.metrics_addr = daemonconfig.pick(args.metrics_addr, config, "metrics-addr", "")
    args.hosts = daemonconfig.pick(args.hosts, config, "hosts", [])
    try:
        args.tcp_hosts, unix_host = remote.parse_hosts(args.hosts)
    except DaemonError as exc:
        parser.exit(1, f"shoald: {exc}\n")
    if unix_host is not None:
        if args.docker_socket is not None and args.docker_socket != unix_host:
            parser.exit(1, f"shoald: the Docker API socket is given twice: --docker-socket {args.docker_socket} "
                           f"and --host unix://{unix_host}\n")
        args.docker_socket = unix_host
    args.insecure_registry = daemonconfig.pick(args.insecure_registry, config, "insecure-registries", [])
    resources = daemonconfig.pick(args.node_generic_resource, config, "node-generic-resources", [])
    try:
        args.node_generic_resources = tuple(genericresource.parse(resources))
    except ValueError as exc:
        parser.exit(1, f"shoald: invalid --node-generic-resource: {exc}\n")
    args.log_level = daemonconfig.pick(args.log_level, config, "log-level", "warning")
    args.log_format = daemonconfig.pick(args.log_format, config, "log-format", "text")
    try:
        logformat.configure(args.log_level, args.log_format)
    except ValueError as exc:
        parser.error(str(exc))
    return args


def reloader(args: argparse.Namespace, daemon: Daemon) -> Callable[[], None]:
    """SIGHUP: re-read the configuration file and apply what can change while running (log level
    and format, insecure registries); flags given at start still win. A broken file is reported and
    the running settings are kept."""
    log = logging.getLogger("shoald")

    def reload() -> None:
        try:
            _, config = daemonconfig.load(args.config_file)
        except daemonconfig.ConfigError as exc:
            log.error("configuration not reloaded, the running settings are kept: %s", exc)
            return
        values = daemonconfig.reloadable(config)
        level = args.log_level if "log-level" in args.from_flags else values.get("log-level", "warning")
        fmt = args.log_format if "log-format" in args.from_flags else values.get("log-format", "text")
        logformat.configure(level, fmt)
        if "insecure-registries" not in args.from_flags:
            daemon.set_insecure_registries(tuple(values.get("insecure-registries", ())))
        log.info("configuration reloaded from %s", args.config_path,
                 extra={"log_level": level, "insecure_registries": ",".join(daemon.insecure_registries)})
    return reload


async def run(daemon: Daemon, docker_socket: Path | None, ui_socket: Path | None,
              tcp_hosts: tuple[tuple[str, int], ...] = ()) -> BaseException | None:
    """The daemon, with the Docker Engine API (shoal.dockerapi) on ``docker_socket``, the web page
    of the cluster (shoal.ui.server) on ``ui_socket``, each if given, and both APIs over mutual TLS
    on ``tcp_hosts`` (shoal.daemon.remote)."""
    try:
        page = await ui_server.start(ui_server.manager_of_daemon(daemon), ui_socket) if ui_socket else None
    except OSError as err:        # names the socket; shoald exits 1 saying so
        return err
    remote_api = remote.RemoteAPI(lambda: daemon.certs.tls if daemon.certs is not None else None,
                                  daemon.socket_path, docker_socket,
                                  remotecert.own_certificate(daemon, [host for host, _ in tcp_hosts]))
    try:
        try:
            await remote_api.start(list(tcp_hosts))
        except OSError as err:    # a TCP address that cannot be bound, named
            return err
        docker_api = await dockerapi.serve(daemon, docker_socket)
        try:
            return await daemon.run()
        finally:
            await docker_api.close()
    finally:
        await remote_api.close()
        if page is not None and ui_socket is not None:
            await ui_server.stop(page, ui_socket)


def main(argv: list[str] | None = None) -> None:
    """Run until SIGTERM/SIGINT (exit 0) or until a role fails beyond recovery (exit 1)."""
    args = parse_args(argv)
    docker_socket = args.socket.parent / "docker.sock" if args.docker_socket is None else args.docker_socket
    daemon = Daemon(args.state_dir, args.socket, args.hostname, args.runtime_socket,
                    tuple(args.insecure_registry))
    daemon.generic_resources = args.node_generic_resources
    daemon.on_reload = reloader(args, daemon)
    daemon.default_address_pools = args.config.get("default-address-pools", [])
    if args.metrics_addr:
        host, port = parse_addr(args.metrics_addr, 9323, "metrics address")
        serve_metrics(daemon, host, port, str(args.runtime_socket) if args.runtime_socket else None)
    gctune.tune()       # after start-up: see common/gctune.py
    failure = asyncio.run(run(daemon, Path(docker_socket) if docker_socket else None, args.ui_socket,
                              tuple(args.tcp_hosts)))
    if failure is not None:
        logging.getLogger("shoald").error("exiting: %s", failure)
        sys.exit(1)


if __name__ == "__main__":
    main()
