"""``--security-opt`` as Docker's CLI reads it, for ``shoal run`` and ``shoal service create|update``.

Accepted: ``no-new-privileges`` (or ``=true|false``), ``seccomp=unconfined``, ``seccomp=builtin``
(Docker's default profile) and ``seccomp=PATH`` (a profile in Docker's JSON format: the CLI reads
the file and sends its compacted content, as docker does). ``KEY:VALUE`` works like ``KEY=VALUE``.
AppArmor and SELinux labels are refused (shoal applies neither): a clear error, never ignored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterable

import click

UNSUPPORTED = {"apparmor": "AppArmor", "label": "SELinux labels", "systempaths": "systempaths",
               "writable-cgroups": "writable-cgroups"}


@dataclass
class SecurityOpts:
    """What the flags asked for; None means not given."""

    no_new_privileges: bool | None = None
    seccomp: str | None = None          # "" default profile, "unconfined", or the profile's JSON


def parse_security_opts(values: Iterable[str]) -> SecurityOpts:
    """Raise click.BadParameter (Docker's wording) for an option shoal cannot apply or a profile
    that cannot be read or is not a valid profile."""
    out = SecurityOpts()
    for opt in values:
        key, sep, value = opt.partition("=")
        if not sep and key != "no-new-privileges":
            key, sep, value = opt.partition(":")
        if (not sep or not value) and key != "no-new-privileges":
            raise click.BadParameter(f"Invalid --security-opt: {opt!r}", param_hint="--security-opt")
        if key == "no-new-privileges":
            if value not in ("", "true", "false"):
                raise click.BadParameter(f"invalid --security-opt: {opt!r}: no-new-privileges takes true or "
                                         "false", param_hint="--security-opt")
            out.no_new_privileges = value != "false"
        elif key == "seccomp":
            out.seccomp = _seccomp(value)
        elif key in UNSUPPORTED:
            raise click.BadParameter(f"invalid --security-opt: {opt!r}: shoal does not apply "
                                     f"{UNSUPPORTED[key]}", param_hint="--security-opt")
        else:
            raise click.BadParameter(f"invalid --security-opt: {opt!r}", param_hint="--security-opt")
    return out


def _seccomp(value: str) -> str:
    from agent_runtime import seccomp
    from agent_runtime.errors import InvalidArgument
    if value == "unconfined":
        return seccomp.UNCONFINED
    if value == "builtin":
        return ""
    try:
        with open(value, "rb") as f:
            raw = f.read(seccomp.MAX_PROFILE_BYTES + 1)
    except OSError as exc:
        raise click.BadParameter(f"opening seccomp profile ({value}) failed: {exc.strerror}",
                                 param_hint="--security-opt") from None
    try:
        text = json.dumps(json.loads(raw), separators=(",", ":"))
        seccomp.validate(text)
    except (ValueError, InvalidArgument) as exc:
        raise click.BadParameter(f"seccomp profile ({value}): {exc}", param_hint="--security-opt") from None
    return text


def apply_to_service(container, opts: SecurityOpts) -> None:
    """Set what ``opts`` gives on a ``ContainerSpec`` message (its ``privileges``); the rest stays."""
    from proto import objects_pb2 as pb
    modes = pb.Privileges.SeccompOpts
    if opts.seccomp is not None:
        sc = container.privileges.seccomp
        sc.mode = {"": modes.DEFAULT, "unconfined": modes.UNCONFINED}.get(opts.seccomp, modes.CUSTOM)
        sc.profile = opts.seccomp.encode() if sc.mode == modes.CUSTOM else b""
    if opts.no_new_privileges is not None:
        container.privileges.no_new_privileges = opts.no_new_privileges
