"""Validation of the top-level `networks`, `volumes`, `secrets` and `configs` keys.

Secret and config contents are read here (from `file:` relative to the project directory, from
an `environment:` variable, or inline `content:` for configs) so that a missing file is reported
with its line before anything is deployed.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping

from shoal.stack.checker import Checker, describe, join
from shoal.stack.model import NetworkDef, SecretDef, VolumeDef
from shoal.stack.yamltree import Node

MAX_SECRET_SIZE = 500 * 1024     # Swarm's limits
MAX_CONFIG_SIZE = 1000 * 1024
_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")


def _named_entries(ck: Checker, node: Node | None, path: str) -> dict[str, Node]:
    entries = ck.mapping(node, path, None) or {}
    result = {}
    for key, value in entries.items():
        if not _NAME.match(key):
            ck.key_error(node, key, join(path, key),  # type: ignore[arg-type]
                         "names start with a letter or digit and use only letters, digits, '_', '.' and '-'")
            continue
        result[key] = value
    return result


def _external(ck: Checker, entries: dict[str, Node], node: Node, path: str) -> tuple[bool, str | None]:
    """(external?, legacy external name). Rejects other keys beside an external declaration."""
    if "external" not in entries:
        return False, None
    ext = entries["external"]
    legacy_name = None
    if ext.is_map:
        inner = ck.mapping(ext, join(path, "external"), {"name"})
        if inner and "name" in inner:
            legacy_name = ck.string(inner["name"], join(path, "external", "name"), empty=False)
        external = True
    else:
        external = bool(ck.boolean(ext, join(path, "external")))
    if external:
        for key in entries:
            if key not in ("external", "name"):
                ck.key_error(node, key, join(path, key), "cannot be combined with external: true "
                                                         "(an external object already exists)")
    return external, legacy_name


def read_networks(ck: Checker, node: Node | None) -> dict[str, NetworkDef]:
    """Validate the top-level networks."""
    networks = {}
    for key, value in _named_entries(ck, node, "networks").items():
        path = join("networks", key)
        entries = ck.mapping(value, path, {"driver", "driver_opts", "attachable", "internal", "labels",
                                            "external", "name", "ipam", "enable_ipv6"},
                             {"scope": "stack networks are always swarm-scoped"})
        if entries is None:
            continue
        fields = _driver_fields(ck, entries, value, path, key, "overlay", "the overlay driver")
        for flag in ("attachable", "internal"):
            if flag in entries:
                fields[flag] = ck.boolean(entries[flag], join(path, flag))
        if "enable_ipv6" in entries and ck.boolean(entries["enable_ipv6"], join(path, "enable_ipv6")):
            ck.error(entries["enable_ipv6"], join(path, "enable_ipv6"), "IPv6 is not supported")
        if "ipam" in entries:
            fields["ipam"] = _ipam(ck, entries["ipam"], join(path, "ipam"))
        if None not in fields.values():
            networks[key] = NetworkDef(**fields)  # type: ignore[arg-type]
    return networks


def _driver_fields(ck: Checker, entries: dict[str, Node], node: Node, path: str, key: str,
                   driver: str | None, what: str) -> dict[str, object]:
    """What top-level networks and volumes share: key, external, name, driver (only `driver`
    is accepted; None: any, kept), driver_opts and labels, as NetworkDef/VolumeDef fields (None
    where invalid)."""
    external, legacy = _external(ck, entries, node, path)
    fields: dict[str, object] = {"key": key, "external": external}
    if "name" in entries:
        fields["name"] = ck.string(entries["name"], join(path, "name"), empty=False)
    elif legacy:
        fields["name"] = legacy
    if driver is None and "driver" in entries:
        fields["driver"] = ck.string(entries["driver"], join(path, "driver"), empty=False)
    elif "driver" in entries and ck.string(entries["driver"], join(path, "driver")) not in (driver, None):
        ck.error(entries["driver"], join(path, "driver"),
                 f"only {what} is supported, got {describe(entries['driver'].value)}")
    if "driver_opts" in entries:
        fields["driver_opts"] = _options(ck, entries["driver_opts"], join(path, "driver_opts"))
    if "labels" in entries:
        fields["labels"] = ck.labels(entries["labels"], join(path, "labels"))
    return fields


def _options(ck: Checker, node: Node, path: str) -> dict[str, str] | None:
    entries = ck.mapping(node, path, None)
    if entries is None:
        return None
    result = {}
    for key, value in entries.items():
        text = ck.string(value, join(path, key))
        if text is not None:
            result[key] = text
    return result


def _ipam(ck: Checker, node: Node, path: str) -> tuple[tuple[str, str], ...] | None:
    entries = ck.mapping(node, path, {"driver", "config"}, {"options": "not supported"})
    if entries is None:
        return None
    if "driver" in entries and entries["driver"].value not in ("default", None):
        ck.error(entries["driver"], join(path, "driver"), "only the default IPAM driver is supported")
    configs = []
    for index, item in enumerate(ck.sequence(entries["config"], join(path, "config")) or []
                                 if "config" in entries else []):
        item_path = join(path, "config", index)
        config = ck.mapping(item, item_path, {"subnet", "gateway"},
                            {"ip_range": "not supported", "aux_addresses": "not supported"}, nullable=False)
        if config is None:
            continue
        if "subnet" not in config:
            ck.error(item, join(item_path, "subnet"), "required")
            continue
        subnet_text = ck.string(config["subnet"], join(item_path, "subnet"), empty=False)
        try:
            subnet = ipaddress.IPv4Network(subnet_text or "")
        except ValueError:
            ck.error(config["subnet"], join(item_path, "subnet"),
                     f"expected an IPv4 subnet like 198.18.4.0/24, got {describe(config['subnet'].value)}")
            continue
        gateway = ""
        if "gateway" in config:
            gateway = ck.string(config["gateway"], join(item_path, "gateway"), empty=False) or ""
            try:
                if ipaddress.IPv4Address(gateway) not in subnet:
                    ck.error(config["gateway"], join(item_path, "gateway"), f"{gateway} is not inside {subnet}")
            except ValueError:
                ck.error(config["gateway"], join(item_path, "gateway"), f"{gateway!r} is not an IPv4 address")
        configs.append((str(subnet), gateway))
    return tuple(configs)


def read_volumes(ck: Checker, node: Node | None) -> dict[str, VolumeDef]:
    """Validate the top-level volumes."""
    volumes = {}
    for key, value in _named_entries(ck, node, "volumes").items():
        path = join("volumes", key)
        # A driver the nodes lack fails the tasks on them, naming it (as Docker's nodes do); the local
        # driver's options (type, device, o) go with each mount and are checked by the node's runtime.
        entries = ck.mapping(value, path, {"driver", "labels", "external", "name", "driver_opts"})
        if entries is None:
            continue
        fields = _driver_fields(ck, entries, value, path, key, None, "")
        if None not in fields.values():
            volumes[key] = VolumeDef(**fields)  # type: ignore[arg-type]
    return volumes


def read_secrets(ck: Checker, node: Node | None, kind: str, env: Mapping[str, str], project_dir: str,
                 read_bytes: Callable[[str], bytes]) -> dict[str, SecretDef]:
    """Validate the top-level secrets (kind "secrets") or configs (kind "configs"), reading contents."""
    sources = ("file", "environment", "content") if kind == "configs" else ("file", "environment")
    limit = MAX_CONFIG_SIZE if kind == "configs" else MAX_SECRET_SIZE
    result = {}
    for key, value in _named_entries(ck, node, kind).items():
        path = join(kind, key)
        allowed = {*sources, "external", "name", "labels"} | ({"template_driver"} if kind == "configs" else set())
        entries = ck.mapping(value, path, allowed,
                             {"template_driver": "templated secrets are not supported by Shoal (configs are)",
                              "driver": "not supported", "driver_opts": "not supported"}, nullable=False)
        if entries is None:
            continue
        external, legacy = _external(ck, entries, value, path)
        fields: dict[str, object] = {"key": key, "external": external}
        if "name" in entries:
            fields["name"] = ck.string(entries["name"], join(path, "name"), empty=False)
        elif legacy:
            fields["name"] = legacy
        if "labels" in entries:
            fields["labels"] = ck.labels(entries["labels"], join(path, "labels"))
        if "template_driver" in entries:
            fields["template_driver"] = ck.choice(entries["template_driver"], join(path, "template_driver"),
                                                  ("golang",))
        given = [s for s in sources if s in entries]
        if not external:
            if len(given) != 1:
                ck.error(value, path, f"give exactly one of {', '.join(sources)} or external: true")
                continue
            data = _content(ck, entries[given[0]], join(path, given[0]), given[0], env, project_dir, read_bytes)
            if data is not None and len(data) > limit:
                ck.error(entries[given[0]], join(path, given[0]),
                         f"is {len(data)} bytes; a {kind[:-1]} holds at most {limit}")
                continue
            fields["data"] = data
        if None not in fields.values():
            result[key] = SecretDef(**fields)  # type: ignore[arg-type]
    return result


def _content(ck: Checker, node: Node, path: str, source: str, env: Mapping[str, str], project_dir: str,
             read_bytes: Callable[[str], bytes]) -> bytes | None:
    text = ck.string(node, path, empty=source == "content")
    if text is None:
        return None
    if source == "content":
        return text.encode()
    if source == "environment":
        if text not in env:
            ck.error(node, path, f"environment variable {text} is not set")
            return None
        return env[text].encode()
    full = os.path.join(project_dir, os.path.expanduser(text))
    try:
        return read_bytes(full)
    except OSError as exc:
        ck.error(node, path, f"cannot read {text}: {exc.strerror or exc}")
        return None
