"""Parsers for Compose's string mini-languages: durations, byte sizes, CPUs, short port and volume
syntax, `KEY=VALUE` lists and env files.

Pure functions of their input; each raises ValueError with a message that says what was expected
(the validator prefixes file, line and key).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_DURATION_PART = re.compile(r"([0-9]*\.?[0-9]*)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_BYTES = re.compile(r"^(\d+(?:\.\d+)?) ?([kmgtp])?(i)?b?$", re.IGNORECASE)
_BYTE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def parse_duration(text: str) -> float:
    """A Go duration ("10s", "1m30s", "500ms", "0") in seconds."""
    text = text.strip()
    if text == "0":
        return 0.0
    total, position = 0.0, 0
    for match in _DURATION_PART.finditer(text):
        if match.start() != position or match.group(1) in ("", "."):
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        position = match.end()
    else:
        if position == len(text) and position > 0:
            return total
    raise ValueError(f"expected a duration like '10s', '1m30s' or '500ms', got {text!r}")


def parse_bytes(value: object) -> int:
    """A byte size: an integer, or a string like "64M", "1.5g", "512KiB" (binary multiples)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"expected a byte size like '64M', got {value!r}")
    if isinstance(value, int):
        if not 0 <= value < 1 << 62:
            raise ValueError(f"expected a byte size between 0 and 2^62, got {value}")
        return value
    match = _BYTES.match(str(value).strip())
    if not match:
        raise ValueError(f"expected a byte size like '64M' or '1G', got {value!r}")
    size = int(float(match.group(1)) * _BYTE_UNITS[(match.group(2) or "").lower()])
    if size >= 1 << 62:
        raise ValueError(f"byte size {value!r} is too large")
    return size


def parse_cpus(value: object) -> int:
    """A CPU count ("0.5", 2) in nano-CPUs; must be positive."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"expected a number of CPUs like '0.5', got {value!r}")
    try:
        cpus = float(value)  # type: ignore[arg-type]
    except ValueError:
        raise ValueError(f"expected a number of CPUs like '0.5', got {value!r}") from None
    if not cpus > 0 or cpus > 1e6:
        raise ValueError(f"expected a positive number of CPUs, got {value!r}")
    return int(round(cpus * 1e9))


@dataclass(frozen=True)
class PortSpec:
    """One published port: `published` 0 means "let the cluster choose" (ingress) or none."""

    target: int
    published: int = 0
    protocol: str = "tcp"
    mode: str = "ingress"
    name: str = ""
    traffic_policy: str = "cluster"   # "local": the mesh keeps the client's address (local tasks only)

    def key(self) -> tuple:
        return (self.published, self.target, self.protocol, self.mode)


def _port_number(text: str, what: str) -> int:
    if not re.fullmatch(r"[0-9]+", text):
        raise ValueError(f"{what} port {text!r} is not a number")
    number = int(text)
    if not 1 <= number <= 65535:
        raise ValueError(f"{what} port {number} is outside 1-65535")
    return number


def _port_range(text: str, what: str) -> list[int]:
    low, sep, high = text.partition("-")
    first = _port_number(low, what)
    last = _port_number(high, what) if sep else first
    if last < first:
        raise ValueError(f"{what} port range {text!r} is reversed")
    return list(range(first, last + 1))


def parse_port_short(value: object) -> list[PortSpec]:
    """Compose's short port syntax: 80, "8080:80", "8080:80/udp", "9090-9091:8080-8081"."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"expected a port like '8080:80' or a mapping, got {value!r}")
    text = str(value).strip()
    text, _, protocol = text.partition("/")
    protocol = protocol or "tcp"
    if protocol not in ("tcp", "udp"):
        raise ValueError(f"protocol {protocol!r} is not supported (use tcp or udp)")
    parts = text.split(":")
    if len(parts) > 2:
        raise ValueError(f"{value!r}: binding a published port to a host IP is not supported in a "
                         f"stack; publish on every node or use mode: host in the long syntax")
    targets = _port_range(parts[-1], "target")
    published = _port_range(parts[0], "published") if len(parts) == 2 and parts[0] else []
    if published and len(published) != len(targets):
        raise ValueError(f"{value!r}: published and target port ranges differ in length")
    return [PortSpec(target=t, published=published[i] if published else 0, protocol=protocol)
            for i, t in enumerate(targets)]


def split_volume_short(text: str) -> tuple[str | None, str, str]:
    """Compose's short volume syntax: "TARGET", "SOURCE:TARGET" or "SOURCE:TARGET:MODE".

    Returns (source or None for an anonymous volume, target, mode or "").
    """
    parts = text.split(":")
    if len(parts) == 1:
        return None, parts[0], ""
    if len(parts) == 2:
        return parts[0], parts[1], ""
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    raise ValueError(f"expected SOURCE:TARGET[:MODE], got {text!r}")


def is_bind_source(source: str) -> bool:
    """Compose's rule: a source that is a path ('/', '.', '~') is a bind mount, else a named volume."""
    return source.startswith(("/", ".", "~"))


def split_assignment(text: str) -> tuple[str, str | None]:
    """"KEY=VALUE" into (KEY, VALUE); "KEY" alone into (KEY, None)."""
    key, sep, value = text.partition("=")
    return key, (value if sep else None)


_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


def parse_env_file(text: str) -> list[tuple[int, str, str | None]]:
    """An env file's assignments as (line number, key, value or None for "take from environment").

    Blank lines and `#` comments are skipped; an optional `export ` prefix and matching quotes
    around the value are removed. Raises ValueError("line N: ...") on a malformed line.
    """
    entries = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):].lstrip()
        key, value = split_assignment(line)
        key = key.strip()
        if not _ENV_KEY.match(key):
            raise ValueError(f"line {number}: {key!r} is not a valid variable name")
        if value is not None:
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                value = value[1:-1]
        entries.append((number, key, value))
    return entries
