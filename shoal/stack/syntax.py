"""Parsers for Compose's own string mini-languages: short port and volume syntax, `KEY=VALUE` lists.
Durations, byte sizes, CPUs, env files and file modes are Docker's everywhere: common.syntax.

Pure functions of their input; each raises ValueError with a message that says what was expected
(the validator prefixes file, line and key).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

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
