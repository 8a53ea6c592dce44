"""The daemons' configuration file, like dockerd's /etc/docker/daemon.json: /etc/shoal/daemon.json.

One JSON object read by both shoald and shoal-runtimed; each takes the keys it uses. Keys are
dockerd's names where dockerd has the setting:

    {
      "data-root": "/var/lib/shoal",            shoald state in <data-root>/state, runtime in <data-root>/runtime
      "insecure-registries": ["192.0.2.1:5000"],  plain-HTTP registries (HOST:PORT or CIDR)   reloadable
      "registry-mirrors": ["https://192.0.2.2:5000"],  Docker Hub mirrors, tried in order        reloadable
      "log-level": "info",                      debug | info | warning | error                 reloadable
      "log-format": "text",                     text (logfmt) | json                          reloadable
      "metrics-addr": "192.0.2.11:9323",        shoald's Prometheus endpoint
      "hosts": ["tcp://0.0.0.0:2376"],          shoald's remote API (mutual TLS, docs/remote-access.md)
      "log-opts": {"max-size": "10m", "max-file": "3"}   containers' default json-file rotation
      "default-address-pools": [{"base": "10.20.0.0/16", "size": 24}]
                                                the overlay pools `swarm init` uses without --default-addr-pool
      "node-generic-resources": ["gpu=2", "SSD=ssd1"]   what the node offers to --generic-resource
    }

Rules: a flag on the command line overrides the file; a key the daemons do not know, a value of
the wrong type or out of range is refused at start with the file, the key and what is wrong
(dockerd's "the following directives don't match any configuration option" for unknown keys), and
the daemon does not start. SIGHUP re-reads the file and applies the reloadable keys; a file that
no longer parses is reported and the running settings are kept. A missing file at the default
path is an empty configuration; a missing file given with --config-file is an error.
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from agent_runtime import logformat

DEFAULT_PATH = Path("/etc/shoal/daemon.json")
DEFAULT_DATA_ROOT = Path("/var/lib/shoal")


class ConfigError(ValueError):
    """The file cannot be used; the message names the file, the key and the problem."""


def _registry(value: str) -> str:
    text = value.strip()
    if "://" in text:
        raise ValueError(f"{value!r}: give HOST[:PORT] or a CIDR, without a scheme")
    if _is_cidr(text):
        return text
    host, _, port = text.rpartition(":") if ":" in text else (text, "", "")
    if not host or (port and not port.isdigit()) or not all(c.isalnum() or c in ".-[]:" for c in host):
        raise ValueError(f"{value!r} is not HOST[:PORT] or a CIDR")
    return text


def _is_cidr(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
        return "/" in text
    except ValueError:
        return False


def _string_list(item: Callable[[str], str]) -> Callable[[Any], list[str]]:
    def check(value: Any) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError("must be a list of strings")
        return [item(v) for v in value]
    return check


def _mirror(value: str) -> str:
    text = value.strip().rstrip("/")
    scheme, sep, host = text.partition("://")
    if not sep or scheme not in ("http", "https") or not host or "/" in host:
        raise ValueError(f"{value!r} is not a mirror URL: give https://HOST[:PORT] (or http://)")
    return text


def _choice(options: tuple[str, ...]) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str) or value.lower() not in options:
            raise ValueError(f"must be one of {', '.join(options)}")
        return value.lower()
    return check


def _host(value: str) -> str:
    text = value.strip()
    if not (text.startswith("tcp://") or text.startswith("unix:///")):
        raise ValueError(f"{value!r} is not tcp://IP:PORT or unix:///path")
    return text


def _abs_path(value: Any) -> str:
    if not isinstance(value, str) or not value.startswith("/"):
        raise ValueError("must be an absolute path")
    return os.path.normpath(value)


def _addr(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be IP:PORT")
    host, sep, port = value.strip().rpartition(":")
    try:
        ipaddress.ip_address(host.strip("[]"))
        if not sep or not 0 < int(port) < 65536:
            raise ValueError
    except ValueError:
        raise ValueError(f"{value!r} is not IP:PORT, e.g. 192.0.2.11:9323") from None
    return value.strip()


_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def size_bytes(text: str) -> int:
    """Docker's log-opt max-size: a number with an optional k, m or g (binary units)."""
    text = text.strip().lower()
    number = text.rstrip("bkmg")
    return int(number) * _SIZE_UNITS[text[len(number):]]


def _log_opts(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ValueError('must be an object of strings, e.g. {"max-size": "10m", "max-file": "3"}')
    unknown = sorted(set(value) - {"max-size", "max-file"})
    if unknown:
        raise ValueError(f"unknown log option(s) {', '.join(unknown)} for the json-file driver "
                         "(max-size, max-file)")
    if "max-size" in value:
        text = value["max-size"].strip().lower()
        number = text.rstrip("bkmg")
        if not number.isdigit() or text[len(number):] not in _SIZE_UNITS or size_bytes(text) < 4096:
            raise ValueError(f"max-size {value['max-size']!r} is not a size of at least 4k, like 10m")
    if "max-file" in value and (not value["max-file"].isdigit() or not 1 <= int(value["max-file"]) <= 100):
        raise ValueError(f"max-file {value['max-file']!r} must be a number from 1 to 100")
    return dict(value)


def _address_pools(value: Any) -> list[dict[str, Any]]:
    """Docker's `default-address-pools`: [{"base": CIDR, "size": PREFIX-LENGTH}, ...]. A swarm has
    one subnet size, so every pool must give the same size."""
    example = 'e.g. [{"base": "10.20.0.0/16", "size": 24}]'
    if not isinstance(value, list) or not value:
        raise ValueError(f"must be a non-empty list of pools, {example}")
    pools = []
    for pool in value:
        if not isinstance(pool, dict) or set(pool) != {"base", "size"}:
            raise ValueError(f"each pool is an object with exactly base and size, {example}")
        base, size = pool["base"], pool["size"]
        try:
            network = ipaddress.IPv4Network(base, strict=True) if isinstance(base, str) else None
        except ValueError as exc:
            raise ValueError(f"base {base!r}: {exc}") from None
        if network is None:
            raise ValueError(f"base {base!r} is not an IPv4 CIDR like 10.20.0.0/16")
        if isinstance(size, bool) or not isinstance(size, int) or not network.prefixlen <= size <= 29:
            raise ValueError(f"size {size!r} of pool {base} must be a prefix length from {network.prefixlen} to 29")
        pools.append({"base": str(network), "size": size})
    if len({p["size"] for p in pools}) > 1:
        raise ValueError("every pool must have the same size (a swarm has one subnet size)")
    return pools


@dataclass(frozen=True)
class Key:
    check: Callable[[Any], Any]
    reloadable: bool = False


KEYS: Mapping[str, Key] = {
    "data-root": Key(_abs_path),
    "insecure-registries": Key(_string_list(_registry), reloadable=True),
    "registry-mirrors": Key(_string_list(_mirror), reloadable=True),
    "log-level": Key(_choice(logformat.LEVELS), reloadable=True),
    "log-format": Key(_choice(logformat.FORMATS), reloadable=True),
    "metrics-addr": Key(_addr),
    "hosts": Key(_string_list(_host)),
    "log-opts": Key(_log_opts),
    "default-address-pools": Key(_address_pools),
    "node-generic-resources": Key(_string_list(lambda text: text)),   # shoald's --node-generic-resource
}


def parse(text: str, source: str = "daemon.json") -> dict[str, Any]:
    """Validate a configuration document; ConfigError says what is wrong, naming `source`."""
    try:
        document = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as exc:
        raise ConfigError(f"unable to configure the daemon with file {source}: invalid JSON at line "
                          f"{exc.lineno} column {exc.colno}: {exc.msg}") from None
    if not isinstance(document, dict):
        raise ConfigError(f"unable to configure the daemon with file {source}: the top level must be a JSON object")
    unknown = sorted(set(document) - set(KEYS))
    if unknown:
        raise ConfigError(f"unable to configure the daemon with file {source}: the following directives "
                          f"don't match any configuration option: {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for key, raw in document.items():
        try:
            values[key] = KEYS[key].check(raw)
        except ValueError as exc:
            raise ConfigError(f"unable to configure the daemon with file {source}: {key}: {exc}") from None
    return values


def load(path: Path | None) -> tuple[Path, dict[str, Any]]:
    """The file at `path` (None: the default path, which may be missing). ConfigError if unusable."""
    explicit = path is not None
    path = Path(path) if explicit else Path(os.environ.get("SHOAL_CONFIG_FILE", DEFAULT_PATH))
    try:
        text = path.read_text()
    except FileNotFoundError:
        if explicit:
            raise ConfigError(f"unable to configure the daemon with file {path}: no such file") from None
        return path, {}
    except OSError as exc:
        raise ConfigError(f"unable to configure the daemon with file {path}: {exc.strerror}") from None
    return path, parse(text, str(path))


def pick(flag: Any, values: Mapping[str, Any], key: str, default: Any) -> Any:
    """A flag given on the command line wins over the file, which wins over the default."""
    if flag is not None and flag != [] and flag != ():
        return flag
    return values.get(key, default)


def reloadable(values: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a configuration SIGHUP applies."""
    return {k: v for k, v in values.items() if KEYS[k].reloadable}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags both daemons take: --config-file, --log-level and --log-format (None when not
    given, so that ``pick`` can fall back to the file; SHOAL_LOG_LEVEL/SHOAL_LOG_FORMAT count as given)."""
    parser.add_argument("--config-file", default=None, type=Path,
                        help=f"daemon configuration file (default {DEFAULT_PATH}); flags override it")
    parser.add_argument("--log-level", default=os.environ.get("SHOAL_LOG_LEVEL") or None,
                        help="debug, info, warning or error (default warning)")
    parser.add_argument("--log-format", default=os.environ.get("SHOAL_LOG_FORMAT") or None,
                        choices=logformat.FORMATS, help="text (logfmt, the default) or json")
