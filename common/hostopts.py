"""The grammars of the container runtime options, as Docker reads them: ``--dns``, ``--dns-search``,
``--host``, ``--sysctl``, ``--ulimit``, ``--oom-score-adj``.

Used by the CLI (flags), the stack loader (Compose keys), the ControlAPI (the stored spec) and
shoal-runtimed (the container spec), so each refuses the same values with Docker's words. Pure and
standard library only: the runtime imports it.
"""

from __future__ import annotations

import ipaddress
import re

# docker/cli opts.ValidateSysctl: the sysctls that are namespaced (net, ipc) and so safe per container
_SYSCTLS = frozenset({"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
                      "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced"})
_SYSCTL_PREFIXES = ("net.", "fs.mqueue.")
# go-units ulimit names -> resource.RLIMIT_* names
ULIMITS = {"core": "CORE", "cpu": "CPU", "data": "DATA", "fsize": "FSIZE", "locks": "LOCKS",
           "memlock": "MEMLOCK", "msgqueue": "MSGQUEUE", "nice": "NICE", "nofile": "NOFILE",
           "nproc": "NPROC", "rss": "RSS", "rtprio": "RTPRIO", "rttime": "RTTIME",
           "sigpending": "SIGPENDING", "stack": "STACK"}
_DOMAIN = re.compile(r"^(:?(([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9\-]*[a-zA-Z0-9])\.)*"
                     r"([A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9\-]*[A-Za-z0-9]))$")
OOM_SCORE_ADJ_MIN, OOM_SCORE_ADJ_MAX = -1000, 1000


def check_sysctl(key: str) -> None:
    """docker/cli opts.ValidateSysctl: only namespaced sysctls are allowed per container."""
    if key in _SYSCTLS or any(key.startswith(p) and len(key) > len(p) for p in _SYSCTL_PREFIXES):
        return
    raise ValueError(f"sysctl '{key}' is not allowed")


def parse_sysctl(text: str) -> tuple[str, str]:
    """``net.core.somaxconn=1024`` -> (key, value), as ``docker run --sysctl``."""
    key, sep, value = text.partition("=")
    if not sep:
        raise ValueError(f"sysctl '{text}' is not allowed")
    check_sysctl(key)
    return key, value


def parse_ulimit(text: str) -> tuple[str, int, int]:
    """go-units ParseUlimit: ``nofile=1024:2048`` or ``nofile=1024`` -> (name, soft, hard)."""
    name, sep, limits = text.partition("=")
    if not sep:
        raise ValueError(f"invalid ulimit argument: {text}")
    if name not in ULIMITS:
        raise ValueError(f"invalid ulimit type: {name}")
    parts = limits.split(":")
    if len(parts) > 2:
        raise ValueError(f"too many limit value arguments - {limits}, can only have up to two, `soft[:hard]`")
    try:
        values = [int(p, 10) for p in parts]
    except ValueError:
        raise ValueError(f'strconv.ParseInt: parsing "{limits}": invalid syntax') from None
    soft, hard = values[0], values[-1]
    check_ulimit(name, soft, hard)
    return name, soft, hard


def check_ulimit(name: str, soft: int, hard: int) -> None:
    if name not in ULIMITS:
        raise ValueError(f"invalid ulimit type: {name}")
    if soft > hard:
        raise ValueError(f"ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}")


def check_ip(text: str) -> str:
    """docker/cli opts.ValidateIPAddress (--dns)."""
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        raise ValueError(f"IP address is not correctly formatted: {text}") from None


def check_dns_search(text: str) -> str:
    """docker/cli opts.ValidateDNSSearch: a domain name, or ``.`` for none."""
    value = text.strip()
    if value == ".":
        return value
    if len(value) > 255 or not _DOMAIN.match(value.rstrip(".")):
        raise ValueError(f"{value} is not a valid domain")
    return value


def parse_extra_host(text: str) -> str:
    """``HOST:IP`` (or ``HOST=IP``, as docker/cli opts.ValidateExtraHost) -> SwarmKit's ``IP HOST``."""
    sep = "=" if "=" in text else ":"
    host, found, ip = text.partition(sep)
    if not found or not host:
        raise ValueError(f'bad format for add-host: "{text}"')
    if ip.startswith("[") and ip.endswith("]"):
        ip = ip[1:-1]
    try:
        check_ip(ip)
    except ValueError:
        raise ValueError(f'invalid IP address in add-host: "{ip}"') from None
    return f"{ip} {host}"


def check_hosts_line(line: str) -> None:
    """A SwarmKit ``hosts`` entry: ``IP HOSTNAME [ALIAS...]``."""
    fields = line.split()
    if len(fields) < 2:
        raise ValueError(f"invalid hosts entry {line!r}: expected 'IP HOSTNAME [ALIAS...]'")
    try:
        check_ip(fields[0])
    except ValueError:
        raise ValueError(f"invalid hosts entry {line!r}: {fields[0]!r} is not an IP address") from None


def check_oom_score_adj(value: int) -> None:
    """The daemon's check (daemon/daemon_unix.go)."""
    if not OOM_SCORE_ADJ_MIN <= value <= OOM_SCORE_ADJ_MAX:
        raise ValueError(f"Invalid value {value}, range for oom score adj is [-1000, 1000]")


# ---- --log-driver / --log-opt ------------------------------------------------------------------

LOG_DRIVER = "json-file"       # the one logging driver Shoal's nodes have
_LOG_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_log_options(driver: str, options: dict[str, str]) -> tuple[int, int]:
    """A task's ``--log-driver``/``--log-opt`` -> (max-size bytes, max-file), 0 where not given (the
    node's default). An empty driver is the node's default, json-file; another driver, or an
    option json-file does not have here, raises ValueError naming it."""
    if driver not in ("", LOG_DRIVER):
        raise ValueError(f"log driver {driver!r} is not available: Shoal nodes log with the json-file driver "
                         f"only (read the logs with `shoal service logs`)")
    max_size = max_files = 0
    for key, value in options.items():
        if key == "max-size":
            text = value.strip().lower()
            number = text.rstrip("bkmg")
            if not number.isdigit() or text[len(number):] not in _LOG_SIZE_UNITS \
                    or int(number) * _LOG_SIZE_UNITS[text[len(number):]] < 4096:
                raise ValueError(f"invalid max-size {value!r}: a size of at least 4k, like 10m")
            max_size = int(number) * _LOG_SIZE_UNITS[text[len(number):]]
        elif key == "max-file":
            if not value.isdigit() or not 1 <= int(value) <= 100:
                raise ValueError(f"invalid max-file {value!r}: a number from 1 to 100")
            max_files = int(value)
        else:
            raise ValueError(f"unknown log opt '{key}' for {LOG_DRIVER} log driver (Shoal's has max-size and max-file)")
    return max_size, max_files
