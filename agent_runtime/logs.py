"""Container logs in Docker's json-file format, with size-based rotation, and reading them back.

Each line is ``{"log": "text\\n", "stream": "stdout", "time": "2024-01-02T03:04:05.123456789Z"}``
in ``<id>-json.log``; rotated files are ``-json.log.1`` (newest) to ``.N``. ``LogWriter`` is
fed bytes from the container's pipes by runtimed's loop and is the only writer of these files;
the reading functions are pure functions of the files and may run anywhere.

A line longer than 16 KiB is written in 16 KiB pieces, all but the last without a trailing
newline, as Docker does.
"""

from __future__ import annotations

import calendar
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

MAX_LINE = 16 * 1024


def format_time(ns: int) -> str:
    """RFC 3339 with nanoseconds, UTC: sorts as text in time order."""
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"


def parse_time(text: str) -> int:
    """Inverse of format_time (nanoseconds since the epoch)."""
    base, _, frac = text.rstrip("Z").partition(".")
    secs = calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S"))
    return secs * 1_000_000_000 + int((frac or "0").ljust(9, "0")[:9])


@dataclass
class LogRecord:
    stream: str
    log: str
    time: str

    def to_json(self) -> dict:
        return {"stream": self.stream, "log": self.log, "time": self.time}


class LogWriter:
    """Append records to ``path``, rotating when a file would pass ``max_size`` bytes.

    Keeps ``max_files`` files in all (1 = truncate in place). Not thread-safe: one loop owns it.
    ``feed(stream, data)`` splits bytes into lines and keeps an unterminated tail per stream
    until more data or ``flush``.
    """

    def __init__(self, path: Path, max_size: int, max_files: int, clock=time.time_ns) -> None:
        self.path = path
        self.max_size = max_size
        self.max_files = max_files
        self.clock = clock
        self._partial: dict[str, bytes] = {}
        self._file = open(path, "ab")
        self._size = self._file.tell()

    def feed(self, stream: str, data: bytes) -> None:
        buf = self._partial.pop(stream, b"") + data
        lines = buf.split(b"\n")
        tail = lines.pop()
        for line in lines:
            while len(line) >= MAX_LINE:
                self._write_line(stream, line[:MAX_LINE])
                line = line[MAX_LINE:]
            self._write_line(stream, line + b"\n")
        while len(tail) >= MAX_LINE:
            self._write_line(stream, tail[:MAX_LINE])
            tail = tail[MAX_LINE:]
        if tail:
            self._partial[stream] = tail

    def flush(self) -> None:
        """Write out unterminated lines (the stream ended)."""
        for stream, tail in list(self._partial.items()):
            self._write_line(stream, tail)
        self._partial.clear()

    def _write_line(self, stream: str, line: bytes) -> None:
        record = json.dumps({"log": line.decode("utf-8", "replace"), "stream": stream,
                             "time": format_time(self.clock())}, ensure_ascii=False) + "\n"
        data = record.encode()
        if self._size and self._size + len(data) > self.max_size:
            self.rotate()
        self._file.write(data)
        self._file.flush()
        self._size += len(data)

    def rotate(self) -> None:
        self._file.close()
        if self.max_files <= 1:
            self._file = open(self.path, "wb")
        else:
            for i in range(self.max_files - 1, 0, -1):
                src = self.path if i == 1 else self.path.with_name(f"{self.path.name}.{i - 1}")
                dst = self.path.with_name(f"{self.path.name}.{i}")
                if src.exists():
                    os.replace(src, dst)
            self._file = open(self.path, "ab")
        self._size = 0

    def close(self) -> None:
        self.flush()
        self._file.close()


def log_files(path: Path) -> list[Path]:
    """Existing log files, oldest first (``.N`` ... ``.1``, then the current one)."""
    rotated = sorted((p for p in path.parent.glob(path.name + ".*") if p.suffix[1:].isdigit()),
                     key=lambda p: int(p.suffix[1:]), reverse=True)
    return rotated + ([path] if path.exists() else [])


def _records(files: list[Path]) -> Iterator[LogRecord]:
    for f in files:
        try:
            with open(f, "rb") as fh:
                for raw in fh:
                    yield _decode(raw)
        except FileNotFoundError:
            continue


def _decode(raw: bytes) -> LogRecord:
    try:
        d = json.loads(raw)
        return LogRecord(d.get("stream", "stdout"), d.get("log", ""), d.get("time", ""))
    except ValueError:
        return LogRecord("stdout", raw.decode("utf-8", "replace"), "")


def read_logs(path: Path, tail: int = -1, since_ns: int = 0, streams: tuple[str, ...] = ("stdout", "stderr"),
              ) -> list[LogRecord]:
    """Records across all rotated files, oldest first, filtered by stream and ``since``, then the
    last ``tail`` of them (-1 = all)."""
    out = [r for r in _records(log_files(path))
           if r.stream in streams and (not since_ns or (r.time and parse_time(r.time) >= since_ns))]
    return out if tail < 0 else out[len(out) - tail:] if tail else []


class LogFollower:
    """Yield records appended to the current file after ``read_logs``, surviving rotations.

    ``poll()`` returns what was appended since the last call; the caller decides how to wait.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._inode = None
        self._offset = 0
        self._rest = b""
        try:
            st = path.stat()
            self._inode, self._offset = st.st_ino, st.st_size
        except FileNotFoundError:
            pass

    def poll(self) -> list[LogRecord]:
        out: list[LogRecord] = []
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return out
        if st.st_ino != self._inode:
            # rotated: finish the old file (now .1) and start the new one from its beginning
            old = self.path.with_name(self.path.name + ".1")
            if self._inode is not None and old.exists() and old.stat().st_ino == self._inode:
                out += self._read(old)
            self._inode, self._offset, self._rest = st.st_ino, 0, b""
        elif st.st_size < self._offset:
            self._offset, self._rest = 0, b""  # truncated in place (max_files = 1)
        out += self._read(self.path)
        return out

    def _read(self, path: Path) -> list[LogRecord]:
        with open(path, "rb") as fh:
            fh.seek(self._offset)
            data = self._rest + fh.read()
            self._offset = fh.tell()
        lines = data.split(b"\n")
        self._rest = lines.pop()
        return [_decode(line) for line in lines if line]
