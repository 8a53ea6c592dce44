"""`shoal ui`: a local browser's way to the page shoald serves on its root-only unix socket.

Like `kubectl proxy`: an HTTP server on a loopback address that forwards GET requests to the
socket and streams the answers back (the event stream too). Whoever can open the socket (root)
decides who may see the page by where they listen: a non-loopback address is refused unless
forced, and requests whose Host header is not the listen address are refused (a web page in the
same browser cannot reach the bridge through a rebound DNS name). Only GET and HEAD are forwarded.
"""
from __future__ import annotations

import asyncio
import ipaddress
import socket
from pathlib import Path
from typing import Callable

import aiohttp
from aiohttp import web

CONNECT_TIMEOUT = 5.0
HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding"}


class BridgeError(Exception):
    """A listen address or socket `shoal ui` cannot use; the message says which and why."""


def parse_listen(text: str, allow_non_loopback: bool) -> tuple[str, int]:
    """IP:PORT (IPv6 in brackets) or PORT alone (127.0.0.1); loopback only unless allowed."""
    host, port_text = "127.0.0.1", text
    if ":" in text:
        host, _, port_text = text.rpartition(":")
        host = host.strip("[]")
    try:
        port = int(port_text)
        address = ipaddress.ip_address(host or "127.0.0.1")
    except ValueError:
        raise BridgeError(f"invalid listen address {text!r}: expected IP:PORT, e.g. 127.0.0.1:8080") from None
    if not 0 <= port <= 65535:
        raise BridgeError(f"invalid listen address {text!r}: port out of range")
    if not address.is_loopback and not allow_non_loopback:
        raise BridgeError(f"refusing to serve the cluster's page on {address}: it is not a loopback address "
                          "and anyone who reaches it sees the cluster without authentication "
                          "(use --allow-non-loopback to do it anyway)")
    return str(address), port


def check_socket(path: Path) -> None:
    """Fail early, naming the socket, when shoald's UI socket cannot be opened."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(CONNECT_TIMEOUT)
        try:
            sock.connect(str(path))
        except PermissionError:
            raise BridgeError(f"permission denied on {path}: the page is for root, as the API is") from None
        except OSError as err:
            raise BridgeError(f"cannot connect to the Shoal web page at unix://{path}: {err.strerror or err}. "
                              "Is shoald running (with --ui-socket)?") from None


def allowed_hosts(host: str, port: int) -> set[str]:
    names = {host, f"[{host}]"} | ({"localhost"} if ipaddress.ip_address(host).is_loopback else set())
    return {f"{name}:{port}" for name in names}


def make_app(path: Path, hosts: Callable[[], set[str]], allow_any_host: bool = False) -> web.Application:
    session: dict[str, aiohttp.ClientSession] = {}

    async def forward(request: web.Request) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD"):
            raise web.HTTPMethodNotAllowed(request.method, ["GET", "HEAD"])
        if not allow_any_host and request.host not in hosts():
            raise web.HTTPForbidden(text=f"Host {request.host!r} is not this bridge's address")
        client = session["client"]
        try:
            upstream = await client.request(request.method, f"http://shoald{request.rel_url}",
                                            headers={"Accept": request.headers.get("Accept", "*/*")})
        except (aiohttp.ClientError, asyncio.TimeoutError) as err:
            raise web.HTTPBadGateway(text=f"cannot reach shoald's web page at unix://{path}: {err}") from None
        async with upstream:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason,
                                          headers={k: v for k, v in upstream.headers.items()
                                                   if k.lower() not in HOP_HEADERS})
            await response.prepare(request)
            try:
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
            except (aiohttp.ClientError, ConnectionResetError):
                pass   # shoald or the browser went away; the browser's EventSource reconnects
            return response

    async def open_session(app: web.Application) -> None:
        session["client"] = aiohttp.ClientSession(
            connector=aiohttp.UnixConnector(path=str(path)),
            timeout=aiohttp.ClientTimeout(total=None, connect=CONNECT_TIMEOUT, sock_connect=CONNECT_TIMEOUT),
            auto_decompress=False)

    async def close_session(app: web.Application) -> None:
        await session["client"].close()

    app = web.Application()
    app.on_startup.append(open_session)
    app.on_cleanup.append(close_session)
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


async def serve(path: Path, host: str, port: int, ready: Callable[[str], None],
                allow_any_host: bool = False) -> None:
    """Serve until cancelled; ``ready`` gets the URL once listening (the port chosen if 0)."""
    bound: set[str] = set()
    runner = web.AppRunner(make_app(path, lambda: bound, allow_any_host), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as err:
            raise BridgeError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        actual = sockets[0].getsockname()[1] if sockets else port
        bound.update(allowed_hosts(host, actual))
        shown = f"[{host}]" if ":" in host else host
        ready(f"http://{shown}:{actual}/")
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
