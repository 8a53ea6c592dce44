"""Starting container processes, and finding them again after runtimed restarts.

The process tree of a running container (no Python process stays per container):

    shoal-runtimed
      └─ busybox sh  (the waiter: host namespaces, ~60 KiB private memory; holds the log pipes' read
         │            ends as fds 3/4 and writes pid 1's exit status to <dir>/exitcode)
         └─ workload  (pid 1 of its own pid namespace; was init.py until it exec'd)

``spawn_waiter`` launches ``busybox unshare -p -- busybox sh -c WAITER_SCRIPT`` with
``os.posix_spawn`` (no fork in the event loop). ``unshare -p`` makes the shell's first child pid 1
of a new pid namespace; that child is ``python -I -S init.py init.spec``. Because the shell keeps
read ends of the stdout/stderr pipes open, a runtimed restart never gives the workload SIGPIPE:
output waits in the pipe (1 MiB) until the new runtimed reopens ``/proc/WAITER/fd/3`` and ``4``.

With a TTY (``-t``) the workload's fds 0-2 are the slave of a pseudo-terminal and a ``busybox dd``
started by the waiter copies the master into the stdout pipe (the stderr pipe stays empty, as
Docker logs a TTY's output as stdout). The waiter waits for that relay before it records the exit,
so everything the workload wrote is in the pipe when runtimed sees the waiter go; a runtimed
restart finds the same pipes as without a TTY.
"""

from __future__ import annotations

import asyncio
import fcntl
import marshal
import os
import py_compile
import shlex
import signal
import struct
import termios
from dataclasses import dataclass
from pathlib import Path

INIT_PY = Path(__file__).with_name("init.py")
PIPE_SIZE = 1024 * 1024
SYNC_FD = 5

# $0 = exit file, "$@" = init command. The job runs in the background so that the shell can close
# its copy of the sync pipe (fd 5) while pid 1 keeps its own; "wait $!" gives 128+N for signal N.
WAITER_SCRIPT = '"$@" 3<&- 4<&- & exec 5>&-; wait $!; rc=$?; echo $rc >"$0"; exit $rc'
# With a TTY: fd 6 is the pty master, fd 7 its slave. "$BB" is busybox (set in the script's text).
# The relay is started first; the second "wait" (all children) lets it copy the last output, it
# ends with EIO once no one holds the slave. It is dd, which copies with read and write: busybox
# cat uses sendfile, and a splice from a tty into a pipe holds the pipe's lock while it waits for
# the tty, so runtimed's read of the pipe hung, unkillable (D state), until the workload wrote.
# The waiter keeps the master (fd 6) so that a restarted runtimed can take it again
# (process.take_fd) to write an attached client's input and set the window size.
WAITER_TTY_SCRIPT = ('"$BB" dd bs=65536 <&6 3<&- 4<&- 5>&- 7<&- 2>/dev/null & '
                     '"$@" <&7 >&7 2>&7 3<&- 4<&- 6<&- 7<&- & '
                     'exec 5>&- 7<&- 1>&- 2>&-; wait $!; rc=$?; wait; echo $rc >"$0"; exit $rc')
# With an open stdin and no TTY (Compose's stdin_open): fd 6 is the read end of a pipe whose write
# end (fd 7) only the waiter holds, so the workload's reads wait instead of seeing end-of-file.
WAITER_STDIN_SCRIPT = '"$@" <&6 3<&- 4<&- 6<&- 7>&- & exec 5>&- 6<&-; wait $!; rc=$?; echo $rc >"$0"; exit $rc'
# Docker's StdinOnce (`run -i`): runtimed holds the only write end, and closes it when the attached
# client's input ends, so the workload reads end-of-file (`echo hi | run -i IMAGE cat`).
WAITER_STDIN_ONCE_SCRIPT = ('"$@" <&6 3<&- 4<&- 6<&- 7>&- & exec 5>&- 6<&- 7>&-; '
                            'wait $!; rc=$?; echo $rc >"$0"; exit $rc')


@dataclass
class Spawned:
    """A freshly started container: the waiter's pid and the runtimed ends of the three pipes."""

    waiter_pid: int
    stdout_fd: int
    stderr_fd: int
    sync_fd: int
    stdin_fd: int = -1       # runtimed's end of the workload's input: the pty master, or the pipe's write end


def _high(fd: int) -> int:
    """Move ``fd`` to a number >= 10 (close-on-exec), so dup2 onto 0..5 never collides."""
    new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return new


def _pipe() -> tuple[int, int]:
    r, w = os.pipe2(os.O_CLOEXEC)
    r, w = _high(r), _high(w)
    try:
        fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    except OSError:
        pass
    return r, w


def compile_init(dest: Path) -> Path:
    """Byte-compile init.py to ``dest`` and return it: running a script compiles it on every run
    (5 ms of a 20 ms start), running its .pyc does not."""
    py_compile.compile(str(INIT_PY), cfile=str(dest), doraise=True)
    return dest


def spawn_waiter(busybox: str, python: str, init_json: Path, exit_file: Path, init: Path = INIT_PY,
                 tty: bool = False, open_stdin: bool = False, stdin_once: bool = False,
                 console_size: tuple[int, int] | None = None) -> Spawned:
    """Start the waiter + init chain for one container; the caller owns the returned fds.
    ``console_size`` (rows, columns) is the pty's window size before the workload starts."""
    out_r, out_w = _pipe()
    err_r, err_w = _pipe()
    sync_r, sync_w = _pipe()
    extra: tuple[int, ...] = ()
    script = WAITER_SCRIPT
    stdin_fd = -1
    if tty:
        master, slave = os.openpty()
        extra = (_high(master), _high(slave))
        if console_size:
            set_window_size(extra[0], *console_size)
        stdin_fd = fcntl.fcntl(extra[0], fcntl.F_DUPFD_CLOEXEC, 10)
        script = f"BB={shlex.quote(busybox)}; {WAITER_TTY_SCRIPT}"
    elif open_stdin:
        extra = os.pipe2(os.O_CLOEXEC)
        extra = (_high(extra[0]), _high(extra[1]))
        stdin_fd = fcntl.fcntl(extra[1], fcntl.F_DUPFD_CLOEXEC, 10)
        script = WAITER_STDIN_ONCE_SCRIPT if stdin_once else WAITER_STDIN_SCRIPT
    argv = ["busybox", "unshare", "-p", "--", busybox, "sh", "-c", script, str(exit_file),
            python, "-I", "-S", str(init), str(init_json)]
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
        (os.POSIX_SPAWN_DUP2, out_w, 1), (os.POSIX_SPAWN_DUP2, err_w, 2),
        (os.POSIX_SPAWN_DUP2, out_r, 3), (os.POSIX_SPAWN_DUP2, err_r, 4),
        (os.POSIX_SPAWN_DUP2, sync_w, SYNC_FD),
    ] + [(os.POSIX_SPAWN_DUP2, fd, 6 + i) for i, fd in enumerate(extra)]
    try:
        pid = os.posix_spawn(busybox, argv, {}, file_actions=actions, setsid=True,
                             setsigdef=(signal.SIGPIPE, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM))
    except BaseException:
        for fd in (out_r, err_r, sync_r) + ((stdin_fd,) if stdin_fd >= 0 else ()):
            os.close(fd)
        raise
    finally:
        for fd in (out_w, err_w, sync_w, *extra):
            os.close(fd)
    # The pty master stays blocking: the relay (dd) reads the same open file, and dies of EAGAIN
    for fd in (out_r, err_r, sync_r) + ((stdin_fd,) if stdin_fd >= 0 and not tty else ()):
        os.set_blocking(fd, False)
    return Spawned(pid, out_r, err_r, sync_r, stdin_fd)


def set_window_size(fd: int, rows: int, columns: int) -> None:
    """TIOCSWINSZ on a pty (master or slave): the kernel sends SIGWINCH to its foreground group."""
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))


_SYS_PIDFD_GETFD = 438      # the same number on every architecture (the generic syscall table)


def take_fd(pid: int, fd: int) -> int:
    """A duplicate of another process's open file (pidfd_getfd(2), close-on-exec, its flags shared):
    a restarted runtimed takes back a container's pty master, which opening /proc/PID/fd/N would
    not give (that opens a new pty through /dev/ptmx)."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    try:
        new = libc.syscall(_SYS_PIDFD_GETFD, pidfd, fd, 0)
        if new < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"pidfd_getfd of fd {fd} of pid {pid}: {os.strerror(err)}")
    finally:
        os.close(pidfd)
    return new


async def read_sync(fd: int, timeout: float) -> list[dict]:
    """Read JSON lines from init's sync pipe until it closes (exec done or init gone)."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    chunks: list[bytes] = []

    def readable() -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        if data:
            chunks.append(data)
        elif not done.done():
            done.set_result(None)

    loop.add_reader(fd, readable)
    try:
        await asyncio.wait_for(done, timeout)
    finally:
        loop.remove_reader(fd)
        os.close(fd)
    return parse_sync(b"".join(chunks))


def parse_sync(data: bytes) -> list[dict]:
    """init.py's sync lines -> ``{"pid": N}`` / ``{"error": MESSAGE, "exit_code": CODE}``."""
    out: list[dict] = []
    for line in data.decode("utf-8", "replace").splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "pid" and rest.isdigit():
            out.append({"pid": int(rest)})
        elif kind == "error":
            code, _, message = rest.partition(" ")
            out.append({"error": message, "exit_code": int(code) if code.isdigit() else 126})
    return out


def write_init_spec(path: Path, spec: dict) -> None:
    """Write a spec for init.py (a marshal dump: init.py must not pay for importing json)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(marshal.dumps(spec))
    os.replace(tmp, path)


def start_time(pid: int) -> int:
    """Field 22 of /proc/PID/stat (clock ticks since boot), 0 if the process is gone.

    Stored next to every pid so a recycled pid is never mistaken for our process.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return 0
    return int(data[data.rindex(b")") + 2:].split()[19])


def alive(pid: int, started: int) -> bool:
    return pid > 0 and started > 0 and start_time(pid) == started


def signal_process(pid: int, started: int, signum: int) -> bool:
    """Send ``signum`` to pid if it is still the same process; False if it is gone."""
    if not alive(pid, started):
        return False
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return False
    try:
        if start_time(pid) != started:
            return False
        signal.pidfd_send_signal(fd, signum)
        return True
    except ProcessLookupError:
        return False
    finally:
        os.close(fd)


def reopen_pipes(waiter_pid: int) -> tuple[int, int]:
    """Reopen the read ends of a waiter's stdout/stderr pipes (its fds 3 and 4) after a restart."""
    fds = []
    for n in (3, 4):
        fd = os.open(f"/proc/{waiter_pid}/fd/{n}", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        fds.append(fd)
    return fds[0], fds[1]


def reap(pid: int) -> int | None:
    """waitpid(WNOHANG) a child of ours: exit code (128+N for a signal), None if not ours or running."""
    try:
        got, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return None
    if got == 0:
        return None
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code
