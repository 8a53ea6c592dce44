"""Drive a command through a real pseudo-terminal, as a user at a terminal would (for `run -it`,
`exec -it`, `docker run -it`): the standard library's pty, no expect library.

The command runs under a small wrapper that records the terminal's settings before and after it and
prints ``TERMINAL-RESTORED`` when they are equal (a client that leaves raw mode on fails that).
Every wait has a deadline and fails naming what was awaited and what was read.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import sys
import termios
import time

WRAPPER = """
import subprocess, sys, termios
before = termios.tcgetattr(0)
code = subprocess.call(sys.argv[1:])
after = termios.tcgetattr(0)
sys.stdout.write("\\r\\nTERMINAL-RESTORED\\r\\n" if after == before else "\\r\\nTERMINAL-CHANGED\\r\\n")
sys.stdout.flush()
sys.exit(code)
"""


class Terminal:
    def __init__(self, argv: list[str], env: dict[str, str] | None = None, rows: int = 24, columns: int = 80) -> None:
        pid, fd = pty.fork()
        if pid == 0:    # the child: the wrapper on the pty's slave, in its own session
            try:
                os.execve(sys.executable, [sys.executable, "-c", WRAPPER, *argv], {**os.environ, **(env or {})})
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        self.output = b""
        self.status: int | None = None
        self.resize(rows, columns)

    def resize(self, rows: int, columns: int) -> None:
        """Set the window size: the kernel sends SIGWINCH to the foreground process group."""
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))

    def send(self, data: str | bytes) -> None:
        os.write(self.fd, data.encode() if isinstance(data, str) else data)

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return True
        try:
            data = os.read(self.fd, 65536)
        except OSError:       # EIO: the wrapper and everything on the slave are gone
            data = b""
        if not data:
            return False
        self.output += data
        return True

    def expect(self, pattern: str, timeout: float = 60.0, start: int = 0) -> re.Match:
        """Wait until ``pattern`` (a regexp over the output from ``start``) is seen."""
        deadline = time.monotonic() + timeout
        while True:
            found = re.search(pattern, self.output[start:].decode("utf-8", "replace"))
            if found:
                return found
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{pattern!r} not seen within {timeout:g} s; the terminal showed: {self.text!r}")
            if not self._read(min(left, 1.0)):
                found = re.search(pattern, self.output[start:].decode("utf-8", "replace"))
                if found:
                    return found
                raise AssertionError(f"the terminal closed before {pattern!r}; it showed: {self.text!r}")

    def wait(self, timeout: float = 60.0) -> int:
        """The wrapper's exit code once it ended (everything it printed is read)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                raise AssertionError(f"the command did not end within {timeout:g} s; it showed: {self.text!r}")
            if not self._read(min(left, 1.0)):
                break
        _, status = os.waitpid(self.pid, 0)
        self.status = os.waitstatus_to_exitcode(status)
        return self.status

    @property
    def text(self) -> str:
        return self.output.decode("utf-8", "replace")

    def kill(self) -> None:
        if self.status is None:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(self.pid, 0)
            self.status = -9

    def close(self) -> None:
        self.kill()
        os.close(self.fd)
