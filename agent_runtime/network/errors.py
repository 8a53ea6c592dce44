"""The network data plane's errors: one class under the runtime's hierarchy (HTTP 500), plus the
runtime's own InvalidArgument (400) and Conflict (409) for bad input and refused attachments."""

from __future__ import annotations

from agent_runtime.errors import Conflict, InvalidArgument, ShoalRuntimeError

__all__ = ["NetworkError", "Conflict", "InvalidArgument"]


class NetworkError(ShoalRuntimeError):
    """A kernel operation of the data plane failed; the message names the object and the step."""
