"""The container runtime's error hierarchy (everything outside ``agent_runtime.images``).

Messages name the object and the operation ("cannot start container web: ..."), so the server can
hand them to a user as they are. The server maps each class to an HTTP status; ``agent_runtime.api``
maps the status back to the same class, so callers on both sides catch the same names.
"""

from __future__ import annotations


class ShoalRuntimeError(Exception):
    """Base class: an operation of the runtime failed (HTTP 500)."""

    status = 500


class NotFound(ShoalRuntimeError):
    """No container, volume or image by that name (HTTP 404)."""

    status = 404


class Conflict(ShoalRuntimeError):
    """The object is in a state that forbids the operation, or the name is taken (HTTP 409)."""

    status = 409


class Forbidden(ShoalRuntimeError):
    """The operation is not allowed on this object (HTTP 403, as Docker's errdefs.Forbidden)."""

    status = 403


class InvalidArgument(ShoalRuntimeError):
    """The request itself is wrong: a bad field, mount source, limit or reference (HTTP 400)."""

    status = 400


class Unavailable(ShoalRuntimeError):
    """shoal-runtimed cannot be reached, or dropped the connection before answering (client side only).

    Transient: the call may or may not have taken effect; ask again (list, inspect) once it is back.
    """

    status = 503


class DeadlineExceeded(ShoalRuntimeError):
    """shoal-runtimed accepted the call but did not answer it within the caller's deadline (client side).

    The message names the operation; the call may still take effect later.
    """

    status = 504


def error_for_status(status: int, message: str) -> ShoalRuntimeError:
    """Return the error instance the server meant by ``status`` (unknown codes give ShoalRuntimeError)."""
    for cls in (NotFound, Conflict, Forbidden, InvalidArgument):
        if cls.status == status:
            return cls(message)
    return ShoalRuntimeError(message)
