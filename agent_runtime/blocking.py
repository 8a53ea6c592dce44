"""One blocking call to shoal-runtimed over its unix socket, with the client's errors.

``RuntimeClient`` (agent_runtime.api) sends every call through ``open_call``. It imports only
json, agent_runtime.unixhttp and the error classes (no dataclasses, no typed results), so the
CLI's click-free ``shoal run`` (shoal/cli/run_fast.py) makes its calls through it without loading
the typed API, a good part of a short command's start-up (docs/front-door.md).
"""

from __future__ import annotations

import json
import os
TYPE_CHECKING = False   # typing is not imported at run time: `shoal run` does not need it (docs/front-door.md)
if TYPE_CHECKING:
    from typing import BinaryIO

from agent_runtime import unixhttp
from agent_runtime.errors import DeadlineExceeded, Unavailable, error_for_status

DEFAULT_SOCKET = "/run/shoal/runtimed.sock"


def default_socket() -> str:
    """SHOAL_RUNTIME_HOST (unix:///path), else runtimed.sock beside SHOAL_HOST's socket, else /run/shoal."""
    host = os.environ.get("SHOAL_RUNTIME_HOST")
    if host:
        return host[len("unix://"):] if host.startswith("unix://") else host
    shoal_host = os.environ.get("SHOAL_HOST")
    if shoal_host:
        path = shoal_host[len("unix://"):] if shoal_host.startswith("unix://") else shoal_host
        return os.path.join(os.path.dirname(path), "runtimed.sock")
    return DEFAULT_SOCKET


def raise_for(status: int, payload: bytes) -> None:
    """Raise the error the server's answer (``{"message": ...}``, status >= 400) stands for."""
    try:
        message = json.loads(payload).get("message", "")
    except ValueError:
        message = payload.decode("utf-8", "replace")
    raise error_for_status(status, message or f"HTTP {status}")


def open_call(socket_path: str, timeout: float | None, method: str, url: str, what: str,
              body: bytes | BinaryIO | None = None,
              headers: dict[str, str] | None = None) -> tuple[unixhttp.Connection, unixhttp.Response]:
    """Send the request; the answer's status line and headers are read, its body is the caller's
    (close the connection). ``what`` names the call in errors (``POST /containers/ID/start``):
    Unavailable when runtimed cannot be reached or drops the connection, DeadlineExceeded when it
    does not answer within ``timeout``, the server's error for a status >= 400."""
    conn = unixhttp.Connection(socket_path, timeout)
    try:
        conn.connect()
    except OSError as exc:
        raise Unavailable(f"cannot connect to shoal-runtimed at {socket_path}: {exc.strerror}") from exc
    try:
        resp = conn.request(method, url, body=body, headers=headers)
    except TimeoutError:
        conn.close()
        raise DeadlineExceeded(f"shoal-runtimed did not answer {what} within {timeout:g} s") from None
    except (ConnectionError, unixhttp.ProtocolError) as exc:
        conn.close()
        raise Unavailable(f"shoal-runtimed at {socket_path} dropped the connection during {what}: {exc}") from exc
    if resp.status >= 400:
        payload = resp.read()
        conn.close()
        raise_for(resp.status, payload)
    return conn, resp
