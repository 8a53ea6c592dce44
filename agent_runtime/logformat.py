"""One structured log format for both daemons: logfmt ("text", the default) or JSON lines.

    time=2026-12-03T06:39:11.564Z level=warning component=manager.dispatcher msg="node down" node=3f2a

Every line is one record; every value that is not a bare word is double-quoted with `\\`, `"` and
control characters escaped, so a traceback stays on its line (`exc="Traceback …\\n…"`). Context a
caller passes with `extra={"node": …, "task": …}` is kept as fields after `msg`, in the order given.
Times are UTC with milliseconds (RFC 3339), which journald, Loki and `jq` all read as they are.

The names follow dockerd: `--log-format text|json`, `--log-level debug|info|warning|error`.
This module is shared by shoald and shoal-runtimed; it imports nothing of ours.
"""
from __future__ import annotations

import json
import logging
import sys
import time
from typing import IO, Any

FORMATS = ("text", "json")
LEVELS = ("debug", "info", "warning", "error", "critical")

# Attributes every LogRecord has; anything else on a record came from `extra=` and is context.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


def _timestamp(record: logging.LogRecord) -> str:
    seconds = int(record.created)
    millis = int((record.created - seconds) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "time": _timestamp(record),
        "level": record.levelname.lower(),
        "component": record.name,
        "msg": record.getMessage(),
    }
    for key, value in vars(record).items():
        if key not in _STANDARD and not key.startswith("_") and key not in fields:
            fields[key] = value
    if record.exc_info and record.exc_info[0] is not None:
        fields["exc"] = logging.Formatter().formatException(record.exc_info)
    elif record.exc_text:
        fields["exc"] = record.exc_text
    if record.stack_info:
        fields["stack"] = record.stack_info
    return fields


def _bare(text: str) -> bool:
    return bool(text) and all(c.isalnum() or c in "-_./:@+,%" for c in text)


def logfmt_value(value: Any) -> str:
    """One logfmt value: bare if it is a plain word, else a double-quoted, escaped string."""
    if value is None:
        return '""'
    if isinstance(value, bool):
        return "true" if value else "false"
    text = value if isinstance(value, str) else str(value)
    if _bare(text):
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    escaped = "".join(c if c >= " " or c == "\t" else {"\n": "\\n", "\r": "\\r"}.get(c, f"\\u{ord(c):04x}")
                      for c in escaped)
    return f'"{escaped}"'


def _logfmt_key(key: str) -> str:
    return "".join(c if c.isalnum() or c in "_.-" else "_" for c in str(key)) or "_"


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{_logfmt_key(k)}={logfmt_value(v)}" for k, v in _fields(record).items())


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(_fields(record), default=str, ensure_ascii=False, separators=(",", ":"))


def parse_logfmt(line: str) -> dict[str, str]:
    """Parse one logfmt line (the inverse of LogfmtFormatter); ValueError if it is not logfmt."""
    fields: dict[str, str] = {}
    i, n = 0, len(line)
    while i < n:
        while i < n and line[i] == " ":
            i += 1
        if i >= n:
            break
        start = i
        while i < n and line[i] not in "= ":
            i += 1
        key = line[start:i]
        if not key or i >= n or line[i] != "=":
            raise ValueError(f"not logfmt at column {start}: {line[start:start + 30]!r}")
        i += 1
        if i < n and line[i] == '"':
            i += 1
            out = []
            while True:
                if i >= n:
                    raise ValueError(f"unterminated quoted value for {key!r}")
                c = line[i]
                if c == "\\":
                    if i + 1 >= n:
                        raise ValueError(f"dangling escape in {key!r}")
                    nxt = line[i + 1]
                    if nxt == "u":
                        out.append(chr(int(line[i + 2:i + 6], 16)))
                        i += 6
                        continue
                    out.append({"n": "\n", "r": "\r", "t": "\t"}.get(nxt, nxt))
                    i += 2
                    continue
                if c == '"':
                    i += 1
                    break
                out.append(c)
                i += 1
            value = "".join(out)
            if i < n and line[i] != " ":
                raise ValueError(f"garbage after quoted value of {key!r}")
        else:
            start = i
            while i < n and line[i] != " ":
                if line[i] == '"':
                    raise ValueError(f"stray quote in value of {key!r}")
                i += 1
            value = line[start:i]
        fields[key] = value
    return fields


def configure(level: str = "warning", fmt: str = "text", stream: IO[str] | None = None) -> None:
    """Send every logger's records to `stream` (stderr) in `fmt`; replaces earlier handlers.

    ValueError names the allowed values when `level` or `fmt` is not one of them."""
    if fmt not in FORMATS:
        raise ValueError(f"invalid log format {fmt!r}: use one of {', '.join(FORMATS)}")
    if level.lower() not in LEVELS:
        raise ValueError(f"invalid log level {level!r}: use one of {', '.join(LEVELS)}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Third-party chatter stays out of the daemons' logs unless debugging.
    for noisy in ("aiohttp.access", "asyncio", "pyroute2", "grpc._cython"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
