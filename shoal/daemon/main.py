"""shoald's command line: arguments, logging, and the exit status systemd acts on."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys
from pathlib import Path

from agent_runtime import logformat
from shoal.daemon.config import parse_addr
from shoal.daemon.roles import Daemon
from shoal.metrics import serve_metrics


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The arguments, with logging configured from them (an invalid level exits 2 naming it)."""
    parser = argparse.ArgumentParser(prog="shoald", description="The Shoal node daemon.")
    parser.add_argument("--state-dir", default="/var/lib/shoal/state", type=Path)
    parser.add_argument("--socket", default="/run/shoal/shoal.sock", type=Path)
    parser.add_argument("--runtime-socket", default=None, type=Path)
    parser.add_argument("--hostname", default=socket.gethostname())
    parser.add_argument("--metrics-addr", default="", help="IP:PORT for /metrics (Prometheus); off if empty")
    parser.add_argument("--insecure-registry", action="append", default=[],
                        help="registry (HOST:PORT or CIDR) to reach over plain HTTP; repeatable")
    parser.add_argument("--log-level", default=os.environ.get("SHOAL_LOG_LEVEL", "warning"),
                        help="debug, info, warning or error")
    parser.add_argument("--log-format", default=os.environ.get("SHOAL_LOG_FORMAT", "text"),
                        choices=logformat.FORMATS, help="text (logfmt) or json")
    args = parser.parse_args(argv)
    try:
        logformat.configure(args.log_level, args.log_format)
    except ValueError as exc:
        parser.error(str(exc))
    return args


def main(argv: list[str] | None = None) -> None:
    """Run until SIGTERM/SIGINT (exit 0) or until a role fails beyond recovery (exit 1)."""
    args = parse_args(argv)
    daemon = Daemon(args.state_dir, args.socket, args.hostname, args.runtime_socket,
                    tuple(args.insecure_registry))
    if args.metrics_addr:
        host, port = parse_addr(args.metrics_addr, 9323, "metrics address")
        serve_metrics(daemon, host, port)
    failure = asyncio.run(daemon.run())
    if failure is not None:
        logging.getLogger("shoald").error("exiting: %s", failure)
        sys.exit(1)


if __name__ == "__main__":
    main()
