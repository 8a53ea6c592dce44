"""The stack package's errors.

    StackError              a stack cannot be loaded or converted (bad stack name, unreadable file)
    └── StackFileError      one or more problems in the stack files, each `file:line: key path: message`

A StackFileError carries every problem found, not only the first, so a user fixes a file in one
pass; nothing is deployed while a file has any.
"""

from __future__ import annotations

from dataclasses import dataclass


class StackError(Exception):
    """Base class of every error raised by shoal.stack."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a stack file: where, which key, what."""

    file: str
    line: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class StackFileError(StackError, ValueError):
    """The stack files are invalid. `problems` lists them in file order; str() shows them all."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(set(problems), key=lambda p: (p.file, p.line, p.path, p.message))
        super().__init__("\n".join(str(p) for p in self.problems))
