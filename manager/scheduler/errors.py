"""The scheduler's error hierarchy.

    SchedulerError
      InvalidConstraint   a placement constraint that does not parse (the ControlAPI turns it
                          into INVALID_ARGUMENT naming the expression)
"""

from __future__ import annotations


class SchedulerError(Exception):
    """Base of every error the scheduler package raises."""


class InvalidConstraint(SchedulerError, ValueError):
    """A placement constraint expression is malformed or names an unknown key.

    ``expression`` is the text as the user wrote it; the message says what is wrong with it.
    """

    def __init__(self, expression: str, problem: str) -> None:
        self.expression = expression
        self.problem = problem
        super().__init__(f"invalid constraint {expression!r}: {problem}")
