"""Interactive containers and exec on runtimed's API: Docker's attach protocol.

Routes (Docker's Engine API shapes; the CLI, and shoald's Docker API, speak them unchanged):

- ``POST /containers/{id}/attach?stream=1&stdin=1&stdout=1&stderr=1&detachKeys=…``: the hijacked
  connection (``Connection: Upgrade``, ``Upgrade: tcp``, then ``101 UPGRADED``). Output is the raw
  stream for a TTY container, else Docker's multiplexed frames (8-byte header: stream 1 or 2,
  three zero bytes, big-endian length). The client's bytes go to the workload's input. An attach
  made before the start sees everything; the stream ends when the container exits.
- ``POST /containers/{id}/resize?h=ROWS&w=COLUMNS``: the pty's window size (SIGWINCH inside).
- ``POST /containers/{id}/execs`` (body: Docker's ExecConfig: Cmd, Env, User, WorkingDir, Tty,
  AttachStdin, ConsoleSize) -> ``{"Id"}``; ``POST /exec/{id}/start`` hijacks as attach does and runs
  the command (with its own pty for Tty); ``GET /exec/{id}/json`` gives ``Running`` and ``ExitCode``;
  ``POST /exec/{id}/resize``. (``POST /containers/{id}/exec`` stays the one-shot captured exec.)

Input rules are moby's (container/stream/attach.go): with a TTY the detach keys (default ctrl-p
ctrl-q) end the attach and leave the process running; when the client's input ends, a StdinOnce
container without TTY gets end-of-file on its stdin, any other attach ends.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import struct
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from agent_runtime import process
from agent_runtime.detachkeys import EscapeProxy, parse_detach_keys
from agent_runtime.errors import Conflict, InvalidArgument, NotFound
from agent_runtime.httpbody import json_body, query_flag

log = logging.getLogger(__name__)

RAW = "application/vnd.docker.raw-stream"
MULTIPLEXED = "application/vnd.docker.multiplexed-stream"
STREAMS = {"stdin": 0, "stdout": 1, "stderr": 2}
EXEC_KEEP = 1000          # finished exec sessions kept for GET /exec/{id}/json
INPUT_HIGH, INPUT_LOW = 64, 16   # queued input chunks at which reading the client pauses / resumes


def frame(stream: int, data: bytes) -> bytes:
    """One frame of Docker's multiplexed stream."""
    return struct.pack(">BxxxI", stream, len(data)) + data


# ---- the server side of a hijacked connection (aiohttp) -----------------------------------------

class Hijacked:
    """A request's connection after ``101 UPGRADED``: ``read()`` the client's bytes (b"" once it
    half-closed or went away), ``write()`` ours. The client may half-close (the docker CLI does when it
    has no input), which must not close our side: the output goes on."""

    def __init__(self, request: web.Request, response: web.StreamResponse) -> None:
        self.response = response
        self.transport = request.transport
        self.input: asyncio.Queue[bytes] = asyncio.Queue()
        self.closed = asyncio.Event()
        self._paused = False

    def _take(self, request: web.Request) -> None:
        # Bytes the client sent right behind the request are buffered by aiohttp: a payload parser
        # set now receives them; everything later arrives through our protocol.
        request.protocol.set_parser(_Sink(self))       # type: ignore[union-attr]
        assert self.transport is not None
        self.transport.set_protocol(_Protocol(self.transport.get_protocol(), self))

    def _data(self, data: bytes) -> None:
        if data:
            self.input.put_nowait(data)
            if not self._paused and self.input.qsize() >= INPUT_HIGH and self.transport is not None:
                self._paused = True
                self.transport.pause_reading()

    async def read(self) -> bytes:
        data = await self.input.get()
        if self._paused and self.input.qsize() <= INPUT_LOW and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return data

    async def write(self, data: bytes) -> None:
        if not self.closed.is_set():
            try:
                await self.response.write(data)
            except ConnectionError:       # the client went away: nothing more to write
                self.closed.set()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


class _Sink:
    """aiohttp's payload-parser interface, to receive the bytes it buffered behind the request."""

    def __init__(self, hijacked: Hijacked) -> None:
        self.hijacked = hijacked

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self.hijacked._data(bytes(data))
        return False, b""

    def feed_eof(self) -> None:
        pass


class _Protocol(asyncio.Protocol):
    """The connection's protocol after the hijack: input to the queue, a half-close is the end of
    the input (not of the connection); write flow control and the loss go to aiohttp's protocol."""

    def __init__(self, inner: Any, hijacked: Hijacked) -> None:
        self.inner, self.hijacked = inner, hijacked

    def data_received(self, data: bytes) -> None:
        self.hijacked._data(data)

    def eof_received(self) -> bool:
        self.hijacked.input.put_nowait(b"")
        return True

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.hijacked.closed.set()
        self.hijacked.input.put_nowait(b"")
        self.inner.connection_lost(exc)


async def hijack(request: web.Request, content_type: str) -> Hijacked:
    """Answer ``101 UPGRADED`` (Docker's hijack; a client that did not ask to upgrade gets a plain
    200 with the stream as its body) and take the connection over."""
    upgrade = request.headers.get("Upgrade", "").lower() == "tcp"
    response = web.StreamResponse(status=101 if upgrade else 200, reason="UPGRADED" if upgrade else None,
                                  headers={"Content-Type": content_type,
                                           **({"Connection": "Upgrade", "Upgrade": "tcp"} if upgrade else {})})
    response.force_close()
    hijacked = Hijacked(request, response)
    if upgrade:
        hijacked._take(request)
    else:
        hijacked.input.put_nowait(b"")
    await response.prepare(request)
    return hijacked


async def write_input(fd: int, data: bytes) -> None:
    """All of ``data`` to a non-blocking fd (a pipe, an exec's pty), waiting while it is full."""
    loop = asyncio.get_running_loop()
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            writable = loop.create_future()
            loop.add_writer(fd, lambda: writable.done() or writable.set_result(None))
            try:
                await writable
            finally:
                loop.remove_writer(fd)


def _write_blocking(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class Input:
    """This attach's own duplicate of the workload's input. A container's pty master is blocking
    (the relay reads the same open file and would die of EAGAIN), so writes to it run in a thread;
    the fd is closed only once no write is in flight (a number closed under a writing thread could
    be reused by another file)."""

    def __init__(self, fd: int = -1, source=None) -> None:
        self.fd = fd
        self.source = source      # for an attach made before the start: waits for the input, returns its fd
        self._busy: asyncio.Future | None = None
        self._closed = False

    async def write(self, data: bytes) -> None:
        if self.fd < 0 and self.source is not None and not self._closed:
            fd = await self.source()
            if fd >= 0 and not self._closed:
                self.fd = os.dup(fd)
        if self.fd < 0:
            raise BrokenPipeError("the input is closed")
        if not os.get_blocking(self.fd):
            await write_input(self.fd, data)
            return
        self._busy = asyncio.get_running_loop().run_in_executor(None, _write_blocking, self.fd, bytes(data))
        await asyncio.shield(self._busy)

    def close(self) -> None:
        self._closed = True
        if self.fd < 0:
            return
        fd, self.fd = self.fd, -1
        if self._busy is not None and not self._busy.done():
            self._busy.add_done_callback(lambda _f: os.close(fd))
        else:
            os.close(fd)


class Output:
    """One attached client's output: what the process writes, queued as it is read (the pump is
    a loop callback and must not wait for a slow client), then None at the end."""

    def __init__(self, tty: bool, stdout: bool = True, stderr: bool = True) -> None:
        self.tty = tty
        self.wanted = {"stdout": stdout, "stderr": stderr}
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()

    def output(self, stream: str, data: bytes) -> None:
        if self.wanted.get(stream):
            self.queue.put_nowait(data if self.tty else frame(STREAMS[stream], data))

    def ended(self) -> None:
        self.queue.put_nowait(None)


async def _pump_input(hijacked: Hijacked, target: Input, tty: bool, keys: bytes, close_on_eof: bool,
                      detached: asyncio.Event, close_input) -> None:
    """The client's bytes to ``fd`` until the client's input ends or it detaches. With a TTY the
    detach keys are looked for; at the end of input, ``close_input()`` if ``close_on_eof``, else
    the attach ends (``detached`` is set for both: the output stops)."""
    escape = EscapeProxy(keys if tty else b"")
    try:
        while data := await hijacked.read():
            data, detach = escape.feed(data)
            if data:
                await target.write(data)
            if detach:
                detached.set()
                return
        if close_on_eof:
            close_input()
        else:
            detached.set()
    except OSError as exc:    # the process closed its input or went away: stop forwarding
        log.debug("attached input ends: %s", exc)


async def stream_session(hijacked: Hijacked, out: Output, target: Input | None, tty: bool, keys: bytes,
                         close_on_eof: bool, close_input) -> bool:
    """Copy output to the client and the client's input to ``target`` (None: no input) until the
    output ends, the client detaches or goes away. Returns True when it detached."""
    detached = asyncio.Event()
    feeder = asyncio.create_task(_pump_input(hijacked, target, tty, keys, close_on_eof, detached, close_input)) \
        if target is not None else None
    stop = asyncio.create_task(detached.wait())
    gone = asyncio.create_task(hijacked.closed.wait())
    try:
        while True:
            get = asyncio.create_task(out.queue.get())
            done, _ = await asyncio.wait({get, stop, gone}, return_when=asyncio.FIRST_COMPLETED)
            if get not in done:
                get.cancel()
                return stop in done
            data = get.result()
            if data is None:
                return False
            await hijacked.write(data)
    finally:
        for task in (feeder, stop, gone):
            if task is not None:
                task.cancel()


# ---- exec sessions ------------------------------------------------------------------------------

@dataclass
class ExecSession:
    id: str
    container_id: str
    cmd: list[str]
    env: list[str]
    user: str
    workdir: str
    tty: bool
    open_stdin: bool
    console_size: list[int]
    running: bool = False
    started: bool = False
    exit_code: int | None = None
    pid: int = 0
    master: int = -1          # the exec's pty (tty), for resize
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def json(self) -> dict:
        return {"ID": self.id, "ContainerID": self.container_id, "Running": self.running,
                "ExitCode": self.exit_code, "Pid": self.pid, "OpenStdin": self.open_stdin,
                "OpenStdout": True, "OpenStderr": True, "CanRemove": False,
                "ProcessConfig": {"entrypoint": self.cmd[0] if self.cmd else "", "arguments": self.cmd[1:],
                                  "privileged": False, "tty": self.tty, "user": self.user}}


def _int_query(request: web.Request, name: str) -> int:
    text = request.query.get(name, "")
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise InvalidArgument(f"invalid {name}={text!r}: a window size of 1 to 65535")
    return int(text)


class AttachAPI:
    """The routes above, on runtimed's container manager."""

    def __init__(self, manager: Any) -> None:
        self.manager = manager
        self.execs: dict[str, ExecSession] = {}
        self._finishers: set[asyncio.Task] = set()

    def add_routes(self, r: web.UrlDispatcher) -> None:
        r.add_post("/containers/{id}/attach", self.attach)
        r.add_post("/containers/{id}/resize", self.resize)
        r.add_post("/containers/{id}/execs", self.exec_create)
        r.add_post("/exec/{id}/start", self.exec_start)
        r.add_get("/exec/{id}/json", self.exec_inspect)
        r.add_post("/exec/{id}/resize", self.exec_resize)

    # ---- containers ----------------------------------------------------------------------------
    async def attach(self, request: web.Request) -> web.StreamResponse:
        c = self.manager.get(request.match_info["id"])
        keys = _detach_keys(request)
        if query_flag(request, "logs"):
            raise InvalidArgument("attach with logs=1 is not supported: use GET /containers/{id}/logs")
        stdin = query_flag(request, "stdin") and (c.spec.open_stdin or c.spec.tty)
        out = Output(c.spec.tty, query_flag(request, "stdout"), query_flag(request, "stderr"))
        c.attached.add(out)           # before the first await: no output is missed
        try:
            hijacked = await hijack(request, RAW if c.spec.tty else MULTIPLEXED)

            async def container_input() -> int:   # attached before the start: input waits for it
                while c.stdin_fd < 0 and c.state.status in ("created", "exited"):
                    await c.input_ready.wait()
                return c.stdin_fd

            target = Input(source=container_input) if stdin else None

            def close_input() -> None:     # StdinOnce: the workload reads end-of-file
                if target is not None:
                    target.close()
                if c.stdin_fd >= 0:
                    os.close(c.stdin_fd)
                    c.stdin_fd = -1

            try:
                if c.state.status == "removing":
                    out.ended()       # nothing will run again: the stream ends at once
                # created or exited: the stream waits for the (next) start, as `docker start -a`'s
                detached = await stream_session(hijacked, out, target, c.spec.tty, keys,
                                                c.spec.stdin_once and not c.spec.tty, close_input)
                if detached:
                    log.info("client detached from container %s", c.name)
            finally:
                if target is not None:
                    target.close()
            hijacked.close()
            return hijacked.response
        finally:
            c.attached.discard(out)

    async def resize(self, request: web.Request) -> web.Response:
        c = self.manager.get(request.match_info["id"])
        rows, columns = _int_query(request, "h"), _int_query(request, "w")
        if not c.spec.tty:
            raise Conflict(f"cannot resize container {c.name}: it has no TTY")
        if c.stdin_fd < 0:
            raise Conflict(f"cannot resize container {c.name}: it is not running")
        process.set_window_size(c.stdin_fd, rows, columns)
        return web.json_response({})

    # ---- exec ------------------------------------------------------------------------------------
    async def exec_create(self, request: web.Request) -> web.Response:
        body = await json_body(request)
        cmd = body.get("Cmd") or []
        if not isinstance(cmd, list) or not cmd or not all(isinstance(a, str) for a in cmd):
            raise InvalidArgument("Cmd: a non-empty list of strings")
        c = self.manager.get(request.match_info["id"])
        if c.state.status != "running":
            raise Conflict(f"cannot exec in container {c.name}: container is not running")
        size = body.get("ConsoleSize") or []
        session = ExecSession(id=secrets.token_hex(32), container_id=c.id, cmd=list(cmd),
                              env=list(body.get("Env") or []), user=body.get("User") or "",
                              workdir=body.get("WorkingDir") or "", tty=bool(body.get("Tty")),
                              open_stdin=bool(body.get("AttachStdin")),
                              console_size=[int(v) for v in size][:2] if isinstance(size, list) else [])
        self.execs[session.id] = session
        finished = [s.id for s in self.execs.values() if s.done.is_set()]
        for old in finished[:max(0, len(finished) - EXEC_KEEP)]:
            del self.execs[old]
        return web.json_response({"Id": session.id}, status=201)

    def _session(self, request: web.Request) -> ExecSession:
        session = self.execs.get(request.match_info["id"])
        if session is None:
            raise NotFound(f"No such exec instance: {request.match_info['id']}")
        return session

    async def exec_inspect(self, request: web.Request) -> web.Response:
        return web.json_response(self._session(request).json())

    async def exec_resize(self, request: web.Request) -> web.Response:
        session = self._session(request)
        rows, columns = _int_query(request, "h"), _int_query(request, "w")
        if not session.tty or session.master < 0:
            raise Conflict(f"cannot resize exec {session.id[:12]}: it has no TTY or is not running")
        process.set_window_size(session.master, rows, columns)
        return web.json_response({})

    async def exec_start(self, request: web.Request) -> web.StreamResponse:
        session = self._session(request)
        if session.started:
            raise Conflict(f"exec {session.id[:12]} has already run")
        keys = _detach_keys(request)
        session.started = True
        session.running = True
        try:
            proc, fds, input_fd = await self._spawn(session)
        except BaseException:
            session.running, session.exit_code = False, 126
            session.done.set()
            raise
        out = Output(session.tty)
        readers = self._read_output(fds, out, session.tty)
        # runs to the exit on its own: a client that detaches or goes away leaves the process running
        finisher = asyncio.create_task(self._finish(session, proc, fds, readers, out))
        self._finishers.add(finisher)
        finisher.add_done_callback(self._finishers.discard)

        target = Input(input_fd) if input_fd >= 0 else None

        def close_input() -> None:     # the client's input ended: the command reads end-of-file
            if target is not None:
                target.close()

        try:
            hijacked = await hijack(request, RAW if session.tty else MULTIPLEXED)
            await stream_session(hijacked, out, target if session.open_stdin else None, session.tty, keys,
                                 not session.tty, close_input)
            hijacked.close()
        finally:
            close_input()
            out.wanted = {}           # what it writes after a detach is not kept for anyone
        return hijacked.response

    async def _spawn(self, session: ExecSession) -> tuple[Any, dict[int, str], int]:
        """Start the exec's init.py with a pty (tty) or pipes; returns the process, the output fds
        we read (fd -> stream) and the input fd we write (-1: none)."""
        manager = self.manager
        c, spec, sync_r, sync_w = manager.exec_spec(session.container_id, session.cmd, session.env,
                                                    session.user, session.workdir, session.tty)
        os.set_blocking(sync_r, False)
        spec_path = c.dir / f"exec-{secrets.token_hex(4)}.spec"
        process.write_init_spec(spec_path, spec)
        child_fds: list[int] = [sync_w]
        try:
            if session.tty:
                master, slave = os.openpty()
                os.set_inheritable(master, False)
                child_fds.append(slave)
                if session.console_size:
                    process.set_window_size(master, *session.console_size[:2])
                stdio = (slave, slave, slave)
                fds = {master: "stdout"}
                input_fd = os.dup(master)
                session.master = master
            else:
                out_r, out_w = os.pipe2(os.O_CLOEXEC)
                err_r, err_w = os.pipe2(os.O_CLOEXEC)
                child_fds += [out_w, err_w]
                if session.open_stdin:
                    in_r, in_w = os.pipe2(os.O_CLOEXEC)
                    child_fds.append(in_r)
                    input_fd = in_w
                else:
                    in_r, input_fd = asyncio.subprocess.DEVNULL, -1
                stdio = (in_r, out_w, err_w)
                fds = {out_r: "stdout", err_r: "stderr"}
            for fd in list(fds) + ([input_fd] if input_fd >= 0 else []):
                os.set_blocking(fd, False)
            proc = await asyncio.create_subprocess_exec(
                manager.python, "-I", "-S", str(manager.init), str(spec_path), stdin=stdio[0], stdout=stdio[1],
                stderr=stdio[2], pass_fds=(sync_w,))
        except BaseException:
            os.close(sync_r)
            raise
        finally:
            for fd in child_fds:
                os.close(fd)
        session.pid = proc.pid
        proc.sync_fd = sync_r               # init.py's report of an exec that failed (read at the exit)
        proc.spec_path = spec_path
        return proc, fds, input_fd

    def _read_output(self, fds: dict[int, str], out: Output, tty: bool) -> dict[int, asyncio.Event]:
        """Loop readers copying each output fd to ``out``; each fd's event is set at its end."""
        loop = asyncio.get_running_loop()
        ends = {fd: asyncio.Event() for fd in fds}

        def readable(fd: int) -> None:
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                return
            except OSError:           # EIO: no one holds the pty's slave any more
                data = b""
            if data:
                out.output(fds[fd], data)
            else:
                loop.remove_reader(fd)
                ends[fd].set()

        for fd in fds:
            loop.add_reader(fd, readable, fd)
        return ends

    async def _finish(self, session: ExecSession, proc: Any, fds: dict[int, str],
                      ends: dict[int, asyncio.Event], out: Output) -> None:
        """Record the exit, then end the output: once every output fd ended, or, when something the
        command started still holds them, with what was written up to its exit."""
        loop = asyncio.get_running_loop()
        code = 126
        try:
            code = await proc.wait()
            proc.spec_path.unlink(missing_ok=True)
            try:
                report = os.read(proc.sync_fd, 65536)
            except BlockingIOError:
                report = b""
            for message in process.parse_sync(report):
                if "error" in message:    # Docker's wording for an exec that could not run
                    out.output("stderr", f"OCI runtime exec failed: {message['error']}\r\n".encode())
            for fd, stream in fds.items():
                while not ends[fd].is_set():
                    try:
                        data = os.read(fd, 65536)
                    except (BlockingIOError, OSError):
                        break
                    if not data:
                        break
                    out.output(stream, data)
        finally:
            os.close(proc.sync_fd)
            for fd in fds:
                if not ends[fd].is_set():
                    loop.remove_reader(fd)
                os.close(fd)
            session.master = -1
            session.running = False
            session.exit_code = code
            session.done.set()
            out.ended()


def _detach_keys(request: web.Request) -> bytes:
    try:
        return parse_detach_keys(request.query.get("detachKeys", ""))
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from None
