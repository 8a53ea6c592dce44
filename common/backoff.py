"""Exponential backoff: the one rule every retry loop of Shoal follows.

The n-th pause grows from ``initial`` by doubling up to ``maximum``. Jitter spreads the pauses of
many nodes retrying the same thing (a manager that went away, a runtime restarting) so they do
not all come back at the same moment:

- ``jitter=None`` (the default): none; the pauses are ``initial, 2·initial, …, maximum``. For a
  loop only one party runs (a leader component restarting).
- ``jitter="full"``: the pause is uniform in ``[0, ceiling]`` ("full jitter"; what a fleet of
  agents reconnecting to one manager needs most).
- ``jitter=f`` (a fraction, e.g. 0.2): the pause is uniform in ``ceiling·[1-f, 1+f]``.

``reset()`` after an attempt that worked, so the next failure starts again at ``initial``.
``random`` is injectable: ``random() -> float`` in ``[0, 1)``, as ``random.random``.
"""

from __future__ import annotations

import random as _random
from typing import Callable, Literal


class Backoff:
    def __init__(self, initial: float, maximum: float, *, jitter: float | Literal["full"] | None = None,
                 random: Callable[[], float] = _random.random) -> None:
        if not 0 < initial <= maximum:
            raise ValueError(f"backoff: need 0 < initial ({initial}) <= maximum ({maximum})")
        if isinstance(jitter, float) and not 0 <= jitter < 1:
            raise ValueError(f"backoff: jitter fraction {jitter} is not in [0, 1)")
        self.initial, self.maximum, self.jitter = initial, maximum, jitter
        self._random = random
        self.attempt = 0

    def ceiling(self) -> float:
        """The pause before jitter for the next attempt."""
        return min(self.maximum, self.initial * 2 ** self.attempt)

    def next(self) -> float:
        """The pause before the next attempt; each call counts one more failure."""
        ceiling = self.ceiling()
        self.attempt = min(self.attempt + 1, 64)
        if self.jitter is None:
            return ceiling
        if self.jitter == "full":
            return ceiling * self._random()
        return ceiling * (1 - self.jitter + 2 * self.jitter * self._random())

    def reset(self) -> None:
        self.attempt = 0
