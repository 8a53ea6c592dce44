"""Upper bounds on every number and size a user gives the ControlAPI, and how values are quoted
in errors.

The ControlAPI is the authority: whatever the CLI or a stack file checks first, a request over a
bound is refused here with an error naming the bound, and nothing is written. The bounds keep one
request from wedging the cluster: a service's tasks are created by the orchestrator and each task
carries a copy of the service's spec, so replicas times spec size is what the leader must hold
and replicate (issue 11: a 10^12-replica service grew the leader to 11.7 GB, at every restart).

* replicas (replicated services and jobs) and max replicas per node: at most ``MAX_REPLICAS``
  (common/limits.py, shared with the CLI and the stack loader).
* a service spec: at most ``MAX_SERVICE_SPEC_BYTES`` encoded, so one task (the spec plus its
  status) always fits one Raft entry (``manager.state.MAX_CHANGE_BYTES``, 1.5 MiB).
* labels (of services, containers, networks, secrets, configs, nodes): at most ``MAX_LABELS`` per
  object, keys up to ``MAX_LABEL_KEY_BYTES`` and values up to ``MAX_LABEL_VALUE_BYTES``.
* names: services and networks 63 characters (a DNS label, Docker's "name must be 63 characters
  or fewer"), secrets and configs 64 (secrets.py); secret data under 500 KiB and config data under
  1000 KiB (SwarmKit's MaxSecretSize / MaxConfigSize, secrets.py).
* error messages: a value quoted in an error is cut to ``QUOTE_CHARS`` (``quoted``), and a whole
  message to ``MAX_ERROR_CHARS`` (ControlError does it): gRPC refuses a status message over its
  8 KiB metadata limit with a raw "Stream removed" error, so a 10,000-character name used to come
  back as that instead of "invalid name".
"""

from __future__ import annotations

from collections.abc import Mapping

from common.limits import MAX_REPLICAS
MAX_SERVICE_SPEC_BYTES = 512 * 1024
MAX_LABELS = 1_000
MAX_LABEL_KEY_BYTES = 1024
MAX_LABEL_VALUE_BYTES = 4096
MAX_NETWORK_NAME_LENGTH = 63
QUOTE_CHARS = 80
MAX_ERROR_CHARS = 2048


class LimitError(ValueError):
    """A value over one of the bounds above; the message names the bound."""


def quoted(value: str, limit: int = QUOTE_CHARS) -> str:
    """``repr(value)``, cut to about ``limit`` characters with how long it really is."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}... ({len(value)} characters)"


def cut_message(message: str, limit: int = MAX_ERROR_CHARS) -> str:
    """``message``, cut to ``limit`` characters (an error message must fit gRPC's metadata)."""
    if len(message) <= limit:
        return message
    return message[:limit - 40] + f"... ({len(message)} characters in all)"


def check_replicas(replicas: int, flag: str = "--replicas") -> None:
    if replicas > MAX_REPLICAS:
        raise LimitError(f"invalid {flag} {replicas}: at most {MAX_REPLICAS} replicas per service")


def check_labels(labels: Mapping[str, str], flag: str = "--label") -> None:
    """LimitError naming the first label over a bound (count, key or value size), or an empty
    key or one with '='."""
    if len(labels) > MAX_LABELS:
        raise LimitError(f"invalid {flag}: {len(labels)} labels, at most {MAX_LABELS} are allowed")
    for key, value in labels.items():
        if not key or "=" in key:
            raise LimitError(f"invalid {flag} key {quoted(key)}")
        if len(key.encode()) > MAX_LABEL_KEY_BYTES:
            raise LimitError(f"invalid {flag} key {quoted(key)}: a label key is at most "
                             f"{MAX_LABEL_KEY_BYTES} bytes")
        if len(value.encode()) > MAX_LABEL_VALUE_BYTES:
            raise LimitError(f"invalid {flag} {quoted(key)}: a label value is at most "
                             f"{MAX_LABEL_VALUE_BYTES} bytes (it is {len(value.encode())})")
