"""The one fake clock of the test suite.

``FakeClock(now)`` returns ``now`` until a test moves it (``advance(seconds)`` or assigning
``now``). With ``step`` it advances by ``step`` before every reading, for code that needs each
reading to be later than the previous one (log timestamps in nanoseconds, for instance).
"""

from __future__ import annotations


class FakeClock:
    def __init__(self, now: float = 1_000.0, step: float = 0) -> None:
        self.now = now
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
