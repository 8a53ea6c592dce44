"""``run -p/--publish``, ``-P/--publish-all`` and ``--expose`` as docker/cli reads them, and the
PORTS text of ``ps`` and ``port`` as Docker prints them. Pure; tests/unit/test_cli_ports.py."""

from __future__ import annotations

import ipaddress

PROTOCOLS = ("tcp", "udp", "sctp")


class PortError(ValueError):
    """A flag value Docker would refuse; the message is Docker's."""


def _port_range(text: str, what: str) -> tuple[int, int]:
    """``80`` or ``8000-8010`` -> (first, last); Docker's "invalid containerPort/hostPort"."""
    first, sep, last = text.partition("-")
    try:
        start, end = int(first), int(last) if sep else int(first)
    except ValueError:
        raise PortError(f"invalid {what}: {text}") from None
    if not (0 < start <= 65535 and 0 < end <= 65535) or end < start:
        raise PortError(f"invalid {what}: {text}")
    return start, end


def parse_publish(text: str) -> list[tuple[str, int, int, str]]:
    """One ``-p`` value: ``[IP:][HOST_PORT:]CONTAINER_PORT[/PROTO]`` with port ranges ->
    [(host ip, host port (0: any free one), container port, protocol)]."""
    spec, _, proto = text.partition("/")
    proto = proto.lower() or "tcp"
    if proto not in PROTOCOLS:
        raise PortError(f"invalid proto: {proto}")
    if spec.startswith("["):
        raise PortError(f"invalid IP address {spec.split(']')[0][1:]!r}: only IPv4 ports are published here")
    parts = spec.split(":")
    if len(parts) == 1:
        ip, host, container = "", "", parts[0]
    elif len(parts) == 2:
        ip, host, container = "", parts[0], parts[1]
    elif len(parts) == 3:
        ip, host, container = parts
    else:
        raise PortError(f"invalid port format for --publish: {text}")
    if ip:
        try:
            ipaddress.IPv4Address(ip)
        except ValueError:
            raise PortError(f"invalid IP address: {ip}") from None
    if not container:
        raise PortError(f"no port specified: {text}<empty>")
    c_first, c_last = _port_range(container, "containerPort")
    if not host:
        return [(ip, 0, port, proto) for port in range(c_first, c_last + 1)]
    h_first, h_last = _port_range(host, "hostPort")
    count = c_last - c_first + 1
    if h_last - h_first + 1 != count and not (count == 1 and h_first == h_last):
        raise PortError(f"invalid ranges specified for container and host Ports: {container} and {host}")
    if count == 1 and h_first != h_last:
        raise PortError(f"invalid ranges specified for container and host Ports: {container} and {host} "
                        "(a host range for one container port is not supported)")
    return [(ip, h_first + i, c_first + i, proto) for i in range(count)]


def parse_expose(text: str) -> list[tuple[int, str]]:
    """``--expose 80``, ``8000-8010/udp`` -> [(port, protocol)]."""
    port, _, proto = text.partition("/")
    proto = proto.lower() or "tcp"
    if proto not in PROTOCOLS:
        raise PortError(f"invalid proto: {proto}")
    first, last = _port_range(port, "range format for --expose")
    return [(p, proto) for p in range(first, last + 1)]


def publish_all(exposed: list[tuple[int, str]], published: list[tuple[str, int, int, str]]) -> list:
    """``-P``: each exposed port not already published gets a free host port on every address."""
    done = {(c, proto) for _, _, c, proto in published}
    return [("", 0, port, proto) for port, proto in dict.fromkeys(exposed) if (port, proto) not in done]


def image_exposed(config: dict) -> list[tuple[int, str]]:
    """The image's EXPOSE ports (``Config.ExposedPorts`` keys such as ``80/tcp``)."""
    out = []
    for key in sorted(((config or {}).get("Config") or {}).get("ExposedPorts") or {}):
        port, _, proto = key.partition("/")
        if port.isdigit():
            out.append((int(port), proto or "tcp"))
    return out


def ports_text(bindings) -> str:
    """``ps``'s PORTS as Docker prints it: ``0.0.0.0:8000-8001->8000-8001/tcp`` for runs of
    consecutive ports published under their own number (grouped per address and protocol),
    then ``0.0.0.0:8080->80/tcp`` for each port published under another number."""
    ordered = sorted(bindings, key=lambda b: (b.container_port, b.host_ip or "0.0.0.0", b.host_port, b.protocol))
    runs: dict[str, list[int]] = {}          # "ip/proto" -> [first, last] of the open run
    order: list[str] = []
    closed, remapped = [], []

    def text(key: str, first: int, last: int) -> str:
        ip, proto = key.split("/")
        span = f"{first}-{last}" if first != last else f"{first}"
        return f"{ip}:{span}->{span}/{proto}"

    for b in ordered:
        ip = b.host_ip or "0.0.0.0"
        if b.host_port != b.container_port:
            remapped.append(f"{ip}:{b.host_port}->{b.container_port}/{b.protocol}")
            continue
        key = f"{ip}/{b.protocol}"
        run = runs.get(key)
        if run is None:
            runs[key] = [b.container_port, b.container_port]
            order.append(key)
        elif b.container_port == run[1] + 1:
            run[1] = b.container_port
        else:
            closed.append(text(key, *run))
            runs[key] = [b.container_port, b.container_port]
    return ", ".join(closed + [text(key, *runs[key]) for key in order] + remapped)


def port_lines(bindings, private: str = "") -> list[str]:
    """``docker port CONTAINER [PRIVATE_PORT[/PROTO]]``: ``80/tcp -> 0.0.0.0:8080`` lines, or the
    addresses of one private port; PortError (Docker's text) when it is not published."""
    if not private:
        return [f"{b.container_port}/{b.protocol} -> {b.host_ip or '0.0.0.0'}:{b.host_port}"
                for b in sorted(bindings, key=lambda b: (b.container_port, b.protocol))]
    port, _, proto = private.partition("/")
    proto = proto or "tcp"
    if not port.isdigit():
        raise PortError(f"Error: invalid port ({port}): must be a number")   # docker/cli's wording
    found = [f"{b.host_ip or '0.0.0.0'}:{b.host_port}" for b in bindings
             if b.container_port == int(port) and b.protocol == proto]
    if not found:
        raise PortError(f"Error: No public port '{port}/{proto}' published for")
    return found
