"""The client's side of an attached container or exec (`shoal run -it`, `exec -it`), as docker's:

- the connection is runtimed's hijacked attach (agent_runtime/attach.py): raw bytes with a TTY,
  Docker's multiplexed frames without;
- with ``-t`` and a terminal on stdin, the terminal is put in raw mode (every key goes to the
  container, which echoes) and restored however the session ends;
- the window size is sent at the start and on every SIGWINCH;
- with a TTY, the detach keys (default ctrl-p ctrl-q, ``--detach-keys``) end the session and leave
  the process running; the end of our input half-closes the connection.

Only the standard library: `run` and `exec` stay free of heavy imports (docs/front-door.md).
"""

from __future__ import annotations

import fcntl
import os
import select
import signal
import socket
import struct
import sys
import termios
from typing import Callable

from agent_runtime.detachkeys import EscapeProxy


def window_size(fd: int = 0) -> tuple[int, int] | None:
    """(rows, columns) of the terminal on ``fd``, or None."""
    for candidate in (fd, 1):
        try:
            rows, columns = struct.unpack("HHHH", fcntl.ioctl(candidate, termios.TIOCGWINSZ, b"\0" * 8))[:2]
        except OSError:
            continue
        if rows and columns:
            return rows, columns
    return None


class RawMode:
    """The terminal on ``fd`` in raw mode for the ``with`` block (as docker's SetRawTerminal:
    no echo, no line editing, no signals from keys, no output processing); restored on exit."""

    def __init__(self, fd: int, enabled: bool) -> None:
        self.fd = fd
        self.saved = termios.tcgetattr(fd) if enabled and os.isatty(fd) else None

    def __enter__(self) -> "RawMode":
        if self.saved is not None:
            import tty
            tty.setraw(self.fd, termios.TCSANOW)
        return self

    def __exit__(self, *exc) -> None:
        if self.saved is not None:
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)


class Demux:
    """Docker's multiplexed stream -> stdout/stderr."""

    def __init__(self) -> None:
        self.buffer = b""

    def feed(self, data: bytes) -> None:
        self.buffer += data
        while len(self.buffer) >= 8:
            stream, size = struct.unpack(">BxxxI", self.buffer[:8])
            if len(self.buffer) < 8 + size:
                return
            payload, self.buffer = self.buffer[8:8 + size], self.buffer[8 + size:]
            _write_all(2 if stream == 2 else 1, payload)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            select.select([], [fd], [])


def session(upgraded, tty: bool, stdin: bool, detach_keys: bytes,
            resize: Callable[[int, int], None] | None = None) -> bool:
    """Copy between this terminal and the hijacked connection until the stream ends (False) or the
    user detaches (True). ``resize(rows, columns)`` is called at once and on SIGWINCH (with a TTY)."""
    sock: socket.socket = upgraded.sock
    escape = EscapeProxy(detach_keys if tty else b"")
    demux = None if tty else Demux()
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    old_handler = None
    if tty and resize is not None:
        old_handler = signal.signal(signal.SIGWINCH, lambda *_: os.write(wake_w, b"w"))
    reading_stdin = stdin
    try:
        with RawMode(0, tty and stdin):
            if tty and resize is not None:
                _resize(resize)
            if upgraded.head:
                _output(upgraded.head, demux)
            while True:
                watched = [sock, wake_r] + ([0] if reading_stdin else [])
                try:
                    ready, _, _ = select.select(watched, [], [])
                except InterruptedError:
                    continue
                if wake_r in ready:
                    while True:
                        try:
                            if not os.read(wake_r, 64):
                                break
                        except BlockingIOError:
                            break
                    if resize is not None:
                        _resize(resize)
                if 0 in ready:
                    data = os.read(0, 32768)
                    if not data:
                        reading_stdin = False
                        try:
                            sock.shutdown(socket.SHUT_WR)
                        except OSError:
                            pass
                    else:
                        data, detached = escape.feed(data)
                        if data:
                            sock.sendall(data)
                        if detached:
                            return True
                if sock in ready:
                    try:
                        data = sock.recv(65536)
                    except ConnectionResetError:
                        data = b""
                    if not data:
                        return False
                    _output(data, demux)
    finally:
        if old_handler is not None:
            signal.signal(signal.SIGWINCH, old_handler)
        os.close(wake_r)
        os.close(wake_w)
        sock.close()


def _output(data: bytes, demux: Demux | None) -> None:
    if demux is None:
        _write_all(1, data)
    else:
        demux.feed(data)


def _resize(resize: Callable[[int, int], None]) -> None:
    size = window_size()
    if size is not None:
        try:
            resize(*size)
        except Exception as exc:      # docker: a failed resize is a debug message, the session goes on
            print(f"shoal: resizing the terminal failed: {exc}", file=sys.stderr)


def check_tty(attach_stdin: bool, tty: bool) -> str | None:
    """docker's CheckTty: input attached to a TTY needs a terminal on stdin."""
    if attach_stdin and tty and not os.isatty(0):
        return "the input device is not a TTY"
    return None


def run_attached(client, cid: str, start: bool, stdin: bool, tty: bool, detach_keys: bytes, remove: bool) -> int:
    """`shoal run` with -i or -t: listen for the exit, attach, start, copy until the container exits
    (its exit code is returned) or the user detaches (0; the container runs on, and with --rm
    runtimed removes it once it exits). ``start`` False: it was started already (swarm network)."""
    from agent_runtime.api import ShoalRuntimeError
    waiter = None
    try:
        waiter = client.wait_attached(cid)
        upgraded = client.attach(cid, stdin=stdin)
        if start:
            client.start(cid)
    except ShoalRuntimeError as exc:
        code = 125
        try:
            code = client.inspect(cid).state.exit_code or 125
            if remove:
                client.remove(cid, force=True)
        except ShoalRuntimeError:
            pass
        print(f"Error: {exc}", file=sys.stderr)
        return code if code in (126, 127) else 125
    resize = (lambda rows, columns: client.resize(cid, rows, columns)) if tty else None
    if session(upgraded, tty, stdin, detach_keys, resize):
        return 0
    code = waiter().status_code
    if remove:       # runtimed's AutoRemove is on it; removing it here too means it is gone when run returns
        try:
            client.remove(cid, force=True)
        except ShoalRuntimeError:
            pass
    return code


def attach_running(client, cid: str, stdin: bool, tty: bool, detach_keys: bytes) -> int:
    """`shoal attach`: the container's exit code once it exits, 0 after a detach."""
    waiter = client.wait_attached(cid)
    upgraded = client.attach(cid, stdin=stdin)
    resize = (lambda rows, columns: client.resize(cid, rows, columns)) if tty else None
    if session(upgraded, tty, stdin, detach_keys, resize):
        return 0
    return waiter().status_code


def exec_attached(client, ref: str, cmd: list[str], env: list[str], user: str, workdir: str, stdin: bool,
                  tty: bool, detach_keys: bytes) -> int:
    """`shoal exec -i/-t`: an exec session in runtimed, attached; its exit code (0 after a detach)."""
    exec_id = client.exec_create(ref, cmd, env=env, user=user, workdir=workdir, tty=tty, stdin=stdin,
                                 console_size=window_size() if tty else None)
    upgraded = client.exec_start(exec_id)
    resize = (lambda rows, columns: client.exec_resize(exec_id, rows, columns)) if tty else None
    if session(upgraded, tty, stdin, detach_keys, resize):
        return 0
    code = client.exec_inspect(exec_id).get("ExitCode")
    return 126 if code is None else code
