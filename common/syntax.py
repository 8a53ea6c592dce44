"""The string mini-languages Docker users type, parsed one way for the CLI, the stack loader and
the ControlAPI: durations, byte sizes, CPUs, `--since` times, env files and file modes, plus the
defaults of a secret or config file.

Each grammar is Docker's (the function says whose: Go's `time.ParseDuration`, go-units'
`RAMInBytes`, docker/cli's `opts.NanoCPUs` and `opts.ParseEnvFile`, Go's `strconv.ParseUint(s, 0,
32)`), and errors carry Docker's wording so that the CLI can print `invalid argument "X" for
"--flag" flag: <message>` exactly as the docker CLI does. Pure functions; every one raises
ValueError with a message that names what was expected.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from fractions import Fraction

from typing import TYPE_CHECKING

if TYPE_CHECKING:          # only a type: the CLI's run/parse paths need no protobuf
    from proto import objects_pb2 as pb

# ---- durations (Go's time.ParseDuration) -----------------------------------------------------

_UNITS = {"ns": Fraction(1, 10**9), "us": Fraction(1, 10**6), "µs": Fraction(1, 10**6),
          "μs": Fraction(1, 10**6), "ms": Fraction(1, 1000), "s": Fraction(1), "m": Fraction(60),
          "h": Fraction(3600)}
_ELEMENT = re.compile(r"([0-9]*)(\.[0-9]*)?([^0-9.]*)")
_MAX_DURATION = Fraction(2**63 - 1, 10**9)


def parse_duration(text: str) -> float:
    """Seconds from a Go duration: "300ms", "-1.5h", "2h45m", "0" (Go's time.ParseDuration: a
    unit on every number, none of "1.5" or "5 s"). Negative values are returned as such; a
    caller that needs a positive one says so."""
    if not isinstance(text, str):
        raise ValueError(f'time: invalid duration "{text}"')
    rest, sign = text, 1
    if rest[:1] in ("-", "+"):
        sign = -1 if rest[0] == "-" else 1
        rest = rest[1:]
    if rest == "0":
        return 0.0
    if not rest:
        raise ValueError(f'time: invalid duration "{text}"')
    total = Fraction(0)
    while rest:
        match = _ELEMENT.match(rest)
        whole, fraction, unit = match.group(1), match.group(2) or "", match.group(3)
        if not whole and len(fraction) <= 1:
            raise ValueError(f'time: invalid duration "{text}"')
        if not unit:
            raise ValueError(f'time: missing unit in duration "{text}"')
        if unit not in _UNITS:
            raise ValueError(f'time: unknown unit "{unit}" in duration "{text}"')
        total += Fraction(whole + fraction if whole else "0" + fraction) * _UNITS[unit]
        rest = rest[match.end():]
    if total > _MAX_DURATION:
        raise ValueError(f'time: invalid duration "{text}"')
    return float(sign * total)


def format_duration(seconds: float) -> str:
    """Go's Duration.String() for whole/fractional seconds as Docker prints them: "5s", "1m30s",
    "500ms", "1h0m0s", "0s"."""
    nanos = round(seconds * 1e9)
    if nanos == 0:
        return "0s"
    sign, nanos = ("-", -nanos) if nanos < 0 else ("", nanos)
    if nanos < 10**9:
        for unit, size in (("ms", 10**6), ("µs", 10**3), ("ns", 1)):
            if nanos >= size:
                return sign + _decimal(Fraction(nanos, size)) + unit
    hours, rem = divmod(nanos, 3600 * 10**9)
    minutes, rem = divmod(rem, 60 * 10**9)
    text = _decimal(Fraction(rem, 10**9)) + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{text}"
    if minutes:
        return f"{sign}{minutes}m{text}"
    return sign + text


def _decimal(value: Fraction) -> str:
    text = f"{float(value):.9f}".rstrip("0").rstrip(".")
    return text or "0"


def parse_since(text: str, now: float) -> float:
    """Epoch seconds from docker's --since/--until value (docker's timetypes.GetTimestamp): a Go
    duration before `now` ("42m"), an RFC 3339 date or time ("2013-01-02T13:23:37Z",
    "2013-01-02"), or Unix seconds ("1136073600.000000001")."""
    text = text.strip()
    if text != "0":
        try:
            return now - parse_duration(text)
        except ValueError:
            pass
    if re.fullmatch(r"[0-9]+(\.[0-9]{1,9})?", text):
        return float(text)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"invalid value for --since/--until {text!r}: expected a duration such as 10m, "
                         f"an RFC 3339 time such as 2013-01-02T13:23:37Z, or Unix seconds") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


# ---- byte sizes (go-units RAMInBytes: binary multiples) -------------------------------------

_SIZE = re.compile(r"^([0-9]+(?:\.[0-9]+)?) ?([kmgtp])?i?b?$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
MAX_BYTES = (1 << 63) - 1


def parse_bytes(value: object) -> int:
    """Bytes from docker's size syntax: 1048576, "64M", "1g", "512kb", "1.5GiB", "64 MB" (binary
    multiples, case-insensitive; go-units' RAMInBytes). A YAML integer is taken as bytes."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"invalid size: '{value}'")
    if isinstance(value, int):
        if not 0 <= value <= MAX_BYTES:
            raise ValueError(f"invalid size: '{value}'")
        return value
    match = _SIZE.match(value)
    if not match:
        raise ValueError(f"invalid size: '{value}'")
    size = int(Fraction(match.group(1)) * _SIZE_UNITS[(match.group(2) or "").lower()])
    if size > MAX_BYTES:
        raise ValueError(f"invalid size: '{value}'")
    return size


def format_bytes(size: float) -> str:
    """go-units BytesSize: "64MiB", "1.5GiB", "512B" (4 significant digits)."""
    units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
    i = 0
    while size >= 1024 and i < len(units) - 1:
        size /= 1024
        i += 1
    return f"{size:.4g}{units[i]}"


# ---- CPUs (docker/cli opts.NanoCPUs) ---------------------------------------------------------

def parse_cpus(value: object) -> int:
    """Nano-CPUs from a number of CPUs: "0.5" → 500000000, "2", 1.5 (a rational number, at most
    nine decimals). Zero means "no limit"; a negative number is refused."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"failed to parse {value} as a rational number")
    try:
        cpus = Fraction(str(value).strip())
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"failed to parse {value} as a rational number") from None
    nano = cpus * 10**9
    if nano.denominator != 1:
        raise ValueError("value is too precise")
    if nano < 0:
        raise ValueError("the number of CPUs must not be negative")
    if nano > 2**63 - 1:
        raise ValueError(f"{value} CPUs is too many")
    return int(nano)


# ---- env files (docker/cli opts.ParseEnvFile) ------------------------------------------------

_WHITESPACE = " \t"


def parse_env_file(text: str) -> list[tuple[int, str, str | None]]:
    """An env file's assignments as (line number, key, value or None for "take it from the
    environment"), as docker's --env-file and a stack's env_file read them: leading whitespace
    and `#` comment lines skipped, the value taken verbatim after the first "=" (quotes and
    trailing spaces are part of it; no `export`, no interpolation). A key with whitespace in it
    is refused, naming the line."""
    entries = []
    for number, line in enumerate(text.removeprefix("\ufeff").splitlines(), start=1):
        line = line.lstrip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key = key.lstrip(_WHITESPACE)
        if not key:
            raise ValueError(f"line {number}: poorly formatted environment: no variable name on line '{line}'")
        if any(c in key for c in _WHITESPACE):
            raise ValueError(f"line {number}: poorly formatted environment: variable '{key}' contains whitespaces")
        entries.append((number, key.strip() if not sep else key, value if sep else None))
    return entries


def env_file_lines(text: str, environ: dict[str, str]) -> list[str]:
    """The KEY=VALUE strings an env file gives a container: a bare KEY takes its value from
    `environ`, and is left out when `environ` lacks it (docker's behaviour)."""
    out = []
    for _, key, value in parse_env_file(text):
        if value is None:
            if key not in environ:
                continue
            value = environ[key]
        out.append(f"{key}={value}")
    return out


# ---- file modes and the defaults of secret and config files ----------------------------------

FILE_UID = "0"
FILE_GID = "0"
FILE_MODE = 0o444            # root-owned, world-readable, read-only: Docker's default


def parse_file_mode(value: object) -> int:
    """A file mode as docker's --secret/--config mode= takes it (Go's ParseUint(s, 0, 32)):
    "0444" and "0o444" are octal, "0x124" hex, "292" decimal; a YAML integer as it is."""
    if isinstance(value, bool):
        raise ValueError(f"invalid mode specified: {value!r}")
    if isinstance(value, int):
        mode = value
    else:
        text = str(value).strip()
        lowered = text.lower()
        try:
            if lowered.startswith(("0x", "0o", "0b")):
                mode = int(text, 0)
            elif len(text) > 1 and text.startswith("0"):
                mode = int(text, 8)
            else:
                mode = int(text, 10)
        except ValueError:
            raise ValueError(f'invalid mode specified: strconv.ParseUint: parsing "{text}": invalid syntax') from None
    if not 0 <= mode <= 0o7777:
        raise ValueError(f"invalid mode specified: {value} is not a file mode (0 to 07777)")
    return mode


def with_file_defaults(target: pb.FileTarget, name: str) -> None:
    """Fill a secret or config reference's file target the way Docker does: named after the
    object, owned by uid 0 and gid 0, mode 0444."""
    target.name = target.name or name
    target.uid = target.uid or FILE_UID
    target.gid = target.gid or FILE_GID
    target.mode = target.mode or FILE_MODE


__all__ = [
    "FILE_GID", "FILE_MODE", "FILE_UID", "MAX_BYTES", "env_file_lines", "format_bytes", "format_duration",
    "parse_bytes", "parse_cpus", "parse_duration", "parse_env_file", "parse_file_mode", "parse_since",
    "with_file_defaults",
]
