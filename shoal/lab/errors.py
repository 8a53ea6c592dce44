"""Errors raised by shoal-lab. Every message names the lab or host and the operation that failed."""
from __future__ import annotations


class LabError(Exception):
    """Base class: a lab operation could not be done."""


class LabNotFound(LabError):
    """The named lab is not up (no state recorded for it)."""


class LabExists(LabError):
    """`up` was asked for a lab that already exists."""


class CommandFailed(LabError):
    """A command the lab ran (ip, nsenter, the shoal CLI) exited non-zero."""

    def __init__(self, message: str, returncode: int, stdout: str = "", stderr: str = "") -> None:
        super().__init__(message)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
